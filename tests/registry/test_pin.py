"""Pins: a manual promote or rollback holds the champion against automatic promotion until
`mmops release`; variants are never champion targets; CAS and history output read well at 80 columns."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmops.cli import app, print_summary
from mmops.registry.gate import GateDecision, RuleResult
from mmops.registry.promotion import (
    CHAMPION,
    CHAMPION_INT8,
    PIN_TAG,
    PROMOTABLE,
    AliasMove,
    PromotionError,
    StaleChampionError,
    compare_and_set,
    current_version,
    promote,
    read_history,
    read_pin,
    release,
    rollback,
)


def _passed(champion):
    rule = RuleResult(rule="regression.macro_f1", value=0.0, threshold=0.02, passed=True)
    return GateDecision(promote=True, rules=[rule], champion_version=champion)


def _auto(client, name, version, expected):
    return compare_and_set(client, name, version, expected, action="auto-promote", reason="gate passed",
                           regate=_passed)


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "MMOPS_ACTOR": "erin@ops"})


def test_rollback_pins_and_automatic_promotion_waits_for_release(model, monkeypatch):
    client, name = model
    monkeypatch.setenv("MMOPS_ACTOR", "erin@ops")
    promote(client, name, "1", "first", pin=False)
    assert _auto(client, name, "2", "1").moved and read_pin(client, name) is None
    back = rollback(client, name, "v2 misroutes digits")
    assert back.moved and current_version(client, name) == "1" and back.events[0].pinned
    pin = read_pin(client, name)
    assert (pin.version, pin.actor, pin.reason, pin.seq) == ("1", "erin@ops", "v2 misroutes digits", back.events[0].seq)
    assert json.loads(client.get_registered_model(name).tags[PIN_TAG])["version"] == "1"

    held = _auto(client, name, "2", "1")  # the same gate pass that promoted v2 before
    assert not held.moved and held.held_by == pin and current_version(client, name) == "1"
    held = _auto(client, name, "2", "2")  # also when the expectation is stale: the pin is checked first
    assert not held.moved and held.held_by is not None

    event = release(client, name, "v3 fixes the digits")
    assert (event.action, event.alias, event.from_version, event.to_version) == ("release", CHAMPION, "1", "1")
    assert read_pin(client, name) is None
    with pytest.raises(PromotionError, match="not pinned"):
        release(client, name, "again")
    again = _auto(client, name, "2", "1")
    assert again.moved and current_version(client, name) == "2" and not again.events[0].pinned
    actions = [(e.action, e.alias) for e in read_history(client, name)]
    assert ("release", CHAMPION) in actions and actions[-2:] == [("auto-promote", CHAMPION), ("auto-promote", CHAMPION_INT8)]
    # an undo after a release still walks the champion moves only
    assert rollback(client, name, "undo").to_version == "1"


def test_promote_pins_by_default_and_no_pin_lifts_it(model):
    client, name = model
    promote(client, name, "1", "audited")
    assert read_pin(client, name).version == "1"
    promote(client, name, "2", "better", pin=False)
    assert read_pin(client, name) is None and not read_history(client, name)[-2].pinned
    assert _auto(client, name, "1", "2").moved


def test_held_versions_are_promotable_without_force(model):
    client, name = model
    assert "held" in PROMOTABLE
    client.set_model_version_tag(name, "2", "gate.decision", "held")
    assert promote(client, name, "2", "the held one after all").moved


def test_variants_are_refused_as_champion_targets(model):
    client, name = model
    promote(client, name, "1", "r")
    with pytest.raises(PromotionError, match=r"v4 is the int8 variant of v2.*roll back to v2 instead"):
        rollback(client, name, "r", to="4")
    client.set_model_version_tag(name, "3", "mmops.variant", "onnx")  # any future variant, too
    client.set_model_version_tag(name, "3", "mmops.variant_of", "1")
    with pytest.raises(PromotionError, match=r"v3 is the onnx variant of v1.*promote v1 instead"):
        promote(client, name, "3", "r", force=True)
    assert current_version(client, name) == "1"
    out = cli("rollback", "--to", "4", "--reason", "r", "--set", f"registry.model_name={name}")
    assert out.exit_code == 1 and "int8 variant of v2" in out.output and "roll back to v2" in " ".join(out.output.split())


def test_expect_champion_message_names_both_versions(model):
    client, name = model
    promote(client, name, "1", "r")
    with pytest.raises(StaleChampionError, match=r"the champion is v1, not v2 as --expect-champion said; nothing changed"):
        promote(client, name, "2", "r", expect="2")
    out = cli("promote", "2", "--reason", "r", "--expect-champion", "5", "--set", f"registry.model_name={name}")
    text = " ".join(out.output.split())
    assert out.exit_code == 1 and "champion is v1, not v5 as --expect-champion said; nothing changed" in text
    assert "moved since" not in text and current_version(client, name) == "1"


def test_cli_rollback_prints_unset_and_removed_and_history_fits_80_columns(model):
    _, name = model
    opt = ["--set", f"registry.model_name={name}"]
    assert cli("promote", "1", "--reason", "first release", *opt).exit_code == 0
    out = cli("promote", "2", "--reason", "better audio", *opt)
    assert "champion_int8 (unset) -> v4" in out.output and "v-" not in out.output and "pinned" in out.output
    out = cli("rollback", "--reason", "v2 misroutes digits on noisy audio recorded at the station", *opt)
    assert out.exit_code == 0 and "champion_int8 v4 -> (removed)" in out.output
    assert cli("release", "--reason", "fixed upstream", *opt).exit_code == 0

    table = cli("history", *opt)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in table.output
    for text in ("champion_int8", "promote", "rollback", "release", "(removed)",
                 "(unset) → v4", "v2 → v1", "[pinned]", "erin@ops", "undo", "6 moves"):
        assert text in table.output, text
    assert "v2 misroutes digits on noisy audio" in " ".join(table.output.split())


def test_history_shows_auto_promote_untruncated(model):
    client, name = model
    promote(client, name, "1", "r", pin=False)
    _auto(client, name, "2", "1")
    out = cli("history", "--set", f"registry.model_name={name}")
    assert "auto-promote" in out.output and "champion_int8" in out.output and "…" not in out.output
    assert "not pinned" in out.output


def test_old_events_without_pinned_still_parse():
    old = {"seq": 1, "time": "t", "actor": "a", "action": "promote", "alias": CHAMPION, "from_version": None,
           "to_version": "1", "reason": "r"}
    assert AliasMove.model_validate_json(json.dumps(old)).pinned is False


def test_summary_fits_80_columns_and_shows_the_pin(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    uri = "sqlite:////home/someone/projects/multimodal-classifier/very/long/path/to/the/mlruns/mlflow.db"
    registry = {
        "model_name": "avdigits-fusion-classifier", "version": "7", "promoted": False, "held": True, "reused": True,
        "champion_version": "5", "tracking_uri": uri,
        "pin": {"version": "5", "actor": "erin@ops", "time": "2026-11-30T14:55:22.123+00:00",
                "reason": "v7 misroutes 4s and 9s", "seq": 12},
        "decision": {"rules": [{"rule": "regression.without_audio.macro_f1", "passed": True, "value": 0.0,
                                "threshold": 0.02}]},
        "quantized": {"version": "8", "accuracy_drop": 0.001, "size_ratio": 0.4, "latency_ratio": 0.7},
    }
    print_summary(registry, {"accuracy": 0.9})
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(len(line) <= 80 for line in out.splitlines() if "mlflow ui --backend-store-uri" not in line)
    flat = " ".join(out.replace("│", " ").split())
    assert "would promote, but pinned" in flat and "erin@ops" in flat and "mmops release" in flat
    assert "mmops ui mlflow" in out
    assert f"mlflow ui --backend-store-uri {uri} --port 5000" in out  # one unbroken line (soft wrap)
    assert "ultimodal-classifier" in out  # folded in the table, not cut
