"""Model cards: rendered from a version's tags and metrics, written to MLflow's descriptions, and the
registered model's card following every champion move (on a real SQLite store)."""

from __future__ import annotations

import re

from mmops.registry.card import facts_tags, gate_rules, model_card, version_card, write_cards
from mmops.registry.gate import GateDecision, RuleResult
from mmops.registry.lineage import split_rows
from mmops.registry.promotion import compare_and_set, decision_rules, promote, rollback

CLASSES = ["negative", "neutral", "positive"]  # a text + image model, unlike the demo's ten digits
MODALITIES = ["text", "image"]
DECISION = GateDecision(promote=False, champion_version="4", rules=[
    RuleResult(rule="data_validation", value=True, threshold=True, passed=True),
    RuleResult(rule="floor.accuracy", value=0.912345, threshold=0.8, passed=True),
    RuleResult(rule="ceiling.latency.batch_1.p95_ms", value=41.5, threshold=25.0, passed=False),
    RuleResult(rule="regression.macro_f1", value=-0.0125, threshold=0.02, passed=True),
    RuleResult(rule="cv.macro_f1", value=None, threshold=None, passed=False, detail="no cross-validation report"),
])
LINEAGE = {
    "lineage.git_commit": "0123456789abcdef0123", "lineage.git_dirty": "true", "lineage.data_hash": "d" * 64,
    "lineage.params_hash": "5f9e5c2fb682581b", "lineage.dvc_data_md5": "not tracked by dvc",
    "lineage.test_data_hash": "e" * 64, "lineage.model_hash": "f" * 64, "lineage.run_id": "abc123",
    "lineage.split_rows": "135 rows: train 95, val 20, test 20",
}
METRICS = {"accuracy": 0.912345, "macro_f1": 0.9012, "roc_auc_ovr_macro": 0.97, "ece": 0.031, "n_test": 20.0,
           "latency.batch_1.p50_ms": 12.25, "latency.batch_1.p95_ms": 41.5, "without_image.accuracy": 0.7}


def _version_tags(decision: GateDecision = DECISION) -> dict[str, str]:
    gate = {f"gate.{k}": v for k, v in decision_rules(decision).items()}  # what tag_version writes
    return {**LINEAGE, **gate, **facts_tags(CLASSES, MODALITIES), "gate.champion_compared": "4",
            "gate.decision": "promoted" if decision.promote else "rejected"}


def _rows(card: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in card.splitlines() if line.startswith("| "))}


def test_version_card_has_every_rule_metrics_lineage_and_usage():
    card = version_card("shapes", "5", _version_tags(), METRICS)
    rows = _rows(card)
    for rule in DECISION.rules:  # every rule's value and threshold, as the gate decided them
        value, threshold, verdict = rows[rule.rule]
        assert (value, threshold) == (str(rule.value), str(rule.threshold))
        assert verdict == ("pass" if rule.passed else "**FAIL**")
    assert "**rejected** — 3 of 5 rules passed (failed: ceiling.latency.batch_1.p95_ms, cv.macro_f1)" in card
    assert "compared against champion v4" in card
    assert "3 classes: `negative`, `neutral`, `positive`" in card and "`text`, `image`" in card
    assert rows["accuracy"] == ["0.9123"] and rows["served latency p95, batch 1 (ms)"] == ["41.5"]
    assert "frozen test split (20 rows)" in card and "without_image" not in card  # headline only
    assert rows["rows"] == ["135 rows: train 95, val 20, test 20"]
    assert rows["code"] == ["git `0123456789ab` (uncommitted changes)"] and rows["dataset"][0].startswith("`" + "d" * 16)
    usage = card[card.index("### How to call"):]
    assert 'load_model("models:/shapes/5")' in usage and "-m models:/shapes/5 -i input.json" in usage
    assert '"image": ["<base64 PNG>"],' in usage and "audio" not in usage  # only the model's own inputs


def test_a_variant_card_shows_its_comparison_not_a_gate():
    tags = {**LINEAGE, **facts_tags(CLASSES, MODALITIES), "mmops.variant": "int8", "mmops.variant_of": "5",
            "gate.decision": "pending", "quantize.decision": "registered", "quantize.accuracy_drop": "0.0",
            "quantize.size_ratio": "0.31", "quantize.latency_ratio": "0.62", "quantize.int8_version": "6"}
    card = version_card("shapes", "6", tags, METRICS)
    assert "(int8 variant of v5)" in card and "### Gate" not in card and "not gated itself" in card
    rows = _rows(card)
    assert rows["size_ratio"] == ["0.31"] and rows["accuracy_drop"] == ["0.0"] and "int8_version" not in rows


def test_model_card_names_the_champion_and_what_it_classifies():
    tags = facts_tags(CLASSES, MODALITIES)
    card = model_card("shapes", tags, "5", "5", {"champion": "5", "challenger": "7"}, METRICS)
    assert "[v5](#/models/shapes/versions/5)" in card and "accuracy 0.9123, macro-F1 0.9012" in card
    assert "into 3 classes" in card and "`challenger` → v7" in card and "`champion` →" not in card
    none_yet = model_card("shapes", tags, None, "2", {}, {})
    assert "No champion yet" in none_yet and "newest: v2" in none_yet


def test_gate_rules_read_only_verdict_tags():
    rules = gate_rules(_version_tags() | {"gate.held_by_pin": "pinned to v4 by erin: audit"})
    assert [r[0] for r in rules] == sorted(r.rule for r in DECISION.rules)


def test_split_rows_counts_every_split(tmp_path):
    splits = tmp_path / "splits.csv"
    splits.write_text("sample_id,split\n" + "".join(f"s{i},{s}\n" for i, s in enumerate(
        ["test"] * 3 + ["train"] * 7 + ["val"] * 2 + ["test_shifted"] * 3)))
    assert split_rows(splits) == "15 rows: train 7, val 2, test 3, test_shifted 3"


def test_cards_are_written_and_the_model_card_follows_every_move(model):
    client, name = model  # v1..v4 without runs (tests/registry/conftest.py); v4 is v2's int8 variant
    passed = DECISION.model_copy(update={"promote": True, "rules": [r for r in DECISION.rules if r.passed]})
    for v in ("1", "2"):
        for key, value in _version_tags(passed).items():
            client.set_model_version_tag(name, v, key, value)
    write_cards(client, name, ["1", "2", None], None)
    v1 = client.get_model_version(name, "1")
    assert v1.description == version_card(name, "1", v1.tags, {})
    described = client.get_registered_model(name).description
    assert "No champion yet" in described and "newest: v3" in described  # v4 is a variant

    promote(client, name, "2", "looks right", pin=False)
    assert f"[v2](#/models/{name}/versions/2)" in client.get_registered_model(name).description
    compare_and_set(client, name, "1", "2", action="auto-promote", reason="gate passed", rules={})
    assert re.search(rf"Champion: \[v1\]\(#/models/{name}/versions/1\)", client.get_registered_model(name).description)
    rollback(client, name, "v1 misroutes")
    described = client.get_registered_model(name).description
    assert "Champion: [v2]" in described and "`champion_int8` → v4" in described
