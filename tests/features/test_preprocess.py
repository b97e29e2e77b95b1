import json

import pytest
import torch

from mmops import stages
from mmops.data.manifest import ALL_SPLITS, read_manifest
from mmops.features.preprocess import NotValidatedError


def test_preprocess_writes_splits(prepared, small_dataset):
    manifest = read_manifest(small_dataset)
    total = 0
    splits = [s for s in ALL_SPLITS if (manifest["split"] == s).any()]  # the shifted test set when the data has one
    assert {"train", "val", "test"} <= set(splits)
    for split in splits:
        data = torch.load(prepared.paths.features / f"{split}.pt", weights_only=True)
        n = len(data["labels"])
        total += n
        assert n == (manifest["split"] == split).sum()
        assert data["image"].shape[0] == n and data["audio"].shape[0] == n
        assert len(data["sample_ids"]) == n
        # presence mirrors empty manifest cells
        rows = manifest.set_index("sample_id").loc[data["sample_ids"]]
        assert data["present"]["image"].tolist() == [bool(v) for v in rows["image"]]
        assert data["present"]["audio"].tolist() == [bool(v) for v in rows["audio"]]
    assert total == len(manifest)
    meta = json.loads((prepared.paths.features / "meta.json").read_text())
    assert meta["data_hash"] and meta["classes"] == prepared.classes


def test_preprocess_refuses_failed_validation(make_params, small_dataset):
    params = make_params()
    params.paths.reports.mkdir(parents=True)
    (params.paths.reports / "validation.json").write_text(json.dumps({"passed": False}))
    with pytest.raises(NotValidatedError, match="validation failed"):
        stages.preprocess(params, small_dataset)
    assert not (params.paths.features / "train.pt").exists()


def test_preprocess_refuses_missing_validation(make_params, small_dataset):
    with pytest.raises(NotValidatedError, match="run `mmops validate` first"):
        stages.preprocess(make_params(), small_dataset)
