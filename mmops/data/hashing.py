"""Content hash of a dataset: the manifest bytes plus every media file it names."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd

from mmops.data.manifest import MEDIA_COLUMNS, manifest_path, read_manifest

CHUNK = 1 << 20
MISSING = "missing"  # digest stand-in for a named file that does not exist
OUTSIDE = "outside"  # ... for a path that resolves outside the dataset folder (never read)
ABSENT = "absent"  # digest stand-in for a file or folder that does not exist (yet)


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of one file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_digests(path: str | Path, file_hash: Callable[[Path], str] = file_sha256) -> dict[str, str]:
    """{relative posix path: sha256} of every file under a folder (caches excluded), sorted by path."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return {f.relative_to(path).as_posix(): file_hash(f) for f in files}


def digests_sha256(digests: Mapping[str, str]) -> str:
    """The folder hash of `tree_digests` output (what `tree_sha256` returns for the folder)."""
    h = hashlib.sha256()
    for name in sorted(digests, key=lambda n: n.split("/")):  # Path order, as tree_sha256 always hashed
        h.update(f"{name}\0{digests[name]}\n".encode())
    return h.hexdigest()


def tree_sha256(path: str | Path, absent: str = ABSENT, file_hash: Callable[[Path], str] = file_sha256) -> str:
    """Content hash of a file, or of a folder (relative paths + file hashes); `absent` if missing."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        return absent
    return digests_sha256(tree_digests(path, file_hash))


class InsideResolver:
    """Resolve manifest cells against a dataset root, following symlinks; None if the result escapes.

    Directories are resolved once and cached, so each file costs one lstat, not one per component.
    """

    def __init__(self, root: str | Path):
        self.root = os.path.realpath(root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._dirs: dict[str, str] = {}

    def __call__(self, rel: str) -> Path | None:
        if not rel or "\0" in rel:
            return None
        full = rel if os.path.isabs(rel) else os.path.join(self.root, rel)
        head, name = os.path.split(full)
        try:
            if name in ("", ".", ".."):
                resolved = os.path.realpath(full)
            else:
                d = self._dirs.get(head)
                if d is None:
                    d = self._dirs[head] = os.path.realpath(head)
                resolved = os.path.join(d, name)
                if os.path.islink(resolved):
                    resolved = os.path.realpath(resolved)
        except (OSError, ValueError):
            return None
        inside = resolved == self.root or resolved.startswith(self._prefix)
        return Path(resolved) if inside else None


def media_cells(df: pd.DataFrame | None) -> list[str]:
    """Sorted distinct non-empty media cells (relative paths as written) of a manifest."""
    if df is None:
        return []
    cells: set[str] = set()
    for col in MEDIA_COLUMNS:
        if col in df.columns:
            cells.update(v for v in df[col].astype(str) if v.strip())
    return sorted(cells)


def combine(manifest_name: str, manifest_digest: str, media: Iterable[tuple[str, str]]) -> str:
    """Fold the manifest digest and (relative path, digest) pairs, in sorted order, into one sha256."""
    h = hashlib.sha256()
    h.update(f"mmops-dataset-v1\0{manifest_name}\0{manifest_digest}\n".encode())
    for rel, digest in sorted(media):
        h.update(rel.encode("utf-8", "surrogatepass") + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


def dataset_hash(
    data_dir: str | Path,
    known_digests: Mapping[Path, str] | None = None,
    df: pd.DataFrame | None = None,
) -> str:
    """sha256 over the manifest bytes and every referenced media file (relative path + content).

    `known_digests` (resolved path -> sha256) reuses digests already computed, e.g. by the
    validator; `df` reuses an already-read manifest. The result does not depend on either.
    """
    data_dir = Path(data_dir)
    mpath = manifest_path(data_dir)
    mdigest = file_sha256(mpath)
    if df is None:
        try:
            df = read_manifest(data_dir)
        except Exception:  # unreadable manifest: its bytes alone identify it
            df = None
    resolve = InsideResolver(data_dir)
    pairs = []
    for rel in media_cells(df):
        resolved = resolve(rel)
        if resolved is None:
            digest = OUTSIDE
        elif resolved in (known_digests or {}):
            digest = known_digests[resolved]  # type: ignore[index]
        elif resolved.is_file():
            digest = file_sha256(resolved)
        else:
            digest = MISSING
        pairs.append((rel, digest))
    return combine(mpath.name, mdigest, pairs)
