"""Compare-and-set promotion against a real `mlflow server` on 127.0.0.1: two promotions at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mmops.registry.gate import GateDecision, RuleResult
from mmops.registry.promotion import CHAMPION, compare_and_set, current_version, promote, read_history
from servers import BIN, free_port, mlflow_tracking, running

pytestmark = pytest.mark.slow  # starts an MLflow server and two CLI processes
MMOPS = str(Path(sys.executable).parent / "mmops")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on SQLite with proxied artifacts (fast-start flags); MLFLOW_TRACKING_URI points at it."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", (root / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]
    uri = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with running(cmd, f"{uri}/health", root / "server.log", env, timeout=180):
        with mlflow_tracking(uri):
            yield uri


@pytest.fixture
def served_model(server, tmp_path, monkeypatch, model_factory):
    client = MlflowClient()
    name = model_factory(client, "s3://mmops-test/never-read")  # versions without files: only aliases move
    promote(client, name, "1", "first release", pin=False)  # runs auto-promote after it
    return client, name


def assert_consistent(client, name: str) -> list:
    """The champion events chain (each starts where the last ended) and end at the live champion."""
    events = [e for e in read_history(client, name) if e.alias == CHAMPION]
    for before, after in zip(events, events[1:]):
        assert after.from_version == before.to_version, events
    assert [e.seq for e in read_history(client, name)] == list(range(1, len(read_history(client, name)) + 1))
    assert events[-1].to_version == current_version(client, name)
    return events


def test_two_cli_promotions_with_the_same_expectation_one_wins(served_model, server, tmp_path):
    client, name = served_model
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}  # the lock lives in the registry: no shared folder
    base = ["--reason", "race", "--expect-champion", "1", "--set", f"registry.model_name={name}"]
    procs = {
        version: subprocess.Popen([MMOPS, "promote", version, *base, *extra], cwd=tmp_path, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, "MMOPS_ACTOR": f"run-{version}"})
        for version, extra in (("2", []), ("3", ["--force"]))
    }
    results = {v: (p.wait(timeout=300), p.stderr.read()) for v, p in procs.items()}
    winners = [v for v, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = set(results) - set(winners)
    assert results[loser][0] == 1 and f"champion is v{winners[0]}, not v1 as --expect-champion said" in " ".join(results[loser][1].split())

    events = assert_consistent(client, name)
    assert [(e.from_version, e.to_version, e.actor) for e in events] == [
        (None, "1", events[0].actor), ("1", winners[0], f"run-{winners[0]}")
    ]


def _pass(champion):
    return GateDecision(promote=True, champion_version=champion,
                        rules=[RuleResult(rule="regression.macro_f1", value=0.0, threshold=0.02, passed=True)])


def test_two_runs_finishing_together_regate_instead_of_overwriting(served_model):
    """Both gated against v1; the second to take the lock sees the first's promotion and re-gates."""
    _, name = served_model
    start = threading.Barrier(2)
    results, regated, errors = {}, [], []

    def finish(version: str) -> None:
        client = MlflowClient()  # each run has its own client, as two processes would

        def regate(champion):
            regated.append((version, champion))
            return _pass(champion)

        try:
            start.wait()
            results[version] = compare_and_set(client, name, version, "1", action="auto-promote",
                                               reason=f"run {version}", rules={"x": "pass"}, regate=regate)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=finish, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert all(r.moved for r in results.values())
    first = next(v for v, r in results.items() if r.regated_against is None)
    second = next(v for v, r in results.items() if r.regated_against is not None)
    assert regated == [(second, first)] and results[second].from_version == first

    client = MlflowClient()
    events = assert_consistent(client, name)
    assert [(e.from_version, e.to_version, e.regated_against) for e in events] == [
        (None, "1", None), ("1", first, None), (first, second, first)
    ]
    assert current_version(client, name) == second
