"""Nested-batch helpers: rows, concatenation and scattering keep the nesting."""

from __future__ import annotations

import torch

from mmops.models.batch import concat, index, map_tensors, scatter_rows


def _nested(n: int) -> dict:
    return {"states": torch.arange(n * 6, dtype=torch.float16).reshape(n, 3, 2), "mask": torch.ones(n, 3, dtype=torch.long)}


def test_index_concat_and_scatter_keep_the_nesting():
    data = _nested(5)
    mask = torch.tensor([True, False, True, False, True])
    picked = index(data, mask)
    assert picked["states"].shape == (3, 3, 2) and torch.equal(picked["states"][1], data["states"][2])
    joined = concat([index(data, torch.arange(0, 2)), index(data, torch.arange(2, 5))])
    assert all(torch.equal(joined[k], data[k]) for k in data)
    placed = scatter_rows(picked, mask.nonzero().flatten(), 5)
    assert placed["states"].dtype == torch.float16
    assert torch.equal(placed["states"][mask], picked["states"]) and not placed["states"][~mask].any()
    assert not placed["mask"][1].any()
    doubled = map_tensors({"a": data, "n": 3}, lambda t: t * 2)
    assert doubled["n"] == 3 and torch.equal(doubled["a"]["mask"], 2 * data["mask"])
