"""The flow's register stage and pins: a pinned champion keeps a recorded registration standing
(an unchanged rerun after a rollback registers nothing); a held one runs again after release."""

from __future__ import annotations

import json

from mmops.catalog import Catalog
from mmops.orchestrate.uptodate import registry_unchanged, with_registry_state
from mmops.registry.promotion import PIN_TAG, Pin


def test_a_pin_keeps_the_recorded_registration_standing(make_params, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = make_params(**{"registry.model_name": "pin-check"})
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    run = client.create_run(client.create_experiment("pin-check"))
    client.create_registered_model("pin-check")
    v1 = client.create_model_version("pin-check", source=str(tmp_path), run_id=run.info.run_id).version
    v2 = client.create_model_version("pin-check", source=str(tmp_path), run_id=run.info.run_id).version
    params.paths.reports.mkdir(parents=True, exist_ok=True)
    paths = Catalog.from_paths(params.paths)
    recorded = {"model_name": "pin-check", "version": str(v2), "run_id": run.info.run_id, "champion_version": str(v2)}
    paths.registry_json.write_text(json.dumps(recorded))

    client.set_registered_model_alias("pin-check", "champion", v1)  # rolled back by a person...
    assert not registry_unchanged(paths)  # ...without a pin: the stage runs again
    pin = Pin(version=str(v1), actor="erin@ops", time="2026-11-30T14:55:22.123+00:00", reason="r", seq=3)
    client.set_registered_model_tag("pin-check", PIN_TAG, pin.model_dump_json())
    assert registry_unchanged(paths)  # with one: nothing to register, the pin holds anyway
    view = with_registry_state(recorded | {"promoted": True})
    assert view["champion_version"] == str(v1) and view["pin"]["actor"] == "erin@ops"

    paths.registry_json.write_text(json.dumps(recorded | {"champion_version": str(v1), "held": True}))
    assert registry_unchanged(paths)
    client.delete_registered_model_tag("pin-check", PIN_TAG)  # released
    assert not registry_unchanged(paths)
