"""infra/ parses, validates against the published schemas, and runs the commands the native tests run.

Schemas come from packages, not from the network: the Compose Specification's JSON schema as
vendored by check-jsonschema, and Kubernetes' per-kind JSON schemas as shipped by
kubernetes-validate (strict: unknown fields fail).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import pytest
import yaml

from infra_commands import INFRA, REPO, env, match

K8S_VERSION = "1.31"  # oldest Kubernetes minor these manifests promise to work on
IMAGE_IN_CONTAINER = Path("/opt/mmops")  # where infra/docker/mmops.Dockerfile puts the repository
K8S = INFRA / "k8s"


# ---------------------------------------------------------------------------------------------
# helpers


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(value, variables: dict[str, str], missing: set[str]):
    """Compose's variable interpolation (`$$`, `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`, `${V?e}`)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, missing) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        got = variables.get(name)
        unset = got is None or (got == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            missing.add(name)
            return ""
        if got is None:
            missing.add(name)
        return got or ""

    return _VAR.sub(one, value)


def _compose_raw() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())  # resolves the `<<:` merge keys


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml as `docker compose config` would see it with infra/.env.example as infra/.env."""
    missing: set[str] = set()
    doc = interpolate(_compose_raw(), _env_file(INFRA / ".env.example"), missing)
    assert not missing, f"variables neither in .env.example nor defaulted: {sorted(missing)}"
    return doc


def _k8s_docs(pattern: str = "**/*.yaml") -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.glob(pattern)):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _k8s(kind: str, name: str) -> dict:
    found = [d for _, d in _k8s_docs() if d["kind"] == kind and d["metadata"].get("name", d["metadata"].get("generateName")) == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _container(workload: dict, name: str) -> dict:
    pod = _pod(workload)
    found = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']}: no single container {name}"
    return found[0]


def _env_names(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _k8s_validate(doc: dict) -> None:
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as err:
        raise AssertionError(f"{doc['kind']} {doc['metadata']}: {err.message} at {list(err.path)}") from None


def _template(path: Path) -> dict:
    return json.loads(path.read_text())


def _prefect_yaml() -> dict:
    return yaml.safe_load((INFRA / "prefect.yaml").read_text())


def _in_image(path: str) -> Path:
    """A path inside the image that the Dockerfile copied from the repository -> its repo path."""
    rel = Path(path).relative_to(IMAGE_IN_CONTAINER)
    return REPO / rel


# ---------------------------------------------------------------------------------------------
# docker compose


def test_compose_matches_the_compose_spec(compose):
    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_compose_spec_validator_rejects_a_typo(compose):
    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    broken = copy.deepcopy(compose)
    broken["services"]["mlflow"]["comand"] = broken["services"]["mlflow"].pop("command")
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_env_example_names_exactly_the_variables_compose_uses():
    text = (INFRA / "compose.yaml").read_text()
    used = {m.group(2) for m in _VAR.finditer(text) if m.group(2)}
    required = {m.group(2) for m in _VAR.finditer(text) if m.group(2) and m.group(3) in (":?", "?")}
    example = set(_env_file(INFRA / ".env.example"))
    assert required <= example, f"required but not in .env.example: {sorted(required - example)}"
    assert example <= used, f"in .env.example but unused: {sorted(example - used)}"
    assert (INFRA / ".gitignore").read_text().splitlines().count(".env") == 1


# service -> (command in commands.yaml, placeholder values the service must use)
COMPOSE_COMMANDS = {
    "mlflow": ("mlflow-server", {"host": "0.0.0.0", "port": "5000"}),
    "prefect-server": ("prefect-server", {"host": "0.0.0.0", "port": "4200"}),
    "prefect-pool": ("prefect-work-pool", {"pool": "mmops-process", "type": "process"}),
    "prefect-deploy": ("prefect-deploy", {"deployment": "retrain-process"}),
    "prefect-worker": ("prefect-worker", {"pool": "mmops-process", "type": "process"}),
    "prefect-worker-gpu": ("prefect-worker", {"pool": "mmops-process", "type": "process"}),
    "serve": ("serve", {"host": "0.0.0.0", "port": "8080"}),
}


def test_compose_runs_the_commands_in_commands_yaml(compose):
    services = compose["services"]
    built = {n for n, s in services.items() if s.get("build")}
    assert built == set(COMPOSE_COMMANDS), "every mmops-image service runs a command from commands.yaml"
    for service, (command, expected) in COMPOSE_COMMANDS.items():
        spec = services[service]
        values = match(command, spec["command"])
        assert {k: values[k] for k in expected} == expected, service
        assert env(command).items() <= spec.get("environment", {}).items(), f"{service}: {env(command)}"
        if "port" in values:  # the health check and the published port use the port it listens on
            assert f":{values['port']}/" in " ".join(spec["healthcheck"]["test"]), service
            assert any(str(p).endswith(f":{values['port']}") for p in spec["ports"]), service


def test_compose_mlflow_uses_postgres_and_s3(compose):
    services = compose["services"]
    mlflow = services["mlflow"]
    values = match("mlflow-server", mlflow["command"])
    pg = services["postgres"]["environment"]
    assert values["backend_store_uri"] == (
        f"postgresql+psycopg2://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    )
    bucket = services["minio-init"]["environment"]["MLFLOW_BUCKET"]
    assert values["artifacts_destination"] == f"s3://{bucket}/artifacts"
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["environment"]["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert mlflow["environment"]["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith(f"postgresql+asyncpg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/")
    assert "CREATE DATABASE prefect;" in (INFRA / "docker" / "postgres-init.sql").read_text()
    assert prefect_db.endswith("/prefect")


def test_compose_clients_are_wired_to_the_services(compose):
    services = compose["services"]
    for name in ("prefect-worker", "prefect-worker-gpu", "serve"):
        environment = services[name]["environment"]
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert environment["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
    for name in ("prefect-pool", "prefect-deploy"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api", name


def test_compose_prefect_pool_and_deployment_files_exist(compose):
    services = compose["services"]
    pool = match("prefect-work-pool", services["prefect-pool"]["command"])
    assert _in_image(pool["template"]).is_file()
    deploy = match("prefect-deploy", services["prefect-deploy"]["command"])
    assert services["prefect-deploy"]["working_dir"] == str(IMAGE_IN_CONTAINER)
    assert (REPO / deploy["prefect_file"]).resolve() == INFRA / "prefect.yaml"
    deployment = {d["name"]: d for d in _prefect_yaml()["deployments"]}[deploy["deployment"]]
    assert deployment["work_pool"]["name"] == pool["pool"]


def test_compose_builds_the_dockerfile_with_its_args(compose):
    dockerfile = (INFRA / "docker" / "mmops.Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    for name, spec in compose["services"].items():
        if "build" not in spec:
            continue
        build = spec["build"]
        assert (INFRA / build["context"] / build["dockerfile"]).resolve() == INFRA / "docker" / "mmops.Dockerfile"
        assert set(build["args"]) <= declared, name
    assert re.search(r"^RUN pip install \. ", dockerfile, re.M), "the image installs the project"
    for src in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for item in src.split():
            assert (REPO / item).exists(), f"Dockerfile copies {item}, which the repository lacks"
    ignore = (INFRA / "docker" / "mmops.Dockerfile.dockerignore").read_text().splitlines()
    for src in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for item in src.split():
            assert f"!{item}" in ignore, f"{item} is excluded from the build context"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def test_every_k8s_manifest_matches_its_kind_schema():
    docs = _k8s_docs()
    assert {d["kind"] for _, d in docs} >= {"Deployment", "Service", "Job", "ConfigMap", "Role"}
    for _, doc in docs:
        _k8s_validate(doc)


def test_k8s_validator_is_strict():
    job = copy.deepcopy(_k8s("Job", "mmops-train-"))
    _pod(job)["completions"] = 1  # a Job field, misplaced in the pod spec
    with pytest.raises(AssertionError, match="completions"):
        _k8s_validate(job)


def test_kustomization_lists_every_top_level_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    assert generated == {"prefect-base-job-template": ["prefect-base-job-template.json"]}
    for _, doc in _k8s_docs():
        assert doc["metadata"].get("namespace", "mmops") == kustomization["namespace"], doc["metadata"]


# (kind, name, container) -> (command in commands.yaml, placeholder values it must use)
K8S_COMMANDS = {
    ("Deployment", "mlflow", "mlflow"): ("mlflow-server", {"host": "0.0.0.0", "port": "5000"}),
    ("Deployment", "prefect-server", "prefect-server"): ("prefect-server", {"host": "0.0.0.0", "port": "4200"}),
    ("Deployment", "prefect-worker", "work-pool"): ("prefect-work-pool", {"pool": "mmops-k8s", "type": "kubernetes"}),
    ("Deployment", "prefect-worker", "worker"): ("prefect-worker", {"pool": "mmops-k8s", "type": "kubernetes"}),
    ("Deployment", "mmops-serve", "serve"): ("serve", {"host": "0.0.0.0", "port": "8080"}),
    ("Job", "mmops-train-", "train"): ("train-ddp", {"gpus": "$(GPUS)", "params": "/opt/mmops/params.yaml"}),
}


def test_k8s_runs_the_commands_in_commands_yaml():
    for (kind, name, container_name), (command, expected) in K8S_COMMANDS.items():
        workload = _k8s(kind, name)
        container = _container(workload, container_name)
        argv = container.get("command", []) + container.get("args", [])
        values = match(command, argv)
        assert {k: values[k] for k in expected} == expected, (name, container_name)
        defined = _env_names(container)
        for key, value in env(command).items():
            assert defined.get(key, {}).get("value") == value, f"{name}/{container_name} must set {key}={value}"
        # Kubernetes expands $(VAR) in a command only from the container's own `env`.
        for var in re.findall(r"\$\((\w+)\)", " ".join(argv)):
            assert var in defined, f"{name}/{container_name}: $({var}) is not in its env"
        if "port" in values:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert list(ports.values()) == [int(values["port"])], (name, ports)
            assert container["readinessProbe"]["httpGet"]["port"] in ports


def test_k8s_services_route_to_the_pods():
    for _, service in [(p, d) for p, d in _k8s_docs() if d["kind"] == "Service"]:
        deployment = _k8s("Deployment", service["metadata"]["name"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        port_names = {p["name"] for c in _pod(deployment)["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_k8s_serving_is_ready_on_health():
    serve = _container(_k8s("Deployment", "mmops-serve"), "serve")
    assert serve["readinessProbe"]["httpGet"]["path"] == "/health"
    assert _env_names(serve)["MLFLOW_TRACKING_URI"]["valueFrom"]["configMapKeyRef"]["key"] == "MLFLOW_TRACKING_URI"


def test_k8s_training_job_requests_the_gpus_it_starts():
    job = _k8s("Job", "mmops-train-")
    train = _container(job, "train")
    gpus = _env_names(train)["GPUS"]["value"]
    assert str(train["resources"]["limits"]["nvidia.com/gpu"]) == gpus
    others = [c for c in _pod(job).get("initContainers", []) + _pod(job)["containers"] if c is not train]
    assert all("nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}) for c in others)
    # the dvc.yaml stages in order, then register; each a plain `mmops` command with the image's params
    steps = [c["name"] for c in _pod(job)["initContainers"] + _pod(job)["containers"]]
    assert steps == ["demo-data", "validate", "preprocess", "train", "evaluate", "register"]
    for c in others:
        assert c["command"][:2] == ["mmops", c["name"]] and c["command"][2:] == ["--params", "/opt/mmops/params.yaml"]
    assert _in_image("/opt/mmops/params.yaml") == REPO / "params.yaml"
    assert {m["mountPath"] for m in train["volumeMounts"]} >= {"/workspace", "/dev/shm"}


def test_k8s_config_and_secret_keys_exist():
    config = _k8s("ConfigMap", "mmops-config")["data"]
    readme = (INFRA / "README.md").read_text()
    secret_command = re.search(r"kubectl -n mmops create secret generic mmops-secrets(?:.*\\\n)*.*", readme)
    assert secret_command, "infra/README.md shows how to create the Secret"
    secret_keys = set(re.findall(r"--from-literal=(\w+)=", secret_command.group(0)))
    for _, doc in _k8s_docs():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for c in _pod(doc).get("initContainers", []) + _pod(doc)["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config, e
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] == "mmops-secrets"
                    assert ref["secretKeyRef"]["key"] in secret_keys, f"{e} is not created in infra/README.md"
            for ref in c.get("envFrom", []):
                assert ref == {"configMapRef": {"name": "mmops-config"}}


def test_k8s_worker_creates_its_pool_from_the_template_in_git():
    worker = _k8s("Deployment", "prefect-worker")
    init = _container(worker, "work-pool")
    template_path = Path(match("prefect-work-pool", init["command"])["template"])
    mount = next(m for m in init["volumeMounts"] if Path(m["mountPath"]) == template_path.parent)
    volume = next(v for v in _pod(worker)["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "prefect-base-job-template"
    assert (K8S / template_path.name).is_file()  # kustomize's configMapGenerator file name = key
    assert _pod(worker)["serviceAccountName"] == "prefect-worker"


def test_one_image_everywhere():
    images = {c["image"] for _, d in _k8s_docs() if d["kind"] in ("Deployment", "Job")
              for c in _pod(d).get("initContainers", []) + _pod(d)["containers"]}
    template = _template(K8S / "prefect-base-job-template.json")
    assert images == {template["variables"]["properties"]["image"]["default"]}


# ---------------------------------------------------------------------------------------------
# Prefect work pools and deployments


def _flow_run_job(template: dict, job_variables: dict) -> dict:
    """The Job the Kubernetes worker submits: template defaults + job variables, as Prefect fills them."""
    from prefect.utilities.templating import apply_values
    from prefect.workers.base import BaseJobConfiguration

    values = BaseJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    values |= job_variables | {"env": {"PREFECT_API_URL": "http://prefect-server:4200/api"}, "name": "flow-run"}
    config = apply_values(copy.deepcopy(template["job_configuration"]), values)
    job = config["job_manifest"]
    container = _pod(job)["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in container["env"].items()]  # as the worker does
    container["args"] = ["prefect", "flow-run", "execute"]  # the worker's default command
    return job


@pytest.mark.parametrize("path", [K8S / "prefect-base-job-template.json", INFRA / "prefect-process-job-template.json"])
def test_work_pool_templates_are_valid_for_prefect(path):
    from prefect.server.schemas.actions import WorkPoolCreate

    template = _template(path)
    pool_type = "kubernetes" if "job_manifest" in template["job_configuration"] else "process"
    WorkPoolCreate(name="check", type=pool_type, base_job_template=template)  # the server's own checks
    jsonschema.Draft202012Validator.check_schema(template["variables"])


def test_k8s_flow_run_job_matches_the_job_schema():
    template = _template(K8S / "prefect-base-job-template.json")
    deployment = {d["name"]: d for d in _prefect_yaml()["deployments"]}["retrain-k8s"]
    job = _flow_run_job(template, deployment["work_pool"].get("job_variables", {}))
    _k8s_validate(job)
    container = _pod(job)["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == deployment["work_pool"]["job_variables"]["gpu_limit"]
    assert job["metadata"]["namespace"] == "mmops"
    assert container["workingDir"] == "/workspace"
    # no GPU asked for: the limit disappears instead of being null
    plain = _flow_run_job(template, {})
    _k8s_validate(plain)
    assert "nvidia.com/gpu" not in _pod(plain)["containers"][0]["resources"].get("limits", {})


def test_prefect_deployments_point_at_pools_and_the_flow():
    from prefect.utilities.importtools import import_object
    from prefect.utilities.schema_tools import validate

    doc = _prefect_yaml()
    pools = {
        "mmops-process": _template(INFRA / "prefect-process-job-template.json"),
        "mmops-k8s": _template(K8S / "prefect-base-job-template.json"),
    }
    assert doc["prefect-version"] == __import__("prefect").__version__
    steps = [next(iter(s)) for s in doc["pull"]]
    assert steps == ["prefect.deployments.steps.set_working_directory"]
    for d in doc["deployments"]:
        template = pools[d["work_pool"]["name"]]
        validate(d["work_pool"].get("job_variables", {}), template["variables"], raise_on_error=True,
                 preprocess=True, ignore_required=True)
        flow = import_object(d["entrypoint"])
        assert flow.name == "mmops-retrain"
        assert set(d["parameters"]) <= set(flow.parameters.properties)
        assert _in_image(d["parameters"]["params_path"]) == REPO / "params.yaml"


# ---------------------------------------------------------------------------------------------
# DVC remote on object storage


def test_dvc_remote_commands_in_the_docs_configure_an_s3_remote(tmp_path):
    doc = (INFRA / "dvc-remote.md").read_text()
    commands = [shlex.split(line) for line in re.findall(r"^\s*(dvc remote .+)$", doc, re.M)]
    assert [c[:3] for c in commands[:2]] == [["dvc", "remote", "add"], ["dvc", "remote", "modify"]]
    dvc = [str(Path(sys.executable).parent / "dvc")]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    for command in commands:
        subprocess.run(dvc + command[1:], cwd=tmp_path, check=True, capture_output=True)
    config = (tmp_path / ".dvc" / "config").read_text() + (tmp_path / ".dvc" / "config.local").read_text() \
        if (tmp_path / ".dvc" / "config.local").exists() else (tmp_path / ".dvc" / "config").read_text()
    assert "remote = s3remote" in config
    assert re.search(r"url = s3://\S+", config)
    assert re.search(r"endpointurl = https?://\S+", config)
