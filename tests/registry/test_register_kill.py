"""SIGKILL inside `register` at each step: no version becomes promotable without --force, the
champion always loads, and running register again finishes the job with the same version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import mlflow
import pytest
from mlflow import MlflowClient

from mmops.catalog import Catalog
from mmops.inference.predict import load_model_uri
from mmops.registry.promotion import CHAMPION, PromotionError, current_version, lock_model_name, promote
from mmops.registry.register import register

pytestmark = pytest.mark.slow  # one training and seven registrations (about 3 minutes on 2 cores)
NAME = "mmops-kill-test"

# Each step: (module, function, when) — the process kills itself right before or after that call.
STEPS = {
    "version created": ("mmops.registry.register", "register_challenger", "after"),
    "gate decided": ("mmops.registry.register", "register_int8_variant", "after"),
    "tagged pending": ("mmops.registry.register", "tag_version", "after"),
    "alias moved, history not written": ("mmops.registry.promotion", "_record", "before"),
    "moved, final tag not written": ("mmops.registry.register", "promote", "after"),
}

DRIVER = textwrap.dedent("""
    import importlib, json, os, signal, sys
    from mmops.catalog import Catalog
    from mmops.config import Params
    from mmops.registry.register import register

    module, function, when = sys.argv[2:5]
    target = importlib.import_module(module)
    original = getattr(target, function)

    def killed(*args, **kwargs):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(target, function, killed)
    spec = json.loads(open(sys.argv[1]).read())
    params = Params.model_validate(spec["params"])
    register(params, Catalog.from_paths(params.paths, data=spec["data"]))
""")


@pytest.fixture(scope="module")
def trained(prepared, store, tmp_path_factory, served_model_dir, small_dataset):
    """Params whose model is the shared trained folder; a first champion registered from it."""
    root = tmp_path_factory.mktemp("kill")
    paths = prepared.paths.model_copy(update={"model": root / "model", "metrics": root / "metrics",
                                              "reports": root / "reports"})
    shutil.copytree(served_model_dir, paths.model)
    params = prepared.model_copy(update={
        "paths": paths,
        "registry": prepared.registry.model_copy(update={"model_name": NAME}),
        "quantize": prepared.quantize.model_copy(update={"enabled": False}),
        "gate": prepared.gate.model_copy(update={"floors": {"accuracy": 0.01}, "regression": {}}),
    })
    catalog = Catalog.from_paths(paths, data=small_dataset)
    catalog.reports.mkdir(parents=True)
    shutil.copy(Catalog.from_paths(prepared.paths).validation_json, catalog.validation_json)
    from mmops import stages

    stages.evaluate(params, catalog)
    first = register(params, catalog)  # v1, the champion the kills must never break
    assert first["promoted"] and first["version"] == "1"
    # the run under test: the same model with other params, so another registration (v2)
    return params.model_copy(update={"gate": params.gate.model_copy(update={"floors": {"accuracy": 0.02}})})


def _kill_register_at(step: str, params, data, tmp_path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"params": params.dump(), "data": str(data)}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(spec), *STEPS[step]], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, f"{step}: exit {proc.returncode}\n{proc.stderr[-3000:]}"


def test_a_kill_at_any_step_leaves_nothing_promotable_and_a_champion_that_loads(trained, small_dataset, tmp_path):
    client = MlflowClient()
    for step in STEPS:
        _kill_register_at(step, trained, small_dataset, tmp_path)
        versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
        assert versions == ["1", "2"], f"{step}: a retried registration must reuse its version, got {versions}"
        if current_version(client, NAME, CHAMPION) != "2":  # v1 was gated and promoted before: not in question
            with pytest.raises(PromotionError, match="--force"):
                promote(client, NAME, "2", f"after a kill at {step}")
        assert load_model_uri(f"models:/{NAME}@{CHAMPION}", tmp_path / step.replace(" ", "-")).classes, step
    # the lock of the killed promoter did not outlive it, and a clean run finishes the same version
    result = register(trained, Catalog.from_paths(trained.paths, data=small_dataset))
    assert result["version"] == "2" and result["champion_version"] == "2"
    assert client.get_model_version(NAME, "2").tags["gate.decision"] == "promoted"
    assert not client.search_registered_models(f"name='{lock_model_name(NAME)}'")
