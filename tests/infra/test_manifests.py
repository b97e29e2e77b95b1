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
    "check-secrets": ("check-secrets", {}),
    "mlflow": ("mlflow-server", {"host": "0.0.0.0", "port": "5000"}),
    "mlflow-users": ("mlflow-users", {"script": "/opt/mmops/infra/mlflow/users.py", "users": "mmops-pipeline,mmops-serve"}),
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
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"] == (
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
        assert services[name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
    for name in ("prefect-worker", "prefect-worker-gpu", "prefect-pool", "prefect-deploy"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api", name


# ---------------------------------------------------------------------------------------------
# security in compose


def test_compose_publishes_ports_on_loopback_only_by_default(compose):
    published = [(name, str(p)) for name, spec in compose["services"].items() for p in spec.get("ports", [])]
    assert {name for name, _ in published} == {"minio", "mlflow", "prefect-server", "serve"}
    for name, port in published:
        assert port.startswith("127.0.0.1:") and port.count(":") == 2, f"{name} publishes {port}"
    raw = [str(p) for spec in _compose_raw()["services"].values() for p in spec.get("ports", [])]
    assert all(p.startswith("${MMOPS_BIND:-127.0.0.1}:") for p in raw), raw  # one switch to expose them


def test_every_compose_server_authenticates_its_clients(compose):
    services = compose["services"]
    mlflow = services["mlflow"]["environment"]
    assert match("mlflow-server", services["mlflow"]["command"]) is not None
    assert services["mlflow"]["command"][2:4] == ["--app-name", "basic-auth"]
    ini = _in_image(mlflow["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert "admin_password" not in ini.replace("# admin_password", "") and mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"]
    user_store = re.search(r"(?m)^database_uri = sqlite:///(/\S+)/basic_auth.db$", ini).group(1)
    assert f"mlflow-auth:{user_store}" in services["mlflow"]["volumes"]
    users = match("mlflow-users", services["mlflow-users"]["command"])["users"].split(",")
    assert _in_image(services["mlflow-users"]["command"][1]).is_file()
    for user in users:  # each user's password reaches the users script
        assert services["mlflow-users"]["environment"][f"MLFLOW_PASSWORD_{user.upper().replace('-', '_')}"]

    auth_string = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert auth_string.startswith("mmops:") and len(auth_string) > len("mmops:")
    for name, spec in services.items():
        environment = spec.get("environment", {})
        if "PREFECT_API_URL" in environment:
            assert environment["PREFECT_API_AUTH_STRING"] == auth_string, name
        if "MLFLOW_TRACKING_URI" in environment:
            assert environment["MLFLOW_TRACKING_USERNAME"] in {"admin", *users}, name
            assert environment["MLFLOW_TRACKING_PASSWORD"], name

    serve = services["serve"]["environment"]
    assert serve["MMOPS_SERVE_TOKEN"] and serve["MLFLOW_TRACKING_USERNAME"] == "mmops-serve"
    assert not {k for k in serve if k.startswith(("AWS_", "PREFECT_"))}, "serving holds no storage or Prefect keys"


def test_compose_secrets_are_checked_at_start_and_never_in_argv(compose):
    from mmops.serve.auth import check_env_secrets

    services = compose["services"]
    checker = services["check-secrets"]
    names = match("check-secrets", checker["command"])["names"].split(",")
    secret_vars = {m.group(2) for m in _VAR.finditer((INFRA / "compose.yaml").read_text())
                   if m.group(2) and re.search(r"PASSWORD|SECRET|TOKEN", m.group(2))}
    assert secret_vars <= set(names), f"not checked at start: {sorted(secret_vars - set(names))}"
    assert set(names) == set(checker["environment"])
    for name, spec in services.items():  # everything else waits for the check, directly or not
        if name != "check-secrets" and not spec.get("depends_on"):
            pytest.fail(f"{name} starts without waiting for check-secrets")
    for name in ("postgres", "minio"):
        assert services[name]["depends_on"]["check-secrets"]["condition"] == "service_completed_successfully"
    # .env.example holds placeholders only: a stack started from it unchanged refuses to start
    example = _env_file(INFRA / ".env.example")
    with pytest.MonkeyPatch.context() as mp:
        for name in names:
            mp.setenv(name, example[name])
        assert len(check_env_secrets(names)) == len(names)

    secret_values = {v for n, v in example.items() if n in names}
    doc = interpolate(_compose_raw(), example, set())
    for name, spec in doc["services"].items():
        argv = spec.get("command", []) + spec.get("entrypoint", [])
        argv = argv if isinstance(argv, list) else [argv]
        leaked = [v for v in secret_values if any(v in str(a) for a in argv)]
        assert not leaked, f"{name}: a secret in its command line"


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
    ("Job", "mlflow-users-", "mlflow-users"): ("mlflow-users", {"users": "mmops-pipeline,mmops-serve"}),
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


def _readme_secrets() -> dict[str, dict[str, str]]:
    """Secret name -> {key: value} as infra/README.md's `kubectl create secret` commands create them."""
    readme = (INFRA / "README.md").read_text()
    found = {}
    for m in re.finditer(r"kubectl -n mmops create secret generic ([\w-]+)((?:.*\\\n)*.*)", readme):
        found[m.group(1)] = dict(re.findall(r"--from-literal=(\w+)='([^']*)'", m.group(2)))
    return found


def test_k8s_config_and_secret_keys_exist():
    config = _k8s("ConfigMap", "mmops-config")["data"]
    secrets = _readme_secrets()
    assert set(secrets) == {"mmops-secrets", "mmops-pipeline", "mmops-serve"}, "infra/README.md creates the Secrets"
    for _, doc in _k8s_docs():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for c in _pod(doc).get("initContainers", []) + _pod(doc)["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config, e
                if "secretKeyRef" in ref:
                    keys = secrets.get(ref["secretKeyRef"]["name"], {})
                    assert ref["secretKeyRef"]["key"] in keys, f"{e} is not created in infra/README.md"
            for ref in c.get("envFrom", []):
                assert ref in ({"configMapRef": {"name": "mmops-config"}}, {"secretRef": {"name": "mmops-pipeline"}})


def test_k8s_database_uris_verify_the_server_certificate():
    secrets = _readme_secrets()["mmops-secrets"]
    mounts = {}
    for name in ("mlflow", "prefect-server"):
        deployment = _k8s("Deployment", name)
        volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
        for m in _container(deployment, name)["volumeMounts"]:
            if "configMap" in volumes[m["name"]]:
                mounts[name] = (m["mountPath"], volumes[m["name"]]["configMap"]["name"])
    for key, server in (("MLFLOW_BACKEND_STORE_URI", "mlflow"), ("PREFECT_API_DATABASE_CONNECTION_URL", "prefect-server")):
        uri = secrets[key]
        assert "sslmode=verify-full" in uri, key
        root_cert = re.search(r"sslrootcert=([^&]+)", uri).group(1)
        mount_path, config_map = mounts[server]
        assert Path(root_cert).parent == Path(mount_path) and config_map == "mmops-db-ca", key
    assert "kubectl -n mmops create configmap mmops-db-ca --from-file=ca.crt=" in (INFRA / "README.md").read_text()
    config = _k8s("ConfigMap", "mmops-config")["data"]
    assert config["MLFLOW_S3_ENDPOINT_URL"].startswith("https://")
    assert json.loads(config["MLFLOW_S3_UPLOAD_EXTRA_ARGS"])["ServerSideEncryption"]


def _all_containers(doc: dict) -> list[dict]:
    pod = _pod(doc)
    return pod.get("initContainers", []) + pod["containers"]


def _workloads() -> list[tuple[str, dict]]:
    """Every pod spec that runs: Deployments, Jobs and the flow-run Job the Prefect worker builds."""
    found = [(f"{d['kind']} {d['metadata'].get('name', d['metadata'].get('generateName'))}", d)
             for _, d in _k8s_docs() if d["kind"] in ("Deployment", "Job")]
    template = _template(K8S / "prefect-base-job-template.json")
    return found + [("flow-run Job", _flow_run_job(template, {}))]


# the Jobs keep a writable root filesystem: torch / Hugging Face caches under $HOME
WRITABLE_ROOT = {"Job mmops-train-", "flow-run Job"}


def test_every_k8s_container_runs_restricted():
    for name, doc in _workloads():
        pod = _pod(doc)["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in _all_containers(doc):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, (name, c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (name, c["name"])
            assert not sc.get("privileged"), (name, c["name"])
            if name not in WRITABLE_ROOT:
                assert sc.get("readOnlyRootFilesystem") is True, (name, c["name"])
                assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, (name, c["name"])


def test_k8s_network_policies_deny_by_default_and_allow_the_needed_flows():
    policies = {d["metadata"]["name"]: d["spec"] for _, d in _k8s_docs() if d["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def allowed_in(app: str) -> tuple[set, set]:
        """(ports, client app names) the policies let into pods of `app`."""
        ports, clients = set(), set()
        for spec in policies.values():
            if spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") != app:
                continue
            for rule in spec.get("ingress", []):
                ports |= {p["port"] for p in rule["ports"]}
                for peer in rule.get("from", [{}]):
                    exprs = peer.get("podSelector", {}).get("matchExpressions", [])
                    clients |= {v for e in exprs for v in e["values"]} or {"*"}
        return ports, clients

    assert allowed_in("mlflow") == ({5000}, {"mmops-serve", "mmops-flow-run", "mmops-train", "mlflow-users"})
    assert allowed_in("prefect-server") == ({4200}, {"prefect-worker", "mmops-flow-run"})
    assert allowed_in("mmops-serve") == ({8080}, {"*"})
    assert allowed_in("prefect-worker") == (set(), set())
    # every workload's pods carry the label the policies select on
    names = {doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] for _, doc in _workloads()}
    assert names == {"mlflow", "prefect-server", "prefect-worker", "mmops-serve", "mmops-train", "mlflow-users",
                     "mmops-flow-run"}


def test_k8s_servers_authenticate_and_keep_secrets_out_of_argv():
    mlflow = _container(_k8s("Deployment", "mlflow"), "mlflow")
    assert mlflow["command"][2:4] == ["--app-name", "basic-auth"]
    env_names = _env_names(mlflow)
    assert _in_image(env_names["MLFLOW_AUTH_CONFIG_PATH"]["value"]).is_file()
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_BACKEND_STORE_URI"} <= set(env_names)
    prefect = _env_names(_container(_k8s("Deployment", "prefect-server"), "prefect-server"))
    assert "PREFECT_SERVER_API_AUTH_STRING" in prefect
    serve = _env_names(_container(_k8s("Deployment", "mmops-serve"), "serve"))
    assert serve["MMOPS_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mmops-serve"
    assert not {k for k in serve if k.startswith("AWS_")}, "serving holds no storage keys"
    for name, doc in _workloads():
        for c in _all_containers(doc):
            secret_vars = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
            argv = " ".join(map(str, c.get("command", []) + c.get("args", [])))
            assert not {v for v in secret_vars if f"$({v})" in argv}, f"{name}/{c['name']}: a secret in argv"
            if "PREFECT_API_URL" in _env_names(c):  # the auth string, by env or from the pipeline's Secret
                from_secret = {"secretRef": {"name": "mmops-pipeline"}} in c.get("envFrom", [])
                assert "PREFECT_API_AUTH_STRING" in _env_names(c) or from_secret, f"{name}/{c['name']}"
    assert "PREFECT_API_AUTH_STRING" in _readme_secrets()["mmops-pipeline"]


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
