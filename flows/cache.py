"""Stage caching on content hashes, the way `dvc repro` decides what to rerun.

A stage's key hashes what it depends on: the content of its input files and folders, the
params sections it reads and the source of the `mmops` packages that implement it (the same
lists as its `deps:` and `params:` in `dvc.yaml`, which a test keeps in step), plus where it
writes. After a stage runs, a stamp in `paths.cache/stages/` records the key and the content
hash of every output. A later run may reuse the result only when the key is unchanged *and*
the outputs on disk still hash as recorded, so a deleted or edited output folder reruns the
stage. The flow hands the key to Prefect as the task's cache key (the UI then shows the
run as `Cached`), and refreshes the cache whenever the stamp is not fresh or `force` is set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import mmops
from mmops.config import Params

ABSENT = "absent"
PACKAGE_ROOT = Path(mmops.__file__).resolve().parent


@dataclass(frozen=True)
class StageDeps:
    """What a stage's result depends on besides its input files: params keys and code."""

    params: tuple[str, ...]
    code: tuple[str, ...]  # paths under mmops/ (packages or modules)


# Mirrors dvc.yaml (`params:` and the `mmops/...` entries of `deps:`); mmops/data is added to
# validate and preprocess because both read the manifest (and preprocess assigns splits) with it.
STAGES: dict[str, StageDeps] = {
    "validate": StageDeps(params=("validate", "classes"), code=("validate", "data")),
    "preprocess": StageDeps(
        params=("seed", "classes", "features", "model.modalities", "model.text"), code=("features", "data")
    ),
    "train": StageDeps(params=("seed", "classes", "model", "train"), code=("models", "train")),
    "evaluate": StageDeps(params=(), code=("evaluate",)),
    "register": StageDeps(params=("registry", "gate", "quantize"), code=("registry",)),
}
COMMON_CODE = ("stages.py",)  # the wiring every stage goes through


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(path: str | Path) -> str:
    """Content hash of a file, or of a folder (relative paths + file hashes); `absent` if missing."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        return ABSENT
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=None)
def code_digest(parts: tuple[str, ...]) -> str:
    """Hash of the Python source under the given `mmops/` paths (the code version of a stage)."""
    h = hashlib.sha256(b"mmops-stage-code-v1\n")
    for part in sorted(parts):
        root = PACKAGE_ROOT / part
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            h.update(f"{file.relative_to(PACKAGE_ROOT).as_posix()}\0{sha256_file(file)}\n".encode())
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


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class StageCache:
    """The cache key and freshness stamp of one stage for one set of inputs and outputs."""

    def __init__(self, stage: str, params: Params, inputs: dict[str, str], outputs: list[Path], extra: dict | None = None):
        deps = STAGES[stage]
        self.stage = stage
        self.outputs = [Path(o).resolve() for o in outputs]
        self.key = _digest({
            "stage": stage,
            "inputs": inputs,
            "params": params_subset(params, deps.params),
            "code": code_digest(deps.code + COMMON_CODE),
            "outputs": [str(o) for o in self.outputs],
            "extra": extra or {},
        })
        where = _digest([str(o) for o in self.outputs])[:12]
        self.stamp = Path(params.paths.cache).resolve() / "stages" / f"{stage}-{where}.json"

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
        tmp = self.stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamp, indent=2))
        tmp.replace(self.stamp)
