"""`mmops ui mlflow|prefect`: the tools' UIs on the project's state, on 127.0.0.1."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from servers import BIN, free_port, running
from test_env import clean_env, mmops_argv


def ui(tmp_path: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*mmops_argv(tmp_path), "ui", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


def test_ui_help_names_both_tools_and_the_port(tmp_path):
    out = ui(tmp_path, tmp_path, "--help")
    assert out.returncode == 0
    assert "mlflow" in out.stdout and "prefect" in out.stdout and "--port" in out.stdout
    assert "--print-command" in out.stdout


def test_mlflow_ui_command_uses_the_project_store(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    out = ui(tmp_path, project, "mlflow", "--port", "5123", "--print-command")
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout)
    state = project.resolve() / ".mmops"
    assert words[0] == "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"
    assert words[1:3] == [str(BIN / "mlflow"), "ui"]
    opts = dict(zip(words[3::2], words[4::2]))
    assert opts["--backend-store-uri"] == f"sqlite:///{state / 'mlflow.db'}"
    assert opts["--artifacts-destination"] == (state / "mlartifacts").as_uri()
    assert opts["--host"] == "127.0.0.1" and opts["--port"] == "5123"
    assert not (project / "mlflow.db").exists()


def test_mlflow_ui_on_a_tracking_server_prints_its_url(tmp_path):
    out = ui(tmp_path, tmp_path, "mlflow", MLFLOW_TRACKING_URI="http://127.0.0.1:5999")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "http://127.0.0.1:5999"


def test_prefect_ui_starts_a_server_on_the_project_home(tmp_path):
    out = ui(tmp_path, tmp_path, "prefect", "--print-command")
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout)
    assert f"PREFECT_HOME={tmp_path.resolve() / '.mmops' / 'prefect'}" in words
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in words and "DO_NOT_TRACK=1" in words
    start = words.index(str(BIN / "prefect"))
    assert words[start:] == [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", "4200"]


def test_prefect_ui_shows_the_running_schedule_server(tmp_path, monkeypatch):
    from mmops.env import forget_prefect_server, record_prefect_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".mmops" / "prefect"))
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "prefect-stand-in"])
    try:
        record_prefect_server("http://127.0.0.1:4999/api", fake.pid, "mmops:secret")
        out = ui(tmp_path, tmp_path, "prefect", "--print-command")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "http://127.0.0.1:4999"
        assert "auth string" in out.stderr and "mmops:secret" not in out.stdout + out.stderr
    finally:
        fake.kill()
        fake.wait()
        forget_prefect_server(fake.pid)


@pytest.mark.slow
def test_mlflow_ui_serves_the_project_store_until_stopped(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    port = free_port()
    argv = ["env", "-i", *(f"{k}={v}" for k, v in clean_env().items()),
            "bash", "-c", f"cd {shlex.quote(str(project))} && exec " + shlex.join([*mmops_argv(tmp_path), "ui",
                                                                                     "mlflow", "--port", str(port)])]
    with running(argv, f"http://127.0.0.1:{port}/health", tmp_path / "ui.log", timeout=180) as proc:
        import httpx

        r = httpx.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10", timeout=30)
        assert r.status_code == 200, r.text
        assert (project / ".mmops" / "mlflow.db").exists()  # the project's store, created by the UI's server
    assert proc.poll() is not None  # stopped by PID
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()
