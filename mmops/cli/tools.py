"""`mmops env` and `mmops ui`: the tools' own commands (mlflow, prefect, dvc) on this project's state."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import urllib.parse
import urllib.request
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

# only light imports: `eval "$(mmops env)"` runs in every new shell (no mlflow, torch or registry code)
from mmops.env import SHELL_KEYS, STATE_DIR, project_tracking_uri, running_prefect_server, tool_defaults

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Shell(str, Enum):
    sh = "sh"
    fish = "fish"


class Tool(str, Enum):
    mlflow = "mlflow"
    prefect = "prefect"


def _note(message: str) -> None:
    print(f"mmops: {message}", file=sys.stderr, flush=True)


def _venv_bin() -> Path | None:
    """The bin folder of the environment mmops runs in, when that is a virtual environment."""
    return Path(sys.executable).parent if sys.prefix != sys.base_prefix else None


def _program(name: str) -> str:
    """`name` from this interpreter's environment when it is there, else from PATH."""
    bin_dir = Path(sys.executable).parent
    return str(bin_dir / name) if (bin_dir / name).exists() else (shutil.which(name) or name)


def _answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _project_env() -> tuple[dict[str, str], list[str]]:
    """(variables to export, variables to unset) for a shell working on this project."""
    if not any((Path.cwd() / name).exists() for name in ("params.yaml", "dvc.yaml", STATE_DIR)):
        _note(f"{Path.cwd()} has no params.yaml, dvc.yaml or .mmops: the exports name state folders here")
    defaults = tool_defaults()
    exports: dict[str, str] = {}
    unset: list[str] = []
    bin_dir = _venv_bin()
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    if bin_dir is not None and (not path or path[0] != str(bin_dir)):
        exports["PATH"] = os.pathsep.join([str(bin_dir), *(p for p in path if p != str(bin_dir))])
    defaults["MLFLOW_TRACKING_URI"] = project_tracking_uri()
    kept = [key for key in ("MLFLOW_TRACKING_URI", *SHELL_KEYS) if os.environ.get(key) not in (None, defaults[key])]
    exports["MLFLOW_TRACKING_URI"] = os.environ.get("MLFLOW_TRACKING_URI") or defaults["MLFLOW_TRACKING_URI"]
    for key in SHELL_KEYS:
        exports[key] = os.environ.get(key) or defaults[key]
    if kept:
        _note(f"kept from the environment: {', '.join(kept)}")

    server = running_prefect_server()
    if server is not None:  # a running `mmops schedule`: the prefect CLI talks to its server
        exports["PREFECT_API_URL"] = server["url"]
        if server["auth"]:
            exports["PREFECT_API_AUTH_STRING"] = server["auth"]
        else:
            unset.append("PREFECT_API_AUTH_STRING")
        _note(f"Prefect API: the `mmops schedule` server at {server['url']} (pid {server['pid']})")
    elif os.environ.get("PREFECT_API_URL"):
        url = os.environ["PREFECT_API_URL"]
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in LOOPBACK and not _answers(f"{url.rstrip('/')}/health"):
            unset += ["PREFECT_API_URL", "PREFECT_API_AUTH_STRING"]
            _note(f"Prefect API: {url} does not answer; unset (prefect commands start a temporary server)")
        else:
            _note(f"Prefect API: kept from the environment ({url})")
    else:
        _note("Prefect API: no `mmops schedule` running; prefect commands start a temporary server on "
              "PREFECT_HOME (deployments exist only on the server `mmops schedule` starts)")
    return exports, unset


def _fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(exports: dict[str, str], unset: list[str], shell: Shell = Shell.sh) -> str:
    """Shell lines that set `exports` (values quoted) and unset `unset`."""
    if shell is Shell.fish:
        lines = [f"set -gx {key} {_fish_quote(value)};" for key, value in exports.items() if key != "PATH"]
        if "PATH" in exports:  # fish keeps PATH as a list
            lines.insert(0, "set -gx PATH " + " ".join(_fish_quote(p) for p in exports["PATH"].split(os.pathsep)) + ";")
        lines += [f"set -e {key};" for key in unset]
    else:
        lines = [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
        lines += [f"unset {key}" for key in unset]
    return "\n".join(lines) + "\n"


def env_command(
    shell: Annotated[Shell, typer.Option("--shell", help="syntax of the lines: sh (bash, zsh, …) or fish")] = Shell.sh,
) -> None:
    """Print shell exports that point mlflow, prefect and dvc at this project's state.

    Usage: eval "$(mmops env)"   (fish: mmops env --shell fish | source)

    Sets MLFLOW_TRACKING_URI (the project's .mmops/mlflow.db unless already set), PREFECT_HOME,
    DVC_SITE_CACHE_DIR, HF_HOME, Prefect telemetry off (PREFECT_SERVER_ANALYTICS_ENABLED=false,
    DO_NOT_TRACK=1), this virtual environment's bin first on PATH, and, while `mmops schedule`
    runs, PREFECT_API_URL and PREFECT_API_AUTH_STRING of its server. Values already in the
    environment win. Only the exports go to stdout; notes go to stderr.
    """
    exports, unset = _project_env()
    sys.stdout.write(render(exports, unset, shell))
    sys.stdout.flush()


def ui_argv(tool: Tool, port: int | None = None) -> tuple[list[str], dict[str, str]] | str:
    """(argv, extra env) of the server that shows `tool`'s UI on this project's state, or the URL
    of one that already runs (an MLflow tracking server, the `mmops schedule` Prefect server)."""
    if tool is Tool.mlflow:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or project_tracking_uri()
        if urllib.parse.urlsplit(uri).scheme in ("http", "https"):
            return uri
        (Path.cwd().resolve() / STATE_DIR).mkdir(exist_ok=True)  # sqlite makes the file, not its folder
        artifacts = (Path.cwd().resolve() / STATE_DIR / "mlartifacts").as_uri()
        argv = [_program("mlflow"), "ui", "--backend-store-uri", uri, "--artifacts-destination", artifacts,
                "--host", "127.0.0.1", "--port", str(port or 5000), "--workers", "1"]
        return argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # MLflow 3: no ~30 s job runner start-up
    server = running_prefect_server()
    api = server["url"] if server else os.environ.get("PREFECT_API_URL")
    if api:
        return api.rstrip("/").removesuffix("/api")
    argv = [_program("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port or 4200)]
    return argv, {"PREFECT_HOME": os.environ.get("PREFECT_HOME") or tool_defaults()["PREFECT_HOME"],
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def ui_command(
    tool: Annotated[Tool, typer.Argument(help="mlflow or prefect")],
    port: Annotated[Optional[int], typer.Option(help="port on 127.0.0.1 (default: mlflow 5000, prefect 4200)")] = None,
    print_command: Annotated[bool, typer.Option("--print-command", help="print the server command; start nothing")] = False,
) -> None:
    """Open the MLflow or Prefect UI on this project's state, on 127.0.0.1, until Ctrl-C.

    mlflow: `mlflow ui` on MLFLOW_TRACKING_URI or .mmops/mlflow.db (artifacts in .mmops/mlartifacts);
    when MLFLOW_TRACKING_URI names a server, prints its URL instead. prefect: prints the URL of the
    server `mmops schedule` (or PREFECT_API_URL) runs; else `prefect server start` on the project's
    PREFECT_HOME.
    """
    found = ui_argv(tool, port)
    if isinstance(found, str):  # already running: nothing to start
        print(found, flush=True)
        server = running_prefect_server() if tool is Tool.prefect else None
        if server and server["auth"]:
            _note("the UI asks for the server's auth string: run `mmops env` or read "
                  f"{Path(os.environ.get('PREFECT_HOME') or tool_defaults()['PREFECT_HOME']) / 'server-auth'}")
        return
    argv, env = found
    if print_command:
        print(shlex.join([f"{k}={v}" for k, v in env.items()] + argv), flush=True)
        return
    url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    _note(f"{tool.value} UI on {url} (Ctrl-C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **env})  # foreground, same PID: Ctrl-C and kill reach the server
