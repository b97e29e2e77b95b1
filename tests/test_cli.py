"""The `mmops` command: help everywhere, errors a person can act on, non-zero exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MMOPS = [str(Path(sys.executable).parent / "mmops")]
COMMANDS = [
    "demo-data", "validate", "preprocess", "train", "evaluate", "register", "promote", "rollback", "history",
    "ablate", "run", "schedule", "serve", "predict",
]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MMOPS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_stage():
    out = run("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "Usage" in out.stdout


def test_bad_override_names_the_key(tmp_path):
    out = run("train", "--set", "train.lr=-1", cwd=tmp_path)
    assert out.returncode == 2
    assert "train.lr" in out.stderr and "Traceback" not in out.stderr


def test_validate_passes_good_data(small_dataset, tmp_path):
    out = run("validate", str(small_dataset), "--set", f"paths.reports={tmp_path}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "validation.json").exists()


def test_validate_fails_bad_data_naming_sample_and_rule(mislabeled_dataset, tmp_path):
    broken, bad_id = mislabeled_dataset
    out = run("validate", str(broken), "--set", f"paths.reports={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1
    assert bad_id in out.stderr and "label" in out.stderr
    assert "Traceback" not in out.stderr
