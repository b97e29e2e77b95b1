"""Stage cache keys and stamps (mmops/orchestrate/cache.py), retry policy and error classification: no server."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import grimp
import pytest
import yaml

from mmops import stages
from mmops.catalog import CHECKPOINT, Catalog
from mmops.data.hashing import tree_sha256
from mmops.orchestrate import cache as stage_cache
from mmops.orchestrate.cache import StageCache, code_digest, stage_graph

REPO = Path(__file__).resolve().parents[2]
DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_stage_graph_is_read_from_dvc_yaml():
    graph = stage_graph()
    assert set(graph) == set(DVC_STAGES)
    for name, stage in DVC_STAGES.items():
        assert graph[name].params == tuple(stage.get("params", ())), name
        assert {f"mmops/{part}" for part in graph[name].code} == {d for d in stage["deps"] if d.startswith("mmops/")}
        assert all((REPO / "mmops" / part).exists() for part in graph[name].code), name


def test_stage_graph_needs_dvc_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(stage_cache, "PACKAGE_ROOT", tmp_path / "mmops")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc.yaml not found"):
        stage_cache.dvc_yaml()


def stage_modules() -> dict[str, set[str]]:
    """The mmops modules each stage function in stages.py imports, plus the ones stages.py imports
    at its top (the function bodies import lazily; grimp sees those too, so stages.py itself is
    counted as a file, not followed)."""
    tree = ast.parse(Path(stages.__file__).read_text())

    def imports(node) -> set[str]:
        return {n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module.startswith("mmops.")}

    functions = {fn.name: fn for fn in tree.body if isinstance(fn, ast.FunctionDef)}
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module.startswith("mmops.")}

    def called(fn) -> set[str]:  # the module-level helpers a stage calls, and what they import
        names = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        return set().union(*(imports(functions[n]) for n in names if n in functions and n not in DVC_STAGES))

    return {name: top | imports(fn) | called(fn) for name, fn in functions.items() if name in DVC_STAGES}


def module_file(module: str) -> str:
    path = module.replace(".", "/")
    return f"{path}/__init__.py" if (REPO / path).is_dir() else f"{path}.py"


def test_dvc_yaml_lists_every_module_a_stage_imports():
    """Each stage's `mmops/...` deps cover the transitive mmops imports of its code (so the Prefect
    cache key and `dvc repro` both see any edit that can change the stage's result)."""
    graph = grimp.build_graph("mmops")
    for name, modules in stage_modules().items():
        needed = set(modules)
        for module in modules:
            needed |= graph.find_upstream_modules(module)
        # importing a module runs its parent packages' __init__ too; the root's is only a docstring
        needed |= {module.rsplit(".", depth)[0] for module in needed for depth in range(1, module.count("."))}
        needed |= {"mmops.stages"}
        needed.discard("mmops")
        deps = [d for d in DVC_STAGES[name]["deps"] if d.startswith("mmops/")]
        missing = {
            m for m in needed if not any(module_file(m) == d or module_file(m).startswith(d + "/") for d in deps)
        }
        assert not missing, f"dvc.yaml stage {name!r} misses deps for {sorted(missing)}"


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """The stage code digests computed over a copy of the package (which a test may edit)."""
    copy = tmp_path / "project"
    shutil.copytree(stage_cache.PACKAGE_ROOT, copy / "mmops", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage_cache, "PACKAGE_ROOT", copy / "mmops")
    code_digest.cache_clear()
    yield copy / "mmops"
    code_digest.cache_clear()


def test_editing_the_prediction_code_changes_the_evaluate_key(make_params, project_copy, tmp_path):
    params = make_params()
    paths = Catalog.from_paths(params.paths)

    def keys() -> dict[str, str]:
        code_digest.cache_clear()
        return {s: StageCache(s, params, paths, {}, [tmp_path / "out"]).key for s in stage_graph()}

    before = keys()
    with open(project_copy / "inference" / "predict.py", "a") as fh:
        fh.write("# an edit\n")
    after = keys()
    changed = {s for s in before if before[s] != after[s]}
    assert changed == {"train", "evaluate", "register"}


def test_stamp_is_fresh_only_for_the_same_key_and_untouched_outputs(make_params, tmp_path):
    params = make_params()
    paths = Catalog.from_paths(params.paths)
    out = tmp_path / "features"
    out.mkdir()
    (out / "train.pt").write_bytes(b"tensor bytes")
    cache = StageCache("preprocess", params, paths, {"data": "abc"}, [out])
    assert not cache.fresh()  # never recorded
    cache.record()
    assert cache.fresh()
    assert StageCache("preprocess", params, paths, {"data": "abc"}, [out]).fresh()

    assert not StageCache("preprocess", params, paths, {"data": "abd"}, [out]).fresh()  # other data
    other_params = make_params(**{"features.image.size": 24})
    assert not StageCache("preprocess", other_params, paths, {"data": "abc"}, [out]).fresh()
    unrelated = make_params(**{"train.lr": 0.5})  # train's params are not preprocess's
    assert StageCache("preprocess", unrelated, paths, {"data": "abc"}, [out]).key == cache.key

    (out / "train.pt").write_bytes(b"edited")
    assert not cache.fresh()
    cache.record()
    (out / "train.pt").unlink()
    assert not cache.fresh()


def test_deleted_output_folder_is_not_fresh(make_params, tmp_path):
    params = make_params()
    out = tmp_path / "model"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"weights")
    cache = StageCache("train", params, Catalog.from_paths(params.paths), {"features": "f"}, [out])
    cache.record()
    (out / CHECKPOINT).unlink()
    out.rmdir()
    assert tree_sha256(out) == "absent"
    assert not cache.fresh()


def test_output_location_is_part_of_the_key(make_params, tmp_path):
    params = make_params()
    paths = Catalog.from_paths(params.paths)
    a = StageCache("train", params, paths, {"features": "f"}, [tmp_path / "a"])
    b = StageCache("train", params, paths, {"features": "f"}, [tmp_path / "b"])
    assert a.key != b.key and a.stamp != b.stamp
    assert a.stamp.parent == paths.stage_stamps.resolve()


def test_code_digest_differs_per_stage_package():
    assert code_digest(("train",)) != code_digest(("features",))
    assert code_digest(("train", "models")) == code_digest(("models", "train"))


def test_retry_policy_backs_off_exponentially():
    from mmops.config import RetryPolicy

    assert RetryPolicy(retries=3, delay_seconds=5, backoff=2).delays() == [5, 10, 20]
    assert RetryPolicy(retries=0).delays() == []


def test_only_transient_errors_are_retried():
    from prefect.states import Failed

    from mmops.orchestrate.retrain import RegistryUnavailable, _retry_transient
    from mmops.registry.register import RegistrationRefused
    from mmops.stages import DataValidationError

    def retried(error: Exception) -> bool:
        return _retry_transient(None, None, Failed(data=error))

    assert retried(RegistryUnavailable("MLflow down"))
    assert retried(OSError("disk hiccup"))
    assert not retried(DataValidationError("row 5: label 'eleven'"))
    assert not retried(RegistrationRefused("validation failed"))


def test_connection_errors_are_recognised_through_mlflow_wrapping():
    import requests
    from mlflow.exceptions import MlflowException

    from mmops.orchestrate.retrain import _connection_error

    try:
        try:
            raise requests.ConnectionError("HTTPConnectionPool: [Errno 111] Connection refused")
        except requests.ConnectionError:
            raise MlflowException("API request to http://127.0.0.1:9/api failed")  # as MLflow does: no `from`
    except MlflowException as err:
        assert _connection_error(err) == "connection refused"
    assert _connection_error(MlflowException("RESOURCE_DOES_NOT_EXIST: model 'x'")) is None


def test_timezone_is_checked_at_load(make_params):
    from mmops.config import ConfigError

    with pytest.raises(ConfigError, match="orchestration.schedule.timezone"):
        make_params(**{"orchestration.schedule.timezone": "Mars/Olympus"})
    assert make_params(**{"orchestration.schedule.timezone": "Europe/Berlin"}).orchestration.schedule.timezone == "Europe/Berlin"


def test_a_recorded_registration_stands_until_the_registry_moves(make_params, tmp_path, monkeypatch):
    """The register stage is reused only while its version exists and the champion is the one it saw."""
    import json

    import mlflow
    from mlflow import MlflowClient

    from mmops.orchestrate.uptodate import registry_unchanged

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = make_params(**{"registry.model_name": "cache-check"})
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    # a run of its own experiment: whatever experiment an earlier test made active is not in this store
    run = client.create_run(client.create_experiment("cache-check"))
    client.create_registered_model("cache-check")
    version = client.create_model_version("cache-check", source=str(tmp_path), run_id=run.info.run_id).version
    recorded = {"model_name": "cache-check", "version": str(version), "run_id": run.info.run_id, "champion_version": None}
    params.paths.reports.mkdir(parents=True, exist_ok=True)
    paths = Catalog.from_paths(params.paths)
    paths.registry_json.write_text(json.dumps(recorded))
    assert registry_unchanged(paths)  # not promoted, and still no champion

    client.set_registered_model_alias("cache-check", "champion", version)
    assert not registry_unchanged(paths)  # someone promoted it since
    paths.registry_json.write_text(json.dumps(recorded | {"champion_version": str(version)}))
    assert registry_unchanged(paths)

    client.delete_model_version("cache-check", version)
    assert not registry_unchanged(paths)


def test_a_tree_is_hashed_once_while_its_files_are_unchanged(tmp_path, monkeypatch):
    """The flow hashes a stage's outputs when it records them and again as the next stage's inputs:
    each file is read once per process until its size, mtime or inode changes."""
    from mmops.data.hashing import tree_sha256
    from mmops.orchestrate import cache

    out = tmp_path / "features"
    out.mkdir()
    (out / "a.bin").write_bytes(b"a" * 1000)
    (out / "b.bin").write_bytes(b"b" * 1000)
    reads = []
    real = cache.file_sha256
    monkeypatch.setattr(cache, "file_sha256", lambda p: reads.append(p.name) or real(p))
    first = cache.tree_digest(out)
    assert first == tree_sha256(out) == cache.tree_digest(out)
    assert sorted(reads) == ["a.bin", "b.bin"]  # the second call read nothing
    (out / "b.bin").write_bytes(b"c" * 1000)  # same size, new content
    assert cache.tree_digest(out) == tree_sha256(out) != first
    assert sorted(reads) == ["a.bin", "b.bin", "b.bin"]
