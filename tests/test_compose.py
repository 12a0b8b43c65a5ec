"""docker-compose.yml without a Docker engine: the Compose Specification schema, every mounted path and build
context, and the configs it mounts (promtool for Prometheus, amtool for Alertmanager, Grafana provisioning)."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from leadflow.schemas.policy import load_policy
from leadflow.streams.cli.main import parser as cli_parser
from leadflow.streams.dev.kafka import KAFKA_VERSION
from leadflow.streams.runtime.channels import Secrets
from leadflow.streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

Json = dict[str, Any]


def compose() -> Json:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, Json]:
    return dict(compose()["services"])


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # The file names draft 2019-09 by its old URI (http, trailing #), which jsonschema does not look up.
    assert "draft/2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install -y {package} (.ci/run does it)")
    return path


def binds(service: Json) -> list[tuple[str, str]]:
    """(host path, container path) of the bind mounts of a service (short syntax)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def host_path_of(service: Json, container_path: str) -> Path:
    """The repository path a container path comes from through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in binds(service):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return ROOT / source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted")


# A published port in the short syntax: [HOST_IP:]HOST_PORT:CONTAINER_PORT, the host IP possibly an interpolation
# with a default (${LEADFLOW_BIND:-127.0.0.1}).
PORT = re.compile(r"^(?:(?P<ip>\$\{[^}]*\}|[0-9.]+|\[[0-9a-fA-F:]*\]):)?(?P<host>\d+):(?P<container>\d+)(?:/tcp)?$")
DEFAULT = re.compile(r"^\$\{(?P<name>[A-Z_]+):?-(?P<default>[^}]*)\}$")


def published(service: Json) -> dict[int, int]:
    """container port -> host port of a service's published ports."""
    out = {}
    for port in service.get("ports", []):
        match = PORT.match(str(port))
        assert match, f"port {port!r} is not in the short syntax HOST_IP:HOST_PORT:CONTAINER_PORT"
        out[int(match["container"])] = int(match["host"])
    return out


def host_ip_by_default(port: str) -> str | None:
    """The host address a port is published on when the environment sets nothing (None: every address)."""
    match = PORT.match(port)
    assert match, port
    ip = match["ip"]
    if ip is None:
        return None
    default = DEFAULT.match(ip)
    if default is None:
        return ip
    return default["default"] or None


def flag(args: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]
    return value


# --- the file ----------------------------------------------------------------------------------------------------


def test_matches_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_a_misspelt_key() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["worker-1"]["enviroment"] = {"X": "1"}
    assert list(validator().iter_errors(broken))


def test_bind_mounts_and_build_contexts_exist() -> None:
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for source, _ in binds(service):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared"
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copies = re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, flags=re.M)
    assert copies
    for sources in copies:
        for source in sources.split():
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    # The leadflow namespace links to the top-level packages: the image needs the links and what they point to.
    linked = sorted(path.name for path in (ROOT / "leadflow").iterdir() if path.is_symlink())
    assert linked == ["core", "schemas", "streams"]
    for directory in ("leadflow", *linked):
        assert re.search(rf"^COPY {directory} ", dockerfile, flags=re.M), f"the image lacks {directory}/"


# --- Kafka and the leadflow services ------------------------------------------------------------------------------


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(kafka).lower()
    # kafka-storage format takes a base64url UUID: 16 bytes, 22 characters.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_is_the_version_the_tests_run() -> None:
    assert services()["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def workers() -> dict[str, Json]:
    return {name: service for name, service in services().items() if name.startswith("worker-")}


def test_two_workers_each_with_its_own_port_and_data_dir() -> None:
    found = workers()
    assert len(found) == 2
    ports, dirs = set(), set()
    for name, service in found.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = Settings(**{key.removeprefix("LEADFLOW_").lower(): value for key, value in env.items()})
        assert settings.bootstrap == "kafka:9092", name
        assert settings.web_host == "0.0.0.0", name
        assert not settings.embedded, "never the embedded-broker workaround against a real Kafka"
        ports.add(settings.web_port)
        dirs.add(str(settings.data_dir))
        assert published(service) == {settings.web_port: settings.web_port}
        assert service.get("hostname") == name
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert any(
            str(settings.data_dir).startswith(target) for _, target in [v.split(":")[:2] for v in service["volumes"]]
        )
    assert len(ports) == 2
    assert len(dirs) == 2


def test_topic_setup_runs_the_project_topic_creation() -> None:
    topics = services()["topics"]
    assert topics["entrypoint"] == ["python", "-c"]
    (code,) = topics["command"]
    compile(code, "topics", "exec")
    assert "create_leadflow_topics" in code
    assert topics["restart"] == "no"


def test_simulator_is_an_optional_profile_with_valid_flags() -> None:
    simulator = services()["simulator"]
    assert simulator["profiles"] == ["simulate"]
    args = cli_parser().parse_args(simulator["command"])
    assert args.command == "simulate"
    assert not args.embedded


def test_notify_is_an_optional_profile_with_valid_flags() -> None:
    notify = services()["notify"]
    assert notify["profiles"] == ["notify"]
    args = cli_parser().parse_args(notify["command"])
    assert args.command == "notify"
    assert not args.embedded
    assert not args.dry_run
    assert args.port in published(notify)
    secrets = {k: v for k, v in notify["environment"].items() if k.startswith("LEADFLOW_NOTIFY_SECRET_")}
    assert secrets
    assert all(v == f"${{{k}:-}}" for k, v in secrets.items())  # never a secret written in the file
    channels = load_policy().notifications.channels.values()  # the default policy's channels, each one set here
    assert set(secrets) == {Secrets.variable(c.secret) for c in channels if c.secret is not None}


# --- Prometheus, Alertmanager, Grafana --------------------------------------------------------------------------


def prometheus_config_path() -> Path:
    prometheus = services()["prometheus"]
    return host_path_of(prometheus, flag(prometheus["command"], "--config.file"))


def test_prometheus_config_references_existing_rule_files() -> None:
    config_path = prometheus_config_path()
    assert config_path == ROOT / "grafana" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    assert config["rule_files"]
    for pattern in config["rule_files"]:
        matched = list(config_path.parent.glob(pattern))
        assert matched, f"rule_files {pattern} matches nothing next to {config_path}"


def test_prometheus_scrapes_both_workers_and_sends_to_alertmanager() -> None:
    config = yaml.safe_load(prometheus_config_path().read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "leadflow"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {target for static in job["static_configs"] for target in static["targets"]}
    expected = {f"{name}:{service['environment']['LEADFLOW_WEB_PORT']}" for name, service in workers().items()}
    assert targets == expected
    (alerting,) = config["alerting"]["alertmanagers"]
    (target,) = alerting["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services()
    assert int(port) in published(services()[host])


def test_promtool_check_config() -> None:
    """The whole directory is mounted, so rule paths relative to the config are the same as in the container."""
    result = subprocess.run(
        [tool("promtool", "prometheus"), "check", "config", str(prometheus_config_path())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout


def test_amtool_check_config() -> None:
    alertmanager = services()["alertmanager"]
    config = host_path_of(alertmanager, flag(alertmanager["command"], "--config.file"))
    result = subprocess.run(
        [tool("amtool", "prometheus-alertmanager"), "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus() -> None:
    grafana = services()["grafana"]
    provisioning = host_path_of(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "leadflow.yml").read_text(encoding="utf-8"))[
        "providers"
    ]
    dashboards = host_path_of(grafana, provider["options"]["path"])
    assert dashboards == ROOT / "grafana" / "dashboards"
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "funnel.json",
        "goals.json",
        "handoff.json",
        "ingest.json",
        "pipeline.json",
        "sla.json",
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path_of(grafana, home).is_file()
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))[
        "datasources"
    ]
    host_port = source["url"].removeprefix("http://")
    host, port = host_port.split(":")
    assert host in services()
    assert int(port) in published(services()[host])


def test_compose_usage_in_the_header_is_valid() -> None:
    header = [line for line in COMPOSE.read_text(encoding="utf-8").splitlines() if line.startswith("#   docker")]
    assert header
    for line in header:
        words = shlex.split(line.lstrip("# ").split("#")[0])
        if "--profile" in words:
            assert words[words.index("--profile") + 1] in {
                p for s in services().values() for p in s.get("profiles", [])
            }


# --- safe by default (issue 13, item 5) ----------------------------------------------------------------------------

ONE_SHOT = {"topics", "simulator"}  # they run once and exit ("restart: no"): nothing to check the health of


def test_every_port_is_published_on_loopback_unless_leadflow_bind_says_otherwise() -> None:
    found = 0
    for name, service in services().items():
        for port in service.get("ports", []):
            found += 1
            assert isinstance(port, str), f"{name}: {port!r}: use the short syntax with a host address"
            assert host_ip_by_default(port) == "127.0.0.1", f"{name}: {port} is published beyond loopback"
            assert port.startswith("${LEADFLOW_BIND:-127.0.0.1}:"), f"{name}: {port} ignores LEADFLOW_BIND"
    assert found == 8  # kafka (host listener), two workers, ingest, notify, Prometheus, Alertmanager, Grafana


def test_a_port_without_a_host_address_would_be_caught() -> None:
    assert host_ip_by_default("9090:9090") is None
    assert host_ip_by_default("${LEADFLOW_BIND:-}:9090:9090") is None
    assert host_ip_by_default("0.0.0.0:9090:9090") == "0.0.0.0"
    assert host_ip_by_default("${LEADFLOW_BIND:-127.0.0.1}:9090:9090") == "127.0.0.1"


def test_prometheus_lifecycle_api_is_off() -> None:
    for name, service in services().items():
        command = service.get("command", [])
        words = command if isinstance(command, list) else shlex.split(command)
        assert not any(word.startswith("--web.enable-lifecycle") for word in words), name
        assert not any(word.startswith("--web.enable-admin-api") for word in words), name


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is called one-shot but restarts"
            continue
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        test = check["test"]
        assert isinstance(test, list), name
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        assert len(test) > 1, name
        if test[0] == "CMD":
            assert test[1] in {"python", "wget", "curl"}, f"{name}: {test[1]} may not be in the image"
    assert {"kafka", "worker-1", "worker-2", "ingest", "prometheus", "alertmanager", "grafana"} - ONE_SHOT <= {
        name for name, service in services().items() if "healthcheck" in service
    }


def test_healthchecks_probe_the_port_each_service_listens_on() -> None:
    expected = {
        "worker-1": "http://127.0.0.1:6066/readyz",  # readiness (issue 13): /healthz is liveness only
        "worker-2": "http://127.0.0.1:6067/readyz",
        "ingest": "http://127.0.0.1:8080/readyz",
        "notify": "http://127.0.0.1:6070/readyz",
        "prometheus": "http://127.0.0.1:9090/-/healthy",
        "alertmanager": "http://127.0.0.1:9093/-/healthy",
        "grafana": "http://127.0.0.1:3000/api/health",
    }
    for name, url in expected.items():
        test = services()[name]["healthcheck"]["test"]
        assert any(url in word for word in test), (name, test)
        container_port = int(url.split(":")[2].split("/")[0])
        assert container_port in published(services()[name]), name


def test_grafana_admin_password_comes_from_a_secret_file() -> None:
    grafana = services()["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "a password in the compose file"
    path = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    (secret,) = [s if isinstance(s, str) else s["source"] for s in grafana["secrets"]]
    assert path == f"/run/secrets/{secret}"
    declared = compose()["secrets"][secret]
    file = DEFAULT.match(declared["file"])
    assert file is not None, "the secret file can be moved with LEADFLOW_GRAFANA_ADMIN_PASSWORD_FILE"
    assert file["name"] == "LEADFLOW_GRAFANA_ADMIN_PASSWORD_FILE"
    assert file["default"] == "./secrets/grafana_admin_password"
    assert not (ROOT / file["default"]).exists() or not _tracked(file["default"]), "a password in the repository"
    header = COMPOSE.read_text(encoding="utf-8").split("\nx-leadflow-env", 1)[0]
    assert file["default"].removeprefix("./") in header, "the header says how to create the secret file"


def _tracked(path: str) -> bool:
    result = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True, check=False)
    return result.returncode == 0


def test_workers_take_the_web_token_from_the_environment() -> None:
    for name, service in workers().items():
        token = service["environment"]["LEADFLOW_WEB_TOKEN"]
        assert token == "${LEADFLOW_WEB_TOKEN:-}", name  # never a token written in the file
        assert Settings(web_token="").web_token is None  # unset: personal fields are never shown
