"""SIGKILL inside `register` at each step: no version becomes promotable without --force, the
champion always loads, and running register again finishes the job with the same version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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

# One warm process imports mmops, MLflow and torch once, then forks a child per step: each child is a
# fresh process that patches one call to SIGKILL itself and runs `register` (no imports paid per kill).
DRIVER = textwrap.dedent("""
    import importlib, json, os, signal, sys, traceback
    from mmops.catalog import Catalog
    from mmops.config import Params
    import mmops.registry.register, mmops.registry.promotion, mmops.inference.pyfunc, mmops.inference.verify
    import mlflow.pyfunc, mlflow.store.tracking.sqlalchemy_store, mlflow.store.model_registry.sqlalchemy_store

    print("ready", flush=True)
    for line in sys.stdin:
        spec_file, module, function, when = json.loads(line)
        pid = os.fork()
        if pid == 0:
            with open(spec_file + ".log", "w") as log:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
            try:
                target = importlib.import_module(module)
                original = getattr(target, function)

                def killed(*args, **kwargs):
                    if when == "before":
                        os.kill(os.getpid(), signal.SIGKILL)
                    out = original(*args, **kwargs)
                    os.kill(os.getpid(), signal.SIGKILL)
                    return out

                setattr(target, function, killed)
                spec = json.loads(open(spec_file).read())
                params = Params.model_validate(spec["params"])
                register = importlib.import_module("mmops.registry.register").register
                register(params, Catalog.from_paths(params.paths, data=spec["data"]))
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(1)  # not killed: the step was never reached
        _, status = os.waitpid(pid, 0)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
""")


@pytest.fixture(scope="module")
def driver(store):
    """The warm forking driver, started first so that its imports overlap the `trained` fixture."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    yield proc
    proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def trained(driver, evaluated_copy):
    """Params whose model is the shared trained folder; a first champion registered from it."""
    params, catalog = evaluated_copy(NAME)
    first = register(params, catalog)  # v1, the champion the kills must never break
    assert first["promoted"] and first["version"] == "1"
    # the run under test: the same weights with another file and other params, so another registration (v2)
    # (the same content would reuse v1: a model is registered once)
    (catalog.model / "NOTES.txt").write_text("another registration of the same weights\n")
    return params.model_copy(update={"gate": params.gate.model_copy(update={"floors": {"accuracy": 0.02}})})


def _kill_register_at(driver, step: str, params, data, tmp_path) -> None:
    spec = tmp_path / f"spec-{step.replace(' ', '-')}.json"
    spec.write_text(json.dumps({"params": params.dump(), "data": str(data)}))
    if not getattr(driver, "ready", False):
        assert driver.stdout.readline().strip() == "ready", f"the kill driver did not start (exit {driver.poll()})"
        driver.ready = True
    driver.stdin.write(json.dumps([str(spec), *STEPS[step]]) + "\n")
    driver.stdin.flush()
    returncode = int(driver.stdout.readline() or "0")
    log = spec.with_name(spec.name + ".log")
    assert returncode == -9, f"{step}: exit {returncode}\n{log.read_text()[-3000:] if log.exists() else ''}"


def test_a_kill_at_any_step_leaves_nothing_promotable_and_a_champion_that_loads(trained, driver, small_dataset,
                                                                                 tmp_path):
    client = MlflowClient()
    for step in STEPS:
        _kill_register_at(driver, step, trained, small_dataset, tmp_path)
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
