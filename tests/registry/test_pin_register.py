"""The register stage under a pin, on a real SQLite store with a trained model: after a rollback an
unchanged registration reuses its version (no new version, no new run, no alias move) and reports
the pin; after `release` the same registration promotes again."""

from __future__ import annotations


import mlflow
import pytest
from mlflow import MlflowClient

from mmops.cli import print_summary
from mmops.orchestrate.uptodate import registry_unchanged
from mmops.registry.promotion import (
    CHAMPION,
    current_version,
    promote,
    read_history,
    read_pin,
    release,
    rollback,
)
from mmops.registry.register import register

pytestmark = pytest.mark.slow  # one evaluation and four registrations of the shared trained model
NAME = "mmops-pin-test"


@pytest.fixture(scope="module")
def setup(store, evaluated_copy):
    """(params, catalogue): the shared trained model, gated by a floor alone (fast: no re-scoring),
    registered into this module's own store."""
    return evaluated_copy(NAME)


def _versions(client) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")}


def _runs() -> int:
    return len(mlflow.search_runs(search_all_experiments=True))


def test_a_rollback_holds_until_release(setup, capsys, monkeypatch):
    params, catalog = setup
    client = MlflowClient()
    monkeypatch.setenv("MMOPS_ACTOR", "erin@ops")
    assert register(params, catalog)["promoted"]  # v1
    (catalog.model / "NOTES.txt").write_text("same weights, other content: another version\n")
    second = register(params, catalog)
    assert second["version"] == "2" and second["promoted"] and not second["reused"]
    v2_run = client.get_model_version(NAME, "2").run_id

    rollback(client, NAME, "v2 misroutes digits")
    assert current_version(client, NAME) == "1" and read_pin(client, NAME).version == "1"
    assert registry_unchanged(catalog)  # the flow skips the register stage: the pin holds anyway

    runs, moves = _runs(), len(read_history(client, NAME))
    again = register(params, catalog)  # what `mmops run --force` / `mmops register` would do
    assert again["version"] == "2" and again["reused"] and again["held"] and not again["promoted"]
    assert again["run_id"] == v2_run and _runs() == runs  # the version's own run, no new one
    assert _versions(client) == {"1", "2"} and current_version(client, NAME) == "1"
    assert len(read_history(client, NAME)) == moves  # no alias moved
    assert again["pin"]["actor"] == "erin@ops" and again["pin"]["reason"] == "v2 misroutes digits"
    assert client.get_model_version(NAME, "2").tags["gate.decision"] == "held"
    print_summary(again, None)
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "would promote, but pinned" in out and "pinned to v1 by erin@ops" in out and "reused v2" in out

    release(client, NAME, "fixed upstream")
    assert not registry_unchanged(catalog)  # no pin, and the champion moved: the stage runs again
    resumed = register(params, catalog)
    assert resumed["version"] == "2" and resumed["promoted"] and resumed["pin"] is None
    assert current_version(client, NAME) == "2" and _versions(client) == {"1", "2"}
    last = [e for e in read_history(client, NAME) if e.alias == CHAMPION][-1]
    assert (last.action, last.from_version, last.to_version, last.pinned) == ("auto-promote", "1", "2", False)
    assert client.get_model_version(NAME, "2").tags["gate.decision"] == "promoted"
    # a held version is promotable by hand without --force
    rollback(client, NAME, "again")
    client.set_model_version_tag(NAME, "2", "gate.decision", "held")
    assert promote(client, NAME, "2", "held one checked by hand").moved
