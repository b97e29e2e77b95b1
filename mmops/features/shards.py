"""The sharded feature store: a featurized split as a folder of safetensors shards plus an index.

    features/<split>/index.json           {"format", "rows", "shards": [{"file", "rows", "sha256", "sample_ids"}]}
    features/<split>/00000.safetensors    flat keys: "labels", "image", "text.input_ids", "present.audio", ...

Why safetensors: a shard is memory-mapped, so any row is read without loading its shard (random
access for a global shuffle; each DDP rank reads only the rows it trains on), and it holds plain
tensors, never pickled objects. A shard is written by one task from its own rows only, so the bytes
do not depend on how many workers wrote the split.

A split can carry layers: per-shard files (e.g. frozen-encoder embeddings) whose keys replace a
modality's feature keys; `SplitView` reads features and layers as one batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmops.atomic import atomic_path, atomic_write_json
from mmops.data.hashing import file_sha256
from mmops.models.batch import concat, index

FORMAT = "mmops-shards/1"
INDEX = "index.json"
SEP = "."


def flat_tensors(batch: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """A nested batch -> {"text.input_ids": tensor, ...}; non-tensor values (sample ids) are left out."""
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out.update(flat_tensors(value, f"{prefix}{key}{SEP}"))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value.contiguous()
    return out


def nested(flat: dict[str, torch.Tensor]) -> dict:
    """The inverse of `flat_tensors`."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(SEP)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def shard_name(number: int) -> str:
    return f"{number:05d}.safetensors"


def write_shard(path: Path, batch: dict) -> dict:
    """Write one shard atomically; return its index entry (without sample ids)."""
    tensors = flat_tensors(batch)
    rows = {len(t) for t in tensors.values()}
    if len(rows) != 1:
        raise ValueError(f"shard {path}: tensors disagree on the row count ({sorted(rows)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    return {"file": path.name, "rows": rows.pop(), "sha256": file_sha256(path)}


def write_index(split_dir: Path, entries: list[dict]) -> Path:
    """Write `index.json` last: its presence says every shard it names is complete."""
    index = {"format": FORMAT, "rows": sum(e["rows"] for e in entries), "shards": entries}
    atomic_write_json(Path(split_dir) / INDEX, index)
    return Path(split_dir) / INDEX


def write_split(split_dir: Path, batch: dict, rows_per_shard: int) -> Path:
    """Write a whole in-memory split (with "sample_ids", or numbered ones) as shards + index."""
    n = len(batch["labels"])
    ids = list(batch.get("sample_ids") or range(n))
    entries = []
    for number, start in enumerate(range(0, n, rows_per_shard)):
        part = index(batch, torch.arange(start, min(start + rows_per_shard, n)))
        part.pop("sample_ids", None)
        entry = write_shard(Path(split_dir) / shard_name(number), part)
        entries.append({**entry, "sample_ids": [str(i) for i in ids[start : start + rows_per_shard]]})
    return write_index(split_dir, entries)


def shard_rows(row_bytes: int, target_mb: float) -> int:
    """Rows per shard so that a shard holds about `target_mb` (at least one row)."""
    return max(1, int(target_mb * 2**20) // max(row_bytes, 1))


def _runs(positions: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted positions -> maximal (start, stop) runs of consecutive ones."""
    start = prev = positions[0]
    for p in positions[1:]:
        if p != prev + 1:
            yield start, prev + 1
            start = p
        prev = p
    yield start, prev + 1


def _read_rows(path: Path, keys: list[str], positions: list[int]) -> dict[str, torch.Tensor]:
    """Rows `positions` (sorted) of `keys` from one shard, through its memory map."""
    with safe_open(str(path), framework="pt") as f:
        out = {}
        for key in keys:
            view = f.get_slice(key)
            out[key] = torch.cat([view[a:b] for a, b in _runs(positions)])
        return out


def _shard_keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


@dataclass(frozen=True)
class Layer:
    """Per-shard files whose keys replace every feature key under the prefixes `replaces` (e.g. "text")."""

    replaces: tuple[str, ...]
    files: tuple[Path, ...]


@dataclass
class SplitView:
    """Rows of a sharded split (plus layers), read on demand: memory grows with what is read."""

    root: Path
    layers: tuple[Layer, ...] = ()
    index: dict = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        path = self.root / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: no featurized split here (run `mmops preprocess`)")
        self.index = json.loads(path.read_text())
        if self.index.get("format") != FORMAT:
            raise ValueError(f"{path}: format {self.index.get('format')!r}, expected {FORMAT!r}; preprocess again")
        sizes = [e["rows"] for e in self.index["shards"]]
        self.offsets = torch.tensor([0, *sizes]).cumsum(0)
        replaced = tuple(r for layer in self.layers for r in layer.replaces)
        first = self.shard_files[0] if self.shard_files else None
        self.feature_keys = [
            k for k in (_shard_keys(first) if first else [])
            if not any(k == r or k.startswith(r + SEP) for r in replaced)
        ]

    @property
    def shard_files(self) -> list[Path]:
        return [self.root / e["file"] for e in self.index["shards"]]

    def __len__(self) -> int:
        return int(self.index["rows"])

    @property
    def sample_ids(self) -> list[str]:
        return [s for e in self.index["shards"] for s in e["sample_ids"]]

    @property
    def digest(self) -> str:
        """sha256 of the index (which holds every shard's sha256): the split's content identity."""
        return file_sha256(self.root / INDEX)

    def with_layer(self, layer: Layer) -> "SplitView":
        return SplitView(self.root, (*self.layers, layer))

    def column(self, key: str) -> torch.Tensor:
        """One flat key over every row (e.g. "labels", "present.image"): small columns only."""
        return torch.cat([_read_rows(p, [key], list(range(e["rows"])))[key]
                          for p, e in zip(self.shard_files, self.index["shards"])])

    def shard(self, number: int) -> dict:
        """Every row of one shard, features and layers, as a nested batch."""
        return self._read(number, list(range(self.index["shards"][number]["rows"])))

    def shards(self) -> Iterator[dict]:
        for number in range(len(self.index["shards"])):
            yield self.shard(number)

    def rows(self, idx: torch.Tensor) -> dict:
        """The rows `idx` (global positions, any order) as a nested batch in that order."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        which = torch.searchsorted(self.offsets, idx, right=True) - 1
        parts, order = [], []
        for number in which.unique().tolist():
            mine = idx[which == number]
            local = (mine - self.offsets[number]).tolist()
            sorted_local = sorted(set(local))
            part = self._read(number, sorted_local)
            at = {p: i for i, p in enumerate(sorted_local)}
            where = torch.tensor([at[p] for p in local])
            parts.append(index(part, where))
            order.append((which == number).nonzero().flatten())
        batch = concat(parts)
        inverse = torch.empty(len(idx), dtype=torch.long)
        inverse[torch.cat(order)] = torch.arange(len(idx))
        return index(batch, inverse)

    def load(self) -> dict:
        """The whole split in memory, with sample ids (small splits and tests)."""
        batch = concat(list(self.shards())) if self.index["shards"] else {}
        batch["sample_ids"] = self.sample_ids
        return batch

    def _read(self, number: int, positions: list[int]) -> dict:
        flat = _read_rows(self.shard_files[number], self.feature_keys, positions)
        for layer in self.layers:
            path = layer.files[number]
            flat.update(_read_rows(path, _shard_keys(path), positions))
        return nested(flat)
