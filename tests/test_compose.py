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

from streams.cli import parser as cli_parser
from streams.kafka import KAFKA_VERSION
from streams.settings import Settings

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
    packages = re.search(r"packages\s*=\s*\[([^\]]*)\]", (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert packages
    for package in re.findall(r'"([^"]+)"', packages.group(1)):
        assert re.search(rf"^COPY {package} ", dockerfile, flags=re.M), f"the image lacks the {package} package"


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
        assert f"{settings.web_port}:{settings.web_port}" in service["ports"]
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
    assert f"{port}:{port}" in services()[host]["ports"]


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
    assert f"{port}:{port}" in services()[host]["ports"]


def test_compose_usage_in_the_header_is_valid() -> None:
    header = [line for line in COMPOSE.read_text(encoding="utf-8").splitlines() if line.startswith("#   docker")]
    assert header
    for line in header:
        words = shlex.split(line.lstrip("# ").split("#")[0])
        if "--profile" in words:
            assert words[words.index("--profile") + 1] in {
                p for s in services().values() for p in s.get("profiles", [])
            }
