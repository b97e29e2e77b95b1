import json

import pytest

from mmops import stages
from mmops.catalog import Catalog
from mmops.data.manifest import ALL_SPLITS, read_manifest
from mmops.features.preprocess import NotValidatedError
from mmops.features.shards import SplitView


def test_preprocess_writes_splits(prepared, small_dataset):
    paths = Catalog.from_paths(prepared.paths)
    manifest = read_manifest(small_dataset)
    total = 0
    splits = [s for s in ALL_SPLITS if (manifest["split"] == s).any()]  # the shifted test set when the data has one
    assert {"train", "val", "test"} <= set(splits)
    for split in splits:
        data = SplitView(paths.split(split)).load()
        n = len(data["labels"])
        total += n
        assert n == (manifest["split"] == split).sum()
        assert data["image"].shape[0] == n and data["audio"]["mel"].shape[0] == n == len(data["audio"]["frames"])
        assert len(data["sample_ids"]) == n
        # presence mirrors empty manifest cells
        rows = manifest.set_index("sample_id").loc[data["sample_ids"]]
        assert data["present"]["image"].tolist() == [bool(v) for v in rows["image"]]
        assert data["present"]["audio"].tolist() == [bool(v) for v in rows["audio"]]
    assert total == len(manifest)
    meta = json.loads(paths.features_meta.read_text())
    assert meta["data_hash"] and meta["classes"] == prepared.classes


def test_preprocess_refuses_failed_validation(make_params, small_dataset):
    params = make_params()
    paths = Catalog.from_paths(params.paths, data=small_dataset)
    paths.reports.mkdir(parents=True)
    paths.validation_json.write_text(json.dumps({"passed": False}))
    with pytest.raises(NotValidatedError, match="validation failed"):
        stages.preprocess(params, paths)
    assert not paths.split("train").exists()


def test_preprocess_refuses_missing_validation(make_params, small_dataset):
    params = make_params()
    with pytest.raises(NotValidatedError, match="run `mmops validate` first"):
        stages.preprocess(params, Catalog.from_paths(params.paths, data=small_dataset))
