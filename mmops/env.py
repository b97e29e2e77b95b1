"""Keep every tool's state inside the project (or wherever the environment already points)."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_DIR = Path(".mmops")
PROJECT_MARKERS = ("params.yaml", "dvc.yaml")

# Telemetry off: the Prefect server's analytics heartbeat, and the Prefect SDK's client-side
# events (Prefect 3 honours the DO_NOT_TRACK standard: prefect/_internal/analytics/enabled.py).
TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}

# What `mmops env` hands to a shell: where the tools keep their state, and telemetry off.
SHELL_KEYS = ("PREFECT_HOME", *TELEMETRY_OFF, "DVC_SITE_CACHE_DIR", "HF_HOME")

SERVER_FILE = "server.json"  # in PREFECT_HOME: the Prefect server `mmops schedule` started
AUTH_FILE = "server-auth"  # beside it, mode 0600: that server's auth string


def tool_defaults(root: Path | None = None) -> dict[str, str]:
    """The env var defaults `configure_tool_env` applies for the project at `root` (default: cwd)."""
    state = (root or Path.cwd()).resolve() / STATE_DIR
    defaults = {
        "PREFECT_HOME": state / "prefect",
        **TELEMETRY_OFF,
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "DVC_SITE_CACHE_DIR": state / "dvc-site-cache",
        "HF_HOME": state / "hf",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    return {key: str(value) for key, value in defaults.items()}


def project_root() -> Path:
    """`$MMOPS_PROJECT_ROOT`, else the nearest folder from the working directory up that holds
    `params.yaml` or `dvc.yaml`, else the working directory."""
    if os.environ.get("MMOPS_PROJECT_ROOT"):
        return Path(os.environ["MMOPS_PROJECT_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    return next((d for d in (cwd, *cwd.parents) if any((d / m).is_file() for m in PROJECT_MARKERS)), cwd)


def project_tracking_uri(root: Path | None = None) -> str:
    """The project's embedded MLflow store, `sqlite:////abs/.mmops/mlflow.db` (what
    `mmops.registry.tracking.tracking_uri` uses when MLFLOW_TRACKING_URI is unset); no imports, no I/O."""
    return f"sqlite:///{(root or Path.cwd()).resolve() / STATE_DIR / 'mlflow.db'}"


def configure_tool_env(root: Path | None = None) -> None:
    """Set defaults for Prefect, DVC, Hugging Face and MLflow env vars; existing values win.

    Must run before `prefect` is imported (it reads PREFECT_HOME at import).
    """
    for key, value in tool_defaults(root).items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect makes only the leaf


def _prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or tool_defaults()["PREFECT_HOME"])


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` via a temp file created with `mode` (never wider), then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never wider than asked
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def record_prefect_server(url: str, pid: int, auth: str | None) -> Path:
    """Note the Prefect server `mmops schedule` started (API URL, PID; auth string in a 0600 file)
    so `mmops env` and `mmops ui prefect` can point clients at it. Returns the record's path."""
    home = _prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    if auth:
        _write_private(home / AUTH_FILE, auth, 0o600)
    else:
        (home / AUTH_FILE).unlink(missing_ok=True)
    record = {"url": url, "pid": pid, "auth_file": str(home / AUTH_FILE) if auth else None}
    _write_private(home / SERVER_FILE, json.dumps(record) + "\n", 0o644)
    return home / SERVER_FILE


def forget_prefect_server(pid: int) -> None:
    """Remove the record (and auth file) of the server with `pid`, if it is still the one recorded."""
    home = _prefect_home()
    try:
        record = json.loads((home / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return
    if record.get("pid") == pid:
        (home / SERVER_FILE).unlink(missing_ok=True)
        (home / AUTH_FILE).unlink(missing_ok=True)


def _alive(pid: int, name: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the PID
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # guard against a reused PID where /proc tells
        try:
            return name in cmdline.read_bytes().decode(errors="replace")
        except OSError:
            return False
    return True


def running_prefect_server() -> dict | None:
    """{"url", "pid", "auth"} of the Prefect server a running `mmops schedule` started (found
    through PREFECT_HOME), or None when there is none or its process is gone."""
    home = _prefect_home()
    try:
        record = json.loads((home / SERVER_FILE).read_text())
        pid, url = int(record["pid"]), str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid, "prefect"):
        return None
    auth = None
    if record.get("auth_file"):
        try:
            auth = Path(record["auth_file"]).read_text().strip() or None
        except OSError:
            auth = None
    return {"url": url, "pid": pid, "auth": auth}
