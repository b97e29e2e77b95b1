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
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import save_file

from mmops.atomic import atomic_path, atomic_write_json
from mmops.data.hashing import file_sha256
from mmops.models.batch import index

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


# safetensors dtype names (https://github.com/huggingface/safetensors, "Format")
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


@dataclass(frozen=True)
class Header:
    """Where each tensor of a safetensors file lies: data start, and per key dtype, shape, offset."""

    data_start: int
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...], int]]

    @classmethod
    def read(cls, path: Path) -> "Header":
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER:
                raise ValueError(f"{path}: not a feature shard (header of {size} bytes)")
            raw = json.loads(f.read(size))
        raw.pop("__metadata__", None)
        tensors = {k: (DTYPES[v["dtype"]], tuple(v["shape"]), v["data_offsets"][0]) for k, v in raw.items()}
        return cls(8 + size, tensors)


MAX_HEADER = 16 * 2**20


def _read_into(path: Path, header: Header, outs: dict[str, torch.Tensor], local: list[int], dst: list[int]) -> None:
    """Copy rows `local` of the file's tensors into rows `dst` of `outs` (the keys both have), with
    positioned reads straight into the output: one copy, no memory map left behind (a mapped page
    would count against this process for as long as the map lives)."""
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        for key, out in outs.items():
            if key not in header.tensors:
                continue
            dtype, shape, begin = header.tensors[key]
            row_bytes = math.prod(shape[1:]) * out.element_size()
            rows = out.view(-1).view(torch.uint8).view(out.shape[0], row_bytes).numpy()
            start = header.data_start + begin
            i = 0
            while i < len(local):  # runs consecutive in both source and destination: one read each
                j = i + 1
                while j < len(local) and local[j] == local[j - 1] + 1 and dst[j] == dst[j - 1] + 1:
                    j += 1
                want = (j - i) * row_bytes
                got = os.preadv(fd, [memoryview(rows[dst[i] : dst[i] + j - i]).cast("B")], start + local[i] * row_bytes)
                if got != want:
                    raise ValueError(f"{path}: truncated shard ({key!r}: {got} of {want} bytes); preprocess again")
                i = j


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
        self._headers: dict[Path, Header] = {}
        replaced = tuple(r for layer in self.layers for r in layer.replaces)
        # key -> (dtype, row shape), from the first shard and the first file of each layer
        self.schema: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        for first in ([self.shard_files[0]] if self.shard_files else []) + [layer.files[0] for layer in self.layers]:
            for key, (dtype, shape, _) in self._header(first).tensors.items():
                if first in self.shard_files and any(key == r or key.startswith(r + SEP) for r in replaced):
                    continue
                self.schema[key] = (dtype, shape[1:])
        self.feature_keys = [k for k in self._header(self.shard_files[0]).tensors if k in self.schema] if self.shard_files else []

    def _header(self, path: Path) -> Header:
        if path not in self._headers:
            self._headers[path] = Header.read(path)
        return self._headers[path]

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
        return self._rows(torch.arange(len(self)), [key])[key]

    def shard(self, number: int) -> dict:
        """Every row of one shard, features and layers, as a nested batch."""
        start = int(self.offsets[number])
        return self.rows(torch.arange(start, start + self.index["shards"][number]["rows"]))

    def shards(self) -> Iterator[dict]:
        for number in range(len(self.index["shards"])):
            yield self.shard(number)

    def rows(self, idx: torch.Tensor) -> dict:
        """The rows `idx` (global positions, any order, repeats allowed) as a nested batch in that order."""
        return nested(self._rows(idx, list(self.schema)))

    def load(self) -> dict:
        """The whole split in memory, with sample ids (small splits and tests)."""
        batch = self.rows(torch.arange(len(self)))
        batch["sample_ids"] = self.sample_ids
        return batch

    def _rows(self, idx: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"{self.root}: rows {idx.min().item()}..{idx.max().item()} out of 0..{len(self) - 1}")
        outs = {k: torch.empty((len(idx), *self.schema[k][1]), dtype=self.schema[k][0]) for k in keys}
        which = torch.searchsorted(self.offsets, idx, right=True) - 1
        for number in which.unique().tolist():
            dst = (which == number).nonzero().flatten()
            local = (idx[dst] - self.offsets[number]).tolist()
            for path in [self.shard_files[number], *(layer.files[number] for layer in self.layers)]:
                _read_into(path, self._header(path), outs, local, dst.tolist())
        return outs
