"""`dvc repro` runs the same stages, reproduces the metrics, a second run is a no-op, and an edit of the
prediction code puts the stages that run it out of date."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mmops.catalog import CHECKPOINT, Catalog
from mmops.config import PathsConfig
from mmops.processes import stop_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHS = Catalog.from_paths(PathsConfig())  # where the dvc.yaml stages write, relative to the project


def _make_project(path: Path, tiny_text_model: Path) -> tuple[Path, dict]:
    """A copy of the project's pipeline in `path` with small, fast params."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, path / name)
    shutil.copytree(REPO / "mmops", path / "mmops", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["n_samples"] = 100
    params["model"]["text"]["options"]["pretrained"] = str(tiny_text_model)
    params["model"]["text"]["options"].pop("sha256", None)  # the pin is MiniLM's, not the tiny model's
    params["model"]["width"] = 32
    params["train"].update(epochs=3, batch_size=16)
    params["gate"] = {"floors": {"accuracy": 0.0, "macro_f1": 0.0}}  # a 3-epoch model: no quality bar
    params["quantize"]["enabled"] = False  # the int8 variant is not what this file tests (tests/compress is)
    params["registry"]["model_name"] = "mmops-dvc"
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1",
    }
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=path, env=env, check=True)
    return path, env


@pytest.fixture
def project(tmp_path, tiny_text_model):
    """A copy of the project's pipeline with small, fast params."""
    return _make_project(tmp_path, tiny_text_model)


@pytest.fixture(scope="module", autouse=True)
def team_repro(tmp_path_factory, tiny_text_model):
    """The last test's `dvc repro` on a team's own dataset, in its own project folder, started in the
    background when the module starts: mostly single-threaded stage processes, it overlaps the first
    test's on a second core. Yields (project, dataset, the dataset's files before, the running process)."""
    from datagen.unlike_demo import make_dataset

    project = _make_project(tmp_path_factory.mktemp("team-project"), tiny_text_model)
    data = make_dataset(tmp_path_factory.mktemp("team") / "shapes", n_per_class=12, variant="no_audio")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    params_file = project[0] / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["paths"]["data"] = str(data)
    params_file.write_text(yaml.safe_dump(params))
    out = project[0].parent / "team-repro.log"  # a file, not a pipe nobody reads while the first test runs
    with open(out, "w") as log:
        proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project[0], env=project[1], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = out
    yield project, data, before, proc
    stop_group(proc, timeout=20)  # only if the test that waits for it did not run


def dvc(project, *args):
    path, env = project
    return subprocess.run([str(BIN / "dvc"), *args], cwd=path, env=env, capture_output=True, text=True, timeout=900)


def test_repro_runs_every_stage_then_nothing(project):
    first = dvc(project, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("demo_data", "validate", "preprocess", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((project[0] / PATHS.metrics_json).read_text())
    registry = json.loads((project[0] / PATHS.registry_json).read_text())
    assert registry["version"] == "1" and registry["promoted"] is True
    lock = yaml.safe_load((project[0] / "dvc.lock").read_text())
    data_md5 = next(o["md5"] for o in lock["stages"]["demo_data"]["outs"] if o["path"] == PATHS.data.as_posix())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=project[1]["MLFLOW_TRACKING_URI"])
    assert client.get_model_version("mmops-dvc", "1").tags["lineage.dvc_data_md5"] == data_md5

    shown = dvc(project, "metrics", "show", "--json")
    assert shown.returncode == 0
    assert json.dumps(metrics["accuracy"]) in shown.stdout

    second = dvc(project, "repro")
    assert second.returncode == 0
    assert "Running stage" not in second.stdout

    # retrain from the same features: the seeded run gives byte-identical weights and metrics
    checkpoint = project[0] / PATHS.model / CHECKPOINT
    weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    forced = dvc(project, "repro", "--force", "--single-item", "train")
    assert forced.returncode == 0, forced.stderr[-3000:]
    again = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    rest = dvc(project, "repro")
    assert rest.returncode == 0 and "Running stage 'evaluate'" in rest.stdout
    again = json.loads((project[0] / PATHS.metrics_json).read_text())
    again.pop("latency"), metrics.pop("latency")  # timings are the machine's, not the model's
    assert again == metrics

    # editing the prediction code: every stage that runs it is out of date, the others are not
    with open(project[0] / "mmops" / "inference" / "predict.py", "a") as fh:
        fh.write("# an edit\n")
    status = dvc(project, "status", "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    assert set(json.loads(status.stdout)) == {"train", "evaluate", "register"}


def test_repro_on_the_teams_own_dataset_named_in_params(team_repro):
    """`paths.data` names a dataset unlike the demo (string labels, no audio column): `dvc repro` runs
    every stage on it, `auto` resolves from it, and the demo generator never writes into it."""
    project, data, before, proc = team_repro
    proc.wait(timeout=900)
    assert proc.returncode == 0, proc.log.read_text()[-6000:]
    resolved = yaml.safe_load((project[0] / PATHS.resolved).read_text())
    assert resolved["classes"] == ["negative", "neutral", "positive"] and resolved["modalities"] == ["text", "image"]
    lock = yaml.safe_load((project[0] / "dvc.lock").read_text())
    assert any(d["path"] == str(data) for d in lock["stages"]["validate"]["deps"])  # versioned by content
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
