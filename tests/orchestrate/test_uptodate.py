"""Which record a run keeps (mmops/orchestrate/uptodate.py): dvc.lock only when the run is exactly the
pipeline its project's `dvc.yaml` declares; how `dvc status` answers read. The alternation of
`mmops run` and `dvc repro` on a real DVC project is tests/test_dvc_pipeline.py's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mmops.catalog import Catalog
from mmops.orchestrate.uptodate import _describe, demo_in_pipeline, dvc_root
from mmops.params_file import load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A DVC project folder (dvc.yaml, params.yaml, .dvc/) as cwd."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _paths(overrides=(), data=None) -> Catalog:
    params = load_params("params.yaml", list(overrides), check_components=False)
    return Catalog.from_paths(params.paths, data=data)


def test_the_declared_pipeline_keeps_dvc_lock(project):
    assert dvc_root("params.yaml", [], None, _paths()) == project.resolve()
    assert dvc_root(str(project / "params.yaml"), None, "data/avdigits", _paths(data="data/avdigits")) == project.resolve()
    assert demo_in_pipeline(project, _paths())


def test_any_other_run_keeps_stamps(project, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(project / "params.yaml", other / "other.yaml")
    assert dvc_root("params.yaml", ["train.lr=0.5"], None, _paths(["train.lr=0.5"])) is None  # --set
    assert dvc_root(str(other / "other.yaml"), [], None, _paths()) is None  # another params file
    assert dvc_root(None, [], None, _paths()) is None  # embedded defaults, no params file
    assert dvc_root("params.yaml", [], str(other), _paths(data=other)) is None  # --data elsewhere
    moved = ["paths.features=" + str(other / "features")]  # the catalogue writes where dvc.yaml does not say
    assert dvc_root("params.yaml", [], None, _paths(moved)) is None
    assert dvc_root("params.yaml", [], None, _paths(), cwd=other) is None  # not a DVC project


def test_a_team_dataset_in_params_is_still_the_pipeline_but_not_the_demo(project, tmp_path_factory):
    """`paths.data` naming the team's folder is what `${paths.data}` in dvc.yaml resolves to: dvc.lock
    stays the record; the demo stage does not write that folder, so the flow leaves it alone."""
    data = tmp_path_factory.mktemp("team-data")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["paths"]["data"] = str(data)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert dvc_root("params.yaml", [], None, _paths()) == project.resolve()
    assert not demo_in_pipeline(project, _paths())


def test_dvc_status_reads_as_one_line():
    changes = [{"changed deps": {"params.yaml": {"train.epochs": "modified"}, "artifacts/features": "modified"}},
               {"changed outs": {"artifacts/model": "deleted"}}, "always changed"]
    assert _describe(changes) == ("dvc.lock says changed deps: params.yaml: train.epochs, artifacts/features (modified); "
                                  "changed outs: artifacts/model (deleted); always changed")
