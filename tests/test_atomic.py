"""The atomic-write helper: the target holds the old content or the new, never a torn file, and no
temporary file outlives a failed writer."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mmops.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)


def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_text('{"accuracy": 0.')  # half the new content
        raise RuntimeError("disk on fire")
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_thin_forms_replace_content_and_respect_the_umask(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")
    assert atomic_write_bytes(target, "névé\n".encode()) == target
    assert target.read_text(encoding="utf-8") == "névé\n"
    atomic_write_json(tmp_path / "a.json", {"b": [1, 2]}, indent=None)
    assert (tmp_path / "a.json").read_text() == '{"b": [1, 2]}\n'
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0600


def test_the_temporary_keeps_the_suffix_and_lies_beside_the_target(tmp_path):
    with atomic_path(tmp_path / "roc.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
    assert (tmp_path / "roc.png").read_bytes() == b"png"


def test_sigkill_mid_write_keeps_the_old_file_and_the_leftover_is_cleaned(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write_bytes(target, b"complete old checkpoint")
    script = (
        "import os, signal, sys; from mmops.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    with open(tmp, 'wb') as fh: fh.write(b'torn'); fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"complete old checkpoint"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"torn"
    (tmp_path / ".hidden-but-mine").write_text("kept")
    assert remove_stale_temps(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-but-mine", "checkpoint.pt"]
