# The leadflow image: `leadflow worker` by default; the same image runs `leadflow simulate` and the topic
# setup in docker-compose.yml. Build: docker build -t leadflow .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY core ./core
COPY streams ./streams
COPY leadflow ./leadflow
RUN pip install . \
    && useradd --create-home --uid 10001 leadflow \
    && mkdir -p /data \
    && chown leadflow /data

USER leadflow
# The web server (/metrics, /healthz, /leads/{id}) must answer outside the container.
ENV LEADFLOW_WEB_HOST=0.0.0.0 \
    LEADFLOW_WEB_PORT=6066 \
    LEADFLOW_DATA_DIR=/data
EXPOSE 6066

ENTRYPOINT ["leadflow"]
CMD ["worker", "-l", "info"]
