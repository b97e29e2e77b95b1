"""`mmops env`: shell exports that point mlflow, prefect and dvc at the project's state.

The acceptance test follows the README: in a clean shell (no venv on PATH, no MLflow or Prefect
variables) `eval "$(mmops env)"`, then the README's Python snippet loads `models:/<name>@champion`
and `mlflow models serve` answers /ping, with no stray ./mlflow.db.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from servers import BIN, free_port, running

NAME = "mmops-env-e2e"
TINY_APP = textwrap.dedent("""
    import typer
    from mmops.cli.tools import env_command, ui_command
    app = typer.Typer()
    app.command("env")(env_command)
    app.command("ui")(ui_command)
    app()
""")


def mmops_argv(folder: Path) -> list[str]:
    """argv prefix of `mmops`: the real one once `env`/`ui` are registered, else a tiny app with them."""
    from mmops.cli import app

    if {"env", "ui"} <= {c.name for c in app.registered_commands}:
        return [str(BIN / "mmops")]
    script = folder / "mmops_tools_app.py"
    script.write_text(TINY_APP)
    return [sys.executable, str(script)]


def clean_env(**extra: str) -> dict[str, str]:
    """A login-like environment: no venv on PATH, no MLflow/Prefect/tool-state variables."""
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return {**env, **extra}


def shell(script: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def q(path) -> str:
    import shlex

    return shlex.quote(str(path))


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder whose path needs quoting."""
    root = tmp_path / "my proj $HOME 'x'"
    root.mkdir()
    return root


def test_env_prints_quoted_exports_that_eval_in_bash(project, tmp_path):
    cmd = " ".join(q(a) for a in mmops_argv(tmp_path))
    out = shell(f'eval "$({cmd} env)" && env', cwd=project)
    assert out.returncode == 0, out.stderr
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    state = project.resolve() / ".mmops"
    assert seen["MLFLOW_TRACKING_URI"] == f"sqlite:///{state / 'mlflow.db'}"
    assert seen["PREFECT_HOME"] == str(state / "prefect")
    assert seen["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and seen["DO_NOT_TRACK"] == "1"
    assert seen["DVC_SITE_CACHE_DIR"] == str(state / "dvc-site-cache") and seen["HF_HOME"] == str(state / "hf")
    assert seen["PATH"].split(":")[0] == str(BIN) and "/usr/bin" in seen["PATH"].split(":")
    assert "PREFECT_API_URL" not in seen
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()

    printed = subprocess.run([*mmops_argv(tmp_path), "env"], cwd=project, env=clean_env(), capture_output=True,
                             text=True, timeout=60)
    assert all(line.startswith("export ") for line in printed.stdout.splitlines())  # notes go to stderr
    assert "no `mmops schedule` running" in printed.stderr


def test_env_is_idempotent_and_keeps_what_the_environment_sets(project, tmp_path):
    cmd = " ".join(q(a) for a in mmops_argv(tmp_path))
    out = shell(f'eval "$({cmd} env)" && eval "$({cmd} env)" && echo "$PATH" && echo "$MLFLOW_TRACKING_URI"',
                cwd=project, env=clean_env(MLFLOW_TRACKING_URI="http://127.0.0.1:5999"))
    assert out.returncode == 0, out.stderr
    path, uri = out.stdout.splitlines()
    assert path.split(":").count(str(BIN)) == 1
    assert uri == "http://127.0.0.1:5999"
    assert "kept from the environment: MLFLOW_TRACKING_URI" in out.stderr


def test_env_fish_syntax(project, tmp_path):
    out = subprocess.run([*mmops_argv(tmp_path), "env", "--shell", "fish"], cwd=project, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"set -gx PATH '{BIN}' ")
    home = str(project.resolve() / ".mmops" / "prefect").replace("'", "\\'")
    assert f"set -gx PREFECT_HOME '{home}';" in lines


def _fake_prefect_server(tmp_path: Path) -> subprocess.Popen:
    """A live process whose command line names prefect (what the PID check looks for)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "prefect-server-stand-in"],
                            start_new_session=True)


def test_env_points_the_prefect_cli_at_a_running_schedule_server(project, tmp_path, monkeypatch):
    from mmops.env import forget_prefect_server, record_prefect_server

    home = project / ".mmops" / "prefect"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    fake = _fake_prefect_server(tmp_path)
    try:
        record = record_prefect_server(api, fake.pid, "mmops:s3cr3t 'quoted'")
        assert stat.S_IMODE((home / "server-auth").stat().st_mode) == 0o600
        cmd = " ".join(q(a) for a in mmops_argv(tmp_path))
        out = shell(f'eval "$({cmd} env)" && echo "$PREFECT_API_URL" && echo "$PREFECT_API_AUTH_STRING"', cwd=project)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [api, "mmops:s3cr3t 'quoted'"]
        assert f"pid {fake.pid}" in out.stderr
    finally:
        fake.kill()
        fake.wait()
    # the server is gone: nothing exported, and a stale loopback URL in the shell is unset
    out = shell(f'eval "$({cmd} env)" && echo "url=${{PREFECT_API_URL-unset}} auth=${{PREFECT_API_AUTH_STRING-unset}}"',
                cwd=project, env=clean_env(PREFECT_API_URL=api, PREFECT_API_AUTH_STRING="x"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "url=unset auth=unset"
    assert "does not answer" in out.stderr
    forget_prefect_server(fake.pid)
    assert not record.exists() and not (home / "server-auth").exists()


def test_forget_leaves_another_servers_record(tmp_path, monkeypatch):
    from mmops.env import forget_prefect_server, record_prefect_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    record = record_prefect_server("http://127.0.0.1:1/api", 12345, None)
    forget_prefect_server(54321)
    assert record.exists() and not (tmp_path / "server-auth").exists()


# --- acceptance: the README's snippet and `mlflow models serve` after eval "$(mmops env)" ---------


@pytest.fixture(scope="module")
def registered_project(prepared, small_dataset, served_model_dir, tmp_path_factory):
    """A project folder whose own .mmops/mlflow.db holds NAME with alias champion (a real small model:
    the session's 3-epoch one, copied)."""
    import mlflow
    from mlflow import MlflowClient

    from mmops import stages
    from mmops.catalog import VALIDATION_JSON, Catalog

    root = tmp_path_factory.mktemp("env-project")
    old_cwd, old_uri = Path.cwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)  # the store is the project's: ./.mmops/mlflow.db, artifacts in ./.mmops/mlartifacts
    try:
        params = prepared.model_copy(update={
            "paths": prepared.paths.model_copy(update={"model": root / "model", "metrics": root / "metrics"}),
            "train": prepared.train.model_copy(update={"epochs": 3}),
            "registry": prepared.registry.model_copy(update={"model_name": NAME}),
            "quantize": prepared.quantize.model_copy(update={"enabled": False}),
        })
        paths = Catalog.from_paths(params.paths)
        shutil.copytree(served_model_dir, paths.model)  # what stages.train(params, paths) would write
        stages.evaluate(params, paths)
        reports = root / "reports"
        reports.mkdir()
        shutil.copy(Catalog.from_paths(prepared.paths).validation_json, reports / VALIDATION_JSON)
        params = params.model_copy(update={"paths": params.paths.model_copy(update={"reports": reports})})
        result = stages.register(params, Catalog.from_paths(params.paths, small_dataset))
        if not result["promoted"]:  # the gate is not under test here
            MlflowClient().set_registered_model_alias(NAME, "champion", result["version"])
    finally:
        mlflow.set_tracking_uri(None)
        os.chdir(old_cwd)
        if old_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
    assert (root / ".mmops" / "mlflow.db").exists()
    return root


@pytest.mark.slow
def test_readme_snippet_and_mlflow_models_serve_after_mmops_env(registered_project, small_dataset, tmp_path):
    import pandas as pd

    root = registered_project
    manifest = pd.read_csv(small_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    row = manifest[(manifest["image"] != "") & (manifest["audio"] != "")].iloc[0]
    env_cmd = " ".join(q(a) for a in mmops_argv(tmp_path)) + " env"
    snippet = textwrap.dedent(f"""
        import mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        out = model.predict(pd.DataFrame({{"text": ["an odd number"], "image": [{row['image']!r}],
                                          "audio": [open({str(small_dataset / row['audio'])!r}, "rb").read()]}}))
        print("LABEL", out["label"][0])
    """)
    script = (f'eval "$({env_cmd})" && test "$(command -v python)" = {q(BIN / "python")} && '
              f"MMOPS_MEDIA_ROOT={q(small_dataset)} python - <<'EOF'\n{snippet}\nEOF")
    out = shell(script, cwd=root, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    label = [line for line in out.stdout.splitlines() if line.startswith("LABEL ")]
    assert label and label[0].split()[1] in {str(d) for d in range(10)}

    port = free_port()
    serve = f'cd {q(root)} && eval "$({env_cmd})" && exec mlflow models serve -m models:/{NAME}@champion ' \
            f"--env-manager local -p {port} -h 127.0.0.1"
    argv = ["env", "-i", *(f"{k}={v}" for k, v in clean_env().items()), "bash", "-c", serve]
    with running(argv, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", timeout=180):
        body = {"dataframe_split": {"columns": ["text", "image", "audio"], "data": [["an odd number", None, None]]}}
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] in {str(d) for d in range(10)}
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()  # no stray stores
