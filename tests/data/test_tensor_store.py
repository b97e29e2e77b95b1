"""The content-addressed tensor store: hit, miss, and a corrupt entry recomputed and rewritten."""

from __future__ import annotations

from typing import Callable

import torch

from mmops.data.tensor_store import cached_tensor

KEY = "ab" + "0" * 62


def _counting(value: object) -> tuple[list[int], Callable[[], object]]:
    calls: list[int] = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return value

    return calls, compute


def test_second_call_hits(tmp_path):
    calls, compute = _counting(torch.arange(4.0))
    assert torch.equal(cached_tensor(tmp_path, KEY, compute), torch.arange(4.0))
    assert torch.equal(cached_tensor(tmp_path, KEY, compute), torch.arange(4.0))
    assert len(calls) == 1
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [f"ab/{KEY}.pt"]


def test_corrupt_entry_is_recomputed_and_rewritten(tmp_path):
    calls, compute = _counting({"waveform": torch.ones(3), "length": torch.tensor(3)})
    cached_tensor(tmp_path, KEY, compute)
    (path,) = tmp_path.rglob("*.pt")
    path.write_bytes(b"truncated")
    again = cached_tensor(tmp_path, KEY, compute)
    assert len(calls) == 2 and torch.equal(again["waveform"], torch.ones(3))
    assert torch.equal(torch.load(path, weights_only=True)["waveform"], torch.ones(3))  # rewritten
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
