"""Stage cache keys and stamps (flows/cache.py), retry policy and error classification: no server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.cache import STAGES, StageCache, code_digest, tree_digest

REPO = Path(__file__).resolve().parents[2]


def test_stage_dependencies_mirror_dvc_yaml():
    """Every params key and mmops/ dependency dvc.yaml lists for a stage is part of its cache key."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, deps in STAGES.items():
        stage = dvc[name]
        assert set(stage.get("params", [])) <= set(deps.params), name
        code = {d.removeprefix("mmops/") for d in stage.get("deps", []) if d.startswith("mmops/")}
        assert code <= set(deps.code), name


def test_stamp_is_fresh_only_for_the_same_key_and_untouched_outputs(make_params, tmp_path):
    params = make_params()
    out = tmp_path / "features"
    out.mkdir()
    (out / "train.pt").write_bytes(b"tensor bytes")
    cache = StageCache("preprocess", params, {"data": "abc"}, [out])
    assert not cache.fresh()  # never recorded
    cache.record()
    assert cache.fresh()
    assert StageCache("preprocess", params, {"data": "abc"}, [out]).fresh()

    assert not StageCache("preprocess", params, {"data": "abd"}, [out]).fresh()  # other data
    other_params = make_params(**{"features.image.size": 24})
    assert not StageCache("preprocess", other_params, {"data": "abc"}, [out]).fresh()
    unrelated = make_params(**{"train.lr": 0.5})  # train's params are not preprocess's
    assert StageCache("preprocess", unrelated, {"data": "abc"}, [out]).key == cache.key

    (out / "train.pt").write_bytes(b"edited")
    assert not cache.fresh()
    cache.record()
    (out / "train.pt").unlink()
    assert not cache.fresh()


def test_deleted_output_folder_is_not_fresh(make_params, tmp_path):
    params = make_params()
    out = tmp_path / "model"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"weights")
    cache = StageCache("train", params, {"features": "f"}, [out])
    cache.record()
    (out / "checkpoint.pt").unlink()
    out.rmdir()
    assert tree_digest(out) == "absent"
    assert not cache.fresh()


def test_output_location_is_part_of_the_key(make_params, tmp_path):
    params = make_params()
    a = StageCache("train", params, {"features": "f"}, [tmp_path / "a"])
    b = StageCache("train", params, {"features": "f"}, [tmp_path / "b"])
    assert a.key != b.key and a.stamp != b.stamp


def test_tree_digest_is_content_based(tmp_path):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text("same")
    assert tree_digest(tmp_path / "x") == tree_digest(tmp_path / "y")
    (tmp_path / "y" / "f.txt").write_text("different")
    assert tree_digest(tmp_path / "x") != tree_digest(tmp_path / "y")


def test_code_digest_differs_per_stage_package():
    assert code_digest(("train",)) != code_digest(("features",))
    assert code_digest(("train", "models")) == code_digest(("models", "train"))


def test_retry_policy_backs_off_exponentially():
    from mmops.config import RetryPolicy

    assert RetryPolicy(retries=3, delay_seconds=5, backoff=2).delays() == [5, 10, 20]
    assert RetryPolicy(retries=0).delays() == []


def test_only_transient_errors_are_retried():
    from prefect.states import Failed

    from flows.retrain import RegistryUnavailable, _retry_transient
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

    from flows.retrain import _connection_error

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

    from flows.retrain import _registry_unchanged

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
    (params.paths.reports / "registry.json").write_text(json.dumps(recorded))
    assert _registry_unchanged(params)  # not promoted, and still no champion

    client.set_registered_model_alias("cache-check", "champion", version)
    assert not _registry_unchanged(params)  # someone promoted it since
    (params.paths.reports / "registry.json").write_text(json.dumps(recorded | {"champion_version": str(version)}))
    assert _registry_unchanged(params)

    client.delete_model_version("cache-check", version)
    assert not _registry_unchanged(params)
