"""The sharded feature store: rows read on demand, in any order, equal to the split in memory."""

import json

import pytest
import torch

from mmops.models.batch import index
from mmops.features.shards import INDEX, Layer, SplitView, shard_rows, write_shard, write_split


def _split(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "labels": torch.randint(0, 3, (n,), generator=g),
        "image": torch.randn(n, 3, 8, 8, generator=g),
        "text": {"input_ids": torch.randint(0, 99, (n, 5), generator=g), "attention_mask": torch.ones(n, 5, dtype=torch.long)},
        "present": {"image": torch.rand(n, generator=g) > 0.2, "text": torch.ones(n, dtype=torch.bool)},
        "sample_ids": [f"row-{i}" for i in range(n)],
    }


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_rows_in_any_order_equal_the_split_in_memory(tmp_path):
    data = _split(23)
    write_split(tmp_path / "train", data, rows_per_shard=5)
    view = SplitView(tmp_path / "train")
    assert len(view) == 23 and len(view.index["shards"]) == 5 and view.sample_ids == data["sample_ids"]
    assert _equal(view.load(), data)
    idx = torch.tensor([22, 0, 7, 6, 5, 11, 11, 3])  # across shards, out of order, a repeat
    expected = {k: v for k, v in data.items() if k != "sample_ids"}
    assert _equal(view.rows(idx), index(expected, idx))
    assert torch.equal(view.column("labels"), data["labels"])


def test_a_layer_replaces_a_modality_and_keeps_the_rest(tmp_path):
    data = _split(12)
    write_split(tmp_path / "val", data, rows_per_shard=5)
    view = SplitView(tmp_path / "val")
    files = []
    for number, entry in enumerate(view.index["shards"]):
        emb = torch.full((entry["rows"], 4), float(number))
        write_shard(tmp_path / "layer" / f"{number}.safetensors", {"text": {"embedding": emb}})
        files.append(tmp_path / "layer" / f"{number}.safetensors")
    layered = view.with_layer(Layer(("text",), tuple(files)))
    batch = layered.rows(torch.tensor([11, 0]))
    assert set(batch["text"]) == {"embedding"}  # token ids are not read at all
    assert batch["text"]["embedding"][:, 0].tolist() == [2.0, 0.0]
    assert torch.equal(batch["image"], data["image"][[11, 0]])
    assert set(batch["present"]) == {"image", "text"}


def test_same_rows_give_the_same_bytes(tmp_path):
    data = _split(10)
    write_split(tmp_path / "a", data, rows_per_shard=4)
    write_split(tmp_path / "b", data, rows_per_shard=4)
    for name in ("00000.safetensors", "00001.safetensors", "00002.safetensors", INDEX):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_missing_or_foreign_index_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmops preprocess"):
        SplitView(tmp_path / "nothing")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / INDEX).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="preprocess again"):
        SplitView(tmp_path / "old")
    with pytest.raises(ValueError, match="row count"):
        write_shard(tmp_path / "bad.safetensors", {"labels": torch.zeros(3), "image": torch.zeros(2, 1)})


def test_shard_rows_follow_the_target_size():
    row = 224 * 224 * 3 * 4  # a 224 px RGB image as float32
    assert shard_rows(row, 64) == 111
    assert shard_rows(row, 0.01) == 1  # never zero rows
