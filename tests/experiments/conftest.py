"""A featurized dataset unlike the demo for the experiments: text + image, four string classes."""

from __future__ import annotations

import pytest

from datagen.unlike_demo import make_dataset
from pipeline_overrides import overrides_for

ANIMALS = ("ant", "bee", "cat", "dog")


@pytest.fixture(scope="session")
def animals(tmp_path_factory, tiny_text_model):
    """(resolved params, catalogue) of a validated, featurized text + image dataset: 4 classes x 14 rows,
    no audio column, hue-coded RGB images of mixed sizes, the pipeline's own stratified split."""
    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.params_file import load_params

    root = tmp_path_factory.mktemp("animals")
    data = make_dataset(root / "data", n_per_class=14, classes=ANIMALS, variant="no_audio", p_uninformative=0.2)
    params = load_params(None, overrides_for(root, tiny_text_model, **{
        "paths.data": data, "train.epochs": 2, "train.min_epochs": 1, "model.width": 16, "model.head.hidden": 16,
        "features.store.workers": 1,  # three small shards: featurized in this process, no pool to spawn
    }))
    paths = Catalog.from_paths(params.paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.resolved(params, paths), paths


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the experiments' tests (its schema is created once)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
