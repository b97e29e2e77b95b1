"""Atomic file writes: a reader, or the next run after a crash, sees the old file or the new one,
never a torn one.

One primitive, `atomic_path`: write a temporary file in the target's folder, flush and fsync it,
`os.replace` it over the target, then fsync the folder so the rename itself survives a power
cut. The `atomic_write_*` forms cover bytes, text and JSON; writers that want a path
(`torch.save`, `DataFrame.to_csv`, `Figure.savefig`) write to the path `atomic_path` yields.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"  # temporary names are `.<name>.tmp-<random><suffix>`, hidden, in the target's folder


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside `path`, keeping its suffix (savefig picks the format from it)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(6)}{path.suffix}")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete leftover temporaries directly in `folder` (a writer killed mid-write); returns them.

    Only for a folder no other process is writing to at the time.
    """
    folder = Path(folder)
    stale = [p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic there
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it is fsynced and renamed over `path`.

    If the body raises (or the process dies), `path` keeps its old content (or stays absent) and
    the temporary is removed (a killed process may leave a hidden `.<name>.tmp-*`; see
    `remove_stale_temps`). The folder must exist.
    """
    path = Path(path)
    tmp = temp_name(path)
    # created here (not by the writer) so the name is ours alone; 0o666 less the umask, as open() would
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the writer closed its handle; fsync on any handle flushes the file's data
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns `path`."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (and a final newline) to `path` atomically; returns `path`."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
