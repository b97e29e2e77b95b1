"""`mmops promote / rollback / history`: separate processes share the history kept in the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from mmops.cli import app
from mmops.registry.promotion import CHAMPION, current_version, read_history

MMOPS = str(Path(sys.executable).parent / "mmops")


def mmops(store: str, cwd: Path, *args: str, actor: str) -> subprocess.CompletedProcess:
    """The command in a new process (so a new MLflow client) against the same store."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MMOPS_ACTOR": actor}
    return subprocess.run([MMOPS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def in_process(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "MMOPS_ACTOR": "carol@laptop"})


@pytest.mark.slow  # three CLI processes (about 60 s on 2 busy cores)
def test_promote_rollback_history_across_processes(model, store, tmp_path):
    client, name = model
    model_opt = ["--set", f"registry.model_name={name}"]
    assert in_process("promote", "1", "--reason", "first release", *model_opt).exit_code == 0
    out = mmops(store, tmp_path, "promote", "2", "--reason", "better audio", *model_opt, actor="dave@ci")
    assert out.returncode == 0, out.stderr
    assert "champion v1 -> v2" in out.stderr and "champion_int8 (unset) -> v4" in out.stderr
    out = mmops(store, tmp_path, "rollback", "--reason", "v2 misroutes digits", *model_opt, actor="erin@ops")
    assert out.returncode == 0, out.stderr
    assert current_version(MlflowClient(), name) == "1"

    # A new process (a new client on the same store) reads the complete history back.
    out = mmops(store, tmp_path, "history", "--json", *model_opt, actor="anyone")
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    assert [(e["alias"], e["from_version"], e["to_version"], e["action"], e["actor"]) for e in events] == [
        (CHAMPION, None, "1", "promote", "carol@laptop"),
        (CHAMPION, "1", "2", "promote", "dave@ci"),
        ("champion_int8", None, "4", "promote", "dave@ci"),
        (CHAMPION, "2", "1", "rollback", "erin@ops"),
        ("champion_int8", "4", None, "rollback", "erin@ops"),
    ]
    assert events[1]["reason"] == "better audio" and events[1]["rules"]["floor.accuracy"].startswith("pass")
    assert events == [e.model_dump() for e in read_history(MlflowClient(), name)]

    table = in_process("history", *model_opt)
    assert table.exit_code == 0, table.output
    for text in ("v2 misroutes digits", "rollback", "dave@ci", "v1 → v2", "(removed)", "undo", "5 moves"):
        assert text in table.output, text


def test_cli_errors_name_the_problem(model):
    _, name = model
    model_opt = ["--set", f"registry.model_name={name}"]
    out = in_process("promote", "3", "--reason", "r", *model_opt)
    assert out.exit_code == 1 and "v3 was rejected by the gate" in out.output and "--force" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
    out = in_process("promote", "1", *model_opt)
    assert out.exit_code == 2 and "--reason" in out.output
    out = in_process("rollback", "--reason", "r", *model_opt)
    assert out.exit_code == 1 and "no champion to roll back" in out.output
    out = in_process("promote", "1", "--reason", "r", "--expect-champion", "7", *model_opt)
    assert out.exit_code == 1 and "champion is unset, not v7 as --expect-champion said; nothing changed" in " ".join(out.output.split())
    assert read_history(MlflowClient(), name) == []
