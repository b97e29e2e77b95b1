"""`dvc repro` runs the same stages, reproduces the metrics, a second run is a no-op, and an edit of the
prediction code puts the stages that run it out of date. Through a DVC remote on a real S3 server
(SeaweedFS, tests/s3_server.py): `dvc push`, then `dvc pull` and a no-op `dvc repro` in a fresh git
clone holding the committed dvc.lock; `dvc exp run -S` reruns only the stages the param feeds."""

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
from s3_server import DVC_BUCKET, running_s3

from mmops.catalog import CHECKPOINT, Catalog
from mmops.config import PathsConfig
from mmops.processes import stop_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHS = Catalog.from_paths(PathsConfig())  # where the dvc.yaml stages write, relative to the project


def _make_project(path: Path, tiny_text_model: Path, git: bool = False) -> tuple[Path, dict]:
    """A copy of the project's pipeline in `path` with small, fast params; with `git`, a git
    repository (the project's .gitignore) whose first commit holds it."""
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
        "MLFLOW_TRACKING_URI": f"sqlite:///{path / '.mmops' / 'mlflow.db'}",  # where mmops keeps it (git-ignored)
        "DVC_NO_ANALYTICS": "1",
    }
    (path / ".mmops").mkdir()
    if not git:
        subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=path, env=env, check=True)
        return path, env
    shutil.copy(REPO / ".gitignore", path / ".gitignore")
    for args in (["init", "-q"], ["config", "user.name", "mmops tests"], ["config", "user.email", "tests@mmops.invalid"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=path, env=env, check=True)
    git_commit((path, env), "the pipeline")
    return path, env


def git(project, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=project[0], capture_output=True, text=True, timeout=120, check=False)


def git_commit(project, message: str, *force: str) -> None:
    """Commit everything git does not ignore, and the ignored paths in `force`."""
    for args in (["add", "-A"], *([["add", "-f", "--", *force]] if force else []), ["commit", "-q", "-m", message]):
        done = git(project, *args)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, tiny_text_model):
    """A git repository with a copy of the project's pipeline (small, fast params) after its first
    `dvc repro`; (project, that run). Shared by the tests below: each restores what it relies on."""
    project = _make_project(tmp_path_factory.mktemp("project"), tiny_text_model, git=True)
    return project, dvc(project, "repro")


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


def test_repro_runs_every_stage_then_nothing(reproduced):
    project, first = reproduced
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


def _git_outs(project) -> list[str]:
    """The outputs dvc.yaml leaves to git (`cache: false`: reports, metrics, plots). A clone without
    them would rerun the stages that write them; the project's .gitignore ignores their folders."""
    stages = yaml.safe_load((project[0] / "dvc.yaml").read_text())["stages"]
    entries = [e for stage in stages.values() for key in ("outs", "metrics", "plots") for e in stage.get(key, [])]
    return [path for e in entries if isinstance(e, dict) for path, opts in e.items() if opts.get("cache") is False]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS S3 server with the bucket `dvc`, for this module (tests/infra starts its own)."""
    with running_s3(tmp_path_factory.mktemp("s3"), buckets=(DVC_BUCKET,)) as server:
        yield server


def test_push_then_pull_and_repro_in_a_fresh_clone_then_an_experiment(reproduced, s3, tmp_path):
    """The remote on S3, configured with `dvc remote` as infra/dvc-remote.md says (keys in the
    git-ignored .dvc/config.local, or in the environment); dvc.lock and the `cache: false` outputs
    committed, the cached outputs pushed. A fresh clone pulls them and `dvc repro` runs nothing.
    Then `dvc exp run -S train.lr=... evaluate` reruns train and evaluate, and `dvc exp show` lists it."""
    project, _ = reproduced
    checkout = git(project, "checkout", "--", ".")  # the code as committed (the test above edits it)
    assert checkout.returncode == 0, checkout.stderr
    status = dvc(project, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr

    for args in (["add", "-d", "s3remote", f"s3://{DVC_BUCKET}/mmops"], ["modify", "s3remote", "endpointurl", s3.endpoint],
                 ["modify", "--local", "s3remote", "access_key_id", "--", s3.access_key],
                 ["modify", "--local", "s3remote", "secret_access_key", "--", s3.secret_key]):  # a key may start with -
        done = dvc(project, "remote", *args)
        assert done.returncode == 0, done.stderr
    git_commit(project, "dvc.lock, the outputs git keeps, the S3 remote", *_git_outs(project))
    tracked = set(git(project, "ls-files").stdout.split())
    assert {"dvc.lock", ".dvc/config", PATHS.metrics_json.as_posix(), PATHS.registry_json.as_posix()} <= tracked
    assert ".dvc/config.local" not in tracked and (project[0] / ".dvc" / "config.local").exists()
    assert git(project, "grep", "-q", s3.secret_key, "HEAD").returncode == 1  # no key in any committed file

    pushed = dvc(project, "push")
    assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr[-3000:]
    lock = yaml.safe_load((project[0] / "dvc.lock").read_text())["stages"]
    cached = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])
              if o["path"] not in _git_outs(project)}
    assert set(cached) == {PATHS.data.as_posix(), PATHS.features.as_posix(), PATHS.model.as_posix()}
    stored = set(s3.keys(DVC_BUCKET, "mmops/"))
    for path, md5 in cached.items():  # each output's directory listing is an object in the bucket
        assert f"mmops/files/md5/{md5[:2]}/{md5[2:]}" in stored, (path, sorted(stored)[:10])

    # A fresh clone: the committed remote, keys from the environment, nothing else shared.
    clone = tmp_path / "clone"
    cloned = subprocess.run(["git", "clone", "-q", str(project[0]), str(clone)], capture_output=True, text=True, check=False)
    assert cloned.returncode == 0, cloned.stderr
    (clone / ".mmops").mkdir()
    clone_project = (clone, {**project[1], **s3.env, "MLFLOW_TRACKING_URI": f"sqlite:///{clone / '.mmops' / 'mlflow.db'}"})
    assert not (clone / PATHS.model).exists()
    pulled = dvc(clone_project, "pull")
    assert pulled.returncode == 0, pulled.stdout[-3000:] + pulled.stderr[-3000:]
    checkpoint = PATHS.model / CHECKPOINT
    assert (clone / checkpoint).read_bytes() == (project[0] / checkpoint).read_bytes()
    again = dvc(clone_project, "repro")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Running stage" not in again.stdout
    for stage in lock:
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout

    # An experiment on the origin, up to `evaluate` (an experiment is compared, not registered): a
    # train param reruns train and evaluate, nothing before them.
    lr = yaml.safe_load((project[0] / "params.yaml").read_text())["train"]["lr"] * 2
    ran = dvc(project, "exp", "run", "-S", f"train.lr={lr}", "evaluate")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert [s for s in lock if f"Running stage '{s}'" in ran.stdout] == ["train", "evaluate"]
    shown = dvc(project, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr[-3000:]
    experiments = [e for row in json.loads(shown.stdout) for e in row.get("experiments") or []]
    assert len(experiments) == 1
    data = experiments[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == lr
    assert data["metrics"][PATHS.metrics_json.as_posix()]["data"]["accuracy"] == \
        json.loads((project[0] / PATHS.metrics_json).read_text())["accuracy"]


def mmops(project, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`mmops ARGS` in the project; `env` entries set to None are removed from its environment."""
    path, base = project
    merged = {k: v for k, v in {**base, **(env or {})}.items() if v is not None}
    return subprocess.run([str(BIN / "mmops"), *args], cwd=path, env=merged, capture_output=True, text=True, timeout=900)


def _versions(project) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=project[1]["MLFLOW_TRACKING_URI"])
    return sorted(v.version for v in client.search_model_versions("name='mmops-dvc'"))


def test_mmops_run_and_dvc_repro_share_one_record(reproduced, prefect_api):
    """`mmops run` and `dvc repro` alternate with nothing changed: neither runs a stage, no version is
    registered, and the no-op `mmops run` starts no orchestrator. A params edit reruns the stages it
    feeds through the flow, which commits them to dvc.lock: `dvc repro` then finds nothing to do."""
    project, _ = reproduced
    for args in (["checkout", "--", "."], ["clean", "-fdq", "--", "mmops"]):  # the pipeline as committed
        assert git(project, *args).returncode == 0
    restored = dvc(project, "checkout", "--force")  # the outputs dvc.lock records (an experiment ran above)
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert json.loads(dvc(project, "status", "--json").stdout) == {}
    versions = _versions(project)
    no_server = {"PREFECT_API_URL": None}

    for _ in range(2):
        run = mmops(project, "run", env=no_server)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "up to date" in run.stderr and "(dvc.lock" in run.stderr and "nothing ran" in run.stderr, run.stderr
        assert "mmops-dvc v" in run.stdout  # the last result's summary
        repro = dvc(project, "repro")
        assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout[-3000:]
    assert _versions(project) == versions

    params_file = project[0] / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["train"]["epochs"] = 2
    params_file.write_text(yaml.safe_dump(params))
    run = mmops(project, "run", env={"PREFECT_API_URL": prefect_api})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = run.stdout + run.stderr
    assert "train must run: dvc.lock says changed deps: params.yaml: train" in run.stderr, run.stderr[-3000:]
    for reused in ("demo_data", "validate", "preprocess"):
        assert f"{reused}: up to date (dvc.lock)" in log, log[-5000:]
    for ran in ("train", "evaluate", "register"):
        assert f"{ran}: running (dvc.lock says" in log, log[-5000:]
    lock = yaml.safe_load((project[0] / "dvc.lock").read_text())["stages"]
    assert lock["train"]["params"]["params.yaml"]["train"]["epochs"] == 2
    after = _versions(project)
    assert len(after) == len(versions) + 1
    repro = dvc(project, "repro")
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout[-3000:]
    run = mmops(project, "run", env=no_server)
    assert run.returncode == 0 and "nothing ran" in run.stderr, run.stderr[-3000:]
    assert _versions(project) == after


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
