"""`mmops schedule` and `mmops run --force` at the command line (the full stack: test_scheduling.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MMOPS = str(Path(sys.executable).parent / "mmops")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MMOPS, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_schedule_and_force_are_documented(tmp_path):
    assert "schedule" in run("--help", cwd=tmp_path).stdout
    assert "--force" in run("run", "--help", cwd=tmp_path).stdout
    help_text = run("schedule", "--help", cwd=tmp_path).stdout
    assert "Ctrl-C" in help_text and "--port" in help_text


def test_schedule_refuses_a_bad_timezone_before_starting_anything(tmp_path):
    out = run("schedule", "--set", "orchestration.schedule.timezone=Mars/Olympus", cwd=tmp_path)
    assert out.returncode == 2
    assert "orchestration.schedule.timezone" in out.stderr and "Mars/Olympus" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / ".mmops" / "logs").exists()  # no server or worker was started
