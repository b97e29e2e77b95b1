"""Training reads its batches from the shards: the same rows with DataLoader workers or without,
and each DDP rank reads only its own part of every global batch."""

import torch
from mmops.features.shards import SplitView, write_split
from mmops.train.recipe import planned_loader


def _view(tmp_path, n=37) -> SplitView:
    g = torch.Generator().manual_seed(3)
    data = {"labels": torch.arange(n), "image": torch.randn(n, 1, 4, 4, generator=g),
            "present": {"image": torch.ones(n, dtype=torch.bool)}}
    write_split(tmp_path / "train", data, rows_per_shard=8)
    return SplitView(tmp_path / "train")


def _batches(view, plan, world, rank, workers, epochs=1):
    """What the trainer's loader yields over `epochs` epochs of the same plan (workers persist)."""
    loader, epoch_plan = planned_loader(view, world, rank, workers, pin_memory=False)
    out = []
    for _ in range(epochs):
        epoch_plan.batches = plan
        out += [(b["labels"].tolist(), b["image"], size) for b, size in loader]
    return out


def test_workers_read_the_same_batches_in_the_same_order(tmp_path):
    view = _view(tmp_path)
    plan = list(torch.randperm(len(view), generator=torch.Generator().manual_seed(1)).split(6))
    inline, threaded = _batches(view, plan, 1, 0, 0, epochs=2), _batches(view, plan, 1, 0, 2, epochs=2)
    assert [b[0] for b in inline] == [p.tolist() for p in plan] * 2  # labels == row numbers here
    assert len(threaded) == len(inline)
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(inline, threaded))


def test_ranks_read_disjoint_rows_that_make_up_each_global_batch(tmp_path):
    view = _view(tmp_path)
    plan = list(torch.randperm(len(view), generator=torch.Generator().manual_seed(2)).split(8))
    rank0, rank1 = _batches(view, plan, 2, 0, 0), _batches(view, plan, 2, 1, 0)
    for global_idx, a, b in zip(plan, rank0, rank1):
        assert not set(a[0]) & set(b[0])
        assert sorted(a[0] + b[0]) == sorted(global_idx.tolist())
        assert a[2] == b[2] == len(global_idx)  # the loss divides by the global batch size
