"""Kafka producer helpers: send (key, value) records to `leads.events`, and read them from a JSONL file.

Records are keyed by lead_id (GUIDE.md section 3), so all events of a lead land on one partition in order.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.topics import client_options, embedded_producer_settings

Send = Callable[[bytes, bytes], Awaitable[None]]

_FLUSH_EVERY = 5000


def producer_options(*, embedded: bool, settings: Settings | None = None) -> dict[str, Any]:
    """AIOKafkaProducer keyword options: acks=all, and then either, when `embedded`, one record per batch
    (max_batch_size=64, linger_ms=0): the workaround for the embedded broker's wrong high watermark
    (GUIDE.md section 4); or, against a real Kafka, idempotence (a retried batch is not written twice).
    Never pass embedded=True against a real Kafka: it costs throughput for nothing. With `settings`, the TLS
    and SASL options too (streams.runtime.topics.client_options)."""
    durability: dict[str, Any] = embedded_producer_settings() if embedded else {"enable_idempotence": True}
    return {"acks": "all", **durability, **(client_options(settings) if settings is not None else {})}


@asynccontextmanager
async def kafka_sender(
    bootstrap: str, topic: str, *, embedded: bool, settings: Settings | None = None
) -> AsyncIterator[Send]:
    """A started producer wrapped as ``await send(key, value)``, for `LiveSimulator.run(producer_send=...)`.

    `send` returns once the record is queued; deliveries are checked every few thousand records and when the
    block exits (normally), so a delivery error is raised, never lost. Leaving the block stops the producer.
    `settings` gives the TLS and SASL options.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(embedded=embedded, settings=settings))
    await producer.start()
    pending: list[Awaitable[Any]] = []
    try:

        async def send(key: bytes, value: bytes) -> None:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= _FLUSH_EVERY:
                await _settle(pending)

        yield send
        await _settle(pending)
    finally:
        await producer.stop()


async def _settle(pending: list[Awaitable[Any]]) -> None:
    """Wait for every queued delivery (raising the first error) and forget them."""
    for delivery in pending:
        await delivery
    pending.clear()


async def produce_records(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    embedded: bool,
    settings: Settings | None = None,
) -> int:
    """Send every (key, value) record to `topic` and wait until all are acknowledged (acks=all).

    Returns the number of records sent. Raises the first delivery error. `settings` gives the TLS and SASL options.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(embedded=embedded, settings=settings))
    await producer.start()
    count = 0
    try:
        pending: list[Awaitable[Any]] = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            count += 1
            if len(pending) >= _FLUSH_EVERY:
                await _settle(pending)
        await _settle(pending)
    finally:
        await producer.stop()
    return count


def read_jsonl(path: str | Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records from a JSONL file, one envelope per line, for ``leadflow produce FILE.jsonl``.

    The value is the line's bytes unchanged (without the line break); the key is the line's `lead_id`.
    A line that is not valid JSON, not an object, or has no non-empty string `lead_id` is still returned,
    with key ``b""``: input is never dropped silently, and the worker dead-letters such a record with a reason.
    Only blank (whitespace-only) lines are skipped: they carry no record.
    """
    with Path(path).open("rb") as raw:
        for read in gunzipped(raw, Path(path)):
            line = read.rstrip(b"\r\n")
            if not line.strip():
                continue
            yield _key_of(line), line


GZIP_MAGIC: Final = b"\x1f\x8b"


def gunzipped(raw: IO[bytes], path: Path) -> IO[bytes] | gzip.GzipFile:
    """The file's bytes, gunzipped when its name ends in .gz or it starts with the gzip magic bytes (an events file
    `leadflow replay` reads may be compressed, and `leadflow produce` reads the same files)."""
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" or magic == GZIP_MAGIC else raw


def _key_of(line: bytes) -> bytes:
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        return b""
    lead = envelope.get("lead_id") if isinstance(envelope, dict) else None
    return lead.encode() if isinstance(lead, str) and lead else b""


def write_jsonl(path: str | Path, events: Iterable[dict[str, Any]]) -> int:
    """Write envelopes one per line (the format `read_jsonl` and ``leadflow replay`` read); returns the count."""
    count = 0
    with Path(path).open("wb") as out:
        for event in events:
            out.write(orjson.dumps(event))
            out.write(b"\n")
            count += 1
    return count
