"""Stage caching on content hashes, the way `dvc repro` decides what to rerun.

A stage's key hashes what it depends on: the content of its input files and folders, the
params sections it reads and the source of the `mmops` packages that implement it, plus where
it writes. The params keys and code are the stage's `params:` and `mmops/...` `deps:` in
`dvc.yaml`, read from there: the stage graph is declared once. After a stage runs, a stamp in
the catalogue's stage-stamp folder records the key and the content hash of every output. A
later run may reuse the result only when the key is unchanged *and* the outputs on disk still
hash as recorded, so a deleted or edited output folder reruns the stage. The flow hands the
key to Prefect as the task's cache key (the UI then shows the run as `Cached`), and refreshes
the cache whenever the stamp is not fresh or `force` is set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

import mmops
from mmops.atomic import atomic_write_json
from mmops.catalog import Catalog
from mmops.config import Params
from mmops.data.hashing import file_sha256, tree_sha256

PACKAGE_ROOT = Path(mmops.__file__).resolve().parent
CODE_PREFIX = "mmops/"  # the `deps:` entries that are code, not data


@dataclass(frozen=True)
class StageDeps:
    """What a stage's result depends on besides its input files: params keys and code."""

    params: tuple[str, ...]
    code: tuple[str, ...]  # paths under mmops/ (packages or modules)


def dvc_yaml() -> Path:
    """The pipeline declaration: beside the package (a source checkout), else in the working directory."""
    candidates = (PACKAGE_ROOT.parent / "dvc.yaml", Path.cwd() / "dvc.yaml")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"dvc.yaml not found at {candidates[0]} or {candidates[1]}: the flow reads the stage graph "
        "(each stage's params and code) from it; run from the project folder"
    )


@lru_cache(maxsize=None)
def stage_graph() -> dict[str, StageDeps]:
    """Each stage's params keys and `mmops/` code deps, as `dvc.yaml` declares them."""
    stages = yaml.safe_load(dvc_yaml().read_text())["stages"]
    return {
        name: StageDeps(
            params=tuple(stage.get("params", ())),
            code=tuple(d.removeprefix(CODE_PREFIX) for d in stage.get("deps", ()) if d.startswith(CODE_PREFIX)),
        )
        for name, stage in stages.items()
    }


@lru_cache(maxsize=None)
def code_digest(parts: tuple[str, ...]) -> str:
    """Hash of the Python source under the given `mmops/` paths (the code version of a stage)."""
    h = hashlib.sha256(b"mmops-stage-code-v1\n")
    for part in sorted(parts):
        root = PACKAGE_ROOT / part
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            h.update(f"{file.relative_to(PACKAGE_ROOT).as_posix()}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


def params_subset(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of dotted params keys (`model.text`), as in `dvc.yaml`'s `params:` lists."""
    dump = params.dump()
    out = {}
    for key in keys:
        node: Any = dump
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


_FILE_DIGESTS: dict[tuple, str] = {}


def remembered_sha256(path: Path) -> str:
    """`file_sha256`, computed once per process while the file keeps its size, mtime and inode (the
    state DVC keeps too): the flow hashes a stage's outputs when it records them, and again as the
    inputs of the stages after it."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = file_sha256(path)
    return _FILE_DIGESTS[key]


def tree_digest(path: str | Path) -> str:
    """`tree_sha256` with each file hashed once per process while it is unchanged (`remembered_sha256`)."""
    return tree_sha256(path, file_hash=remembered_sha256)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class StageCache:
    """The cache key and freshness stamp of one stage for one set of inputs and outputs."""

    def __init__(
        self, stage: str, params: Params, paths: Catalog, inputs: dict[str, str], outputs: list[Path],
        extra: dict | None = None,
    ):
        deps = stage_graph()[stage]
        self.stage = stage
        self.outputs = [Path(o).resolve() for o in outputs]
        self.key = _digest({
            "stage": stage,
            "inputs": inputs,
            "params": params_subset(params, deps.params),
            "code": code_digest(deps.code),
            "outputs": [str(o) for o in self.outputs],
            "extra": extra or {},
        })
        where = _digest([str(o) for o in self.outputs])[:12]
        self.stamp = paths.stage_stamps.resolve() / f"{stage}-{where}.json"

    def staleness(self) -> str | None:
        """Why the stage must run again, or None when its last result can be reused."""
        try:
            stamp = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return "no earlier run writes these outputs"
        if stamp.get("key") != self.key:
            return "its inputs, params or code changed"
        recorded = stamp.get("outputs", {})
        for output in self.outputs:
            if recorded.get(str(output)) != tree_digest(output) or not output.exists():
                return f"{output} was changed or removed since it was written"
        return None

    def fresh(self) -> bool:
        """True when the last run of this stage had this key and its outputs are unchanged."""
        return self.staleness() is None

    def record(self) -> None:
        """Write the stamp after the stage has run (atomically: a torn stamp never looks fresh)."""
        self.stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp = {"stage": self.stage, "key": self.key, "outputs": {str(o): tree_digest(o) for o in self.outputs}}
        atomic_write_json(self.stamp, stamp)
