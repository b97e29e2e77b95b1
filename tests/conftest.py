"""Shared fixtures: tool state in a temp dir, a tiny local text model, a small avdigits set."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from pipeline_overrides import overrides_for

# Tool state goes to a per-session temp dir, before any tool is imported.
_STATE = Path(tempfile.mkdtemp(prefix="mmops-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["DVC_SITE_CACHE_DIR"] = str(_STATE / "dvc-site")
os.environ["HF_HOME"] = str(_STATE / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# served models log predictions here, not into the project's own log (.mmops/predictions)
os.environ["MMOPS_SERVE_PREDICTION_LOG"] = json.dumps({"dir": str(_STATE / "predictions")})

REPO = Path(__file__).resolve().parents[1]
CLUE_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] it is an a the even odd number greater smaller less more than "
    "prime not bigger above below under over one two three four five six seven eight nine zero "
    "digit this clue no hint , . 0 1 2 3 4 5 6 7 8 9"
).split()


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A one-layer BERT and its word-level tokenizer, saved locally (no hub access)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(CLUE_WORDS) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(CLUE_WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A 200-sample avdigits subset (deterministic), shared read-only by tests."""
    from mmops.config.demo import DemoConfig
    from mmops.data.avdigits import generate

    out = tmp_path_factory.mktemp("avdigits")
    generate(out, DemoConfig(n_samples=200), [str(d) for d in range(10)])
    return out


@pytest.fixture
def make_params(tmp_path, tiny_text_model):
    from mmops.params_file import load_params

    def build(**extra):
        return load_params(None, overrides_for(tmp_path, tiny_text_model, **extra))

    return build


@pytest.fixture
def fast_overrides(tiny_text_model):
    """Build `--set` overrides for a fast run rooted at a given folder."""

    def build(tmp: Path, **extra) -> list[str]:
        return overrides_for(tmp, tiny_text_model, **extra)

    return build


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, tiny_text_model, small_dataset):
    """Params rooted in a session temp dir, with the small dataset validated and featurized."""
    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.params_file import load_params

    root = tmp_path_factory.mktemp("prepared")
    params = load_params(None, [*overrides_for(root, tiny_text_model), f"paths.data={small_dataset}"])
    paths = Catalog.from_paths(params.paths)  # every catalogue built from these params reads the small dataset
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.resolved(params, paths)  # `auto` replaced by what preprocess derived from the data


@pytest.fixture
def mislabeled_dataset(tmp_path, small_dataset):
    """A copy of the small dataset whose row 5 has a label outside the classes; (path, sample id)."""
    import shutil

    import pandas as pd

    broken = tmp_path / "mislabeled"
    shutil.copytree(small_dataset, broken)
    df = pd.read_csv(broken / "manifest.csv", dtype=str, keep_default_na=False)
    df.loc[5, "label"] = "eleven"
    df.to_csv(broken / "manifest.csv", index=False)
    return broken, df.loc[5, "sample_id"]


@pytest.fixture(scope="session")
def tiny_audio_model(tmp_path_factory) -> Path:
    """A one-layer wav2vec2 (hidden 32, two conv layers: 1 frame per 20 samples) in safetensors."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    path = tmp_path_factory.mktemp("tiny-wav2vec2")
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=8,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(path)
    assert (path / "model.safetensors").exists()
    return path


@pytest.fixture(scope="session")
def served_model_dir(prepared, tmp_path_factory) -> Path:
    """A model folder trained for 3 epochs on the small dataset (shared, read-only)."""
    from mmops import stages
    from mmops.catalog import Catalog

    out = tmp_path_factory.mktemp("serve-model")
    params = prepared.model_copy(update={"paths": prepared.paths.model_copy(update={"model": out})})
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 3})})
    return stages.train(params, Catalog.from_paths(params.paths))


_SHARED_PREFECT = "shared_prefect"
_prefect_users = {"last": None, "passed": False}  # the last test to run that uses the shared server
_shared_servers: list = []


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(items):
    users = [item for item in items if _SHARED_PREFECT in getattr(item, "fixturenames", ())]
    _prefect_users.update(last=users[-1] if users else None, passed=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the shared Prefect server once its last user's module is done (its module fixtures torn
    down), not at the end of the session: an idle server still costs CPU."""
    try:
        return (yield)
    finally:
        if item is _prefect_users["last"]:
            _prefect_users["passed"] = True
        if _prefect_users["passed"] and _shared_servers and (nextitem is None or nextitem.path != item.path):
            _shared_servers[0].stop()


@pytest.fixture(scope="session")
def shared_prefect(tmp_path_factory):
    """ONE real `prefect server start` (own PREFECT_HOME) for the whole session, launched the first
    time a test asks for it and stopped after the last test that uses it; `.api` is its URL once it
    answers (each start costs 15-25 s of CPU, 15-80 s on 2 busy cores). Its idle loop services
    (scheduler, late runs, ...) are off: no test here relies on them (servers.IDLE_SERVICES_OFF).

    Tests keep apart on it by what is theirs: flow and deployment names, data folders (the watch
    flow's Variable is named by folder), flow-run ids. Tests of a server's own start-up and auth
    (`mmops schedule` in orchestrate/test_scheduling.py) start their own instead.
    """
    from servers import IDLE_SERVICES_OFF, StartedPrefectServer

    server = StartedPrefectServer(tmp_path_factory.mktemp("prefect-shared"), env=IDLE_SERVICES_OFF)
    _shared_servers[:] = [server]
    try:
        yield server
    finally:
        server.stop()
        _shared_servers.clear()


@pytest.fixture
def prefect_api(shared_prefect):
    """This test's Prefect client on the shared server (buffered logs and events delivered after); its API URL."""
    from servers import prefect_api_at

    with prefect_api_at(shared_prefect.api) as api:
        yield api


@pytest.fixture(scope="module")
def evaluated_copy(prepared, tmp_path_factory, served_model_dir, small_dataset):
    """`evaluated_copy(name)` -> (params, catalogue): the shared trained model copied into a folder of
    its own, evaluated, with the validation report beside it; registered as `name` (no int8 variant,
    gated by a floor alone, so registration needs no re-scoring)."""
    import shutil

    from mmops import stages
    from mmops.catalog import Catalog

    def make(name: str):
        root = tmp_path_factory.mktemp(name)
        paths = prepared.paths.model_copy(update={"model": root / "model", "metrics": root / "metrics",
                                                  "reports": root / "reports"})
        shutil.copytree(served_model_dir, paths.model)
        params = prepared.model_copy(update={
            "paths": paths,
            "registry": prepared.registry.model_copy(update={"model_name": name}),
            "quantize": prepared.quantize.model_copy(update={"enabled": False}),
            "gate": prepared.gate.model_copy(update={"floors": {"accuracy": 0.01}, "regression": {}}),
        })
        catalog = Catalog.from_paths(paths, data=small_dataset)
        catalog.reports.mkdir(parents=True)
        shutil.copy(Catalog.from_paths(prepared.paths).validation_json, catalog.validation_json)
        stages.evaluate(params, catalog)
        return params, catalog

    return make
