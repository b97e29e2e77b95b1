"""Gate rules from params: floors, ceilings, absolute and relative regression, validation, lineage helpers."""

import pytest

from mmops.config import ConfigError, GateConfig
from mmops.params_file import load_params
from mmops.registry.gate import (
    UnknownMetricError,
    check_metric_keys,
    decide,
    higher_is_better,
    render_markdown,
    same_test_data_rule,
)

GATE = GateConfig.model_validate({
    "floors": {"accuracy": 0.8, "macro_f1": 0.8, "without_audio.macro_f1": 0.5},
    "ceilings": {"latency.batch_1.p95_ms": 50},
    "regression": {"macro_f1": {"max_drop": 0.02, "max_relative_drop": 0.05}, "ece": {"max_drop": 0.05}},
})
GOOD = {
    "accuracy": 0.95, "macro_f1": 0.94, "ece": 0.05,
    "without_audio": {"accuracy": 0.7, "macro_f1": 0.68},
    "latency": {"torch_threads": 2, "batch_1": {"p50_ms": 8.0, "p95_ms": 12.0}},
}


def _with(base: dict, **changes) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in changes.items():
        node = out
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def _failed(decision):
    return set(decision.failed())


def test_first_model_floors_and_ceilings_decide():
    d = decide(GOOD, None, True, GATE)
    assert d.promote and _failed(d) == set()
    assert not any(r.rule.startswith("regression") for r in d.rules)
    assert {r.rule for r in d.rules} >= {"floor.accuracy", "floor.without_audio.macro_f1", "ceiling.latency.batch_1.p95_ms"}


def test_fails_floor():
    d = decide(_with(GOOD, macro_f1=0.7), None, True, GATE)
    assert not d.promote and _failed(d) == {"floor.macro_f1"}


def test_fails_modality_removed_floor():
    d = decide(_with(GOOD, without_audio__macro_f1=0.3), None, True, GATE)
    assert not d.promote and _failed(d) == {"floor.without_audio.macro_f1"}
    rule = next(r for r in d.rules if r.rule == "floor.without_audio.macro_f1")
    assert rule.value == 0.3 and rule.threshold == 0.5


def test_fails_latency_ceiling():
    d = decide(_with(GOOD, latency__batch_1={"p50_ms": 40.0, "p95_ms": 75.0}), None, True, GATE)
    assert not d.promote and _failed(d) == {"ceiling.latency.batch_1.p95_ms"}


def test_fails_absolute_regression_only():
    # drop 0.03 > 0.02 absolute; relative 0.03 / 0.97 = 3.1 % <= 5 %
    d = decide(GOOD, {"macro_f1": 0.97, "ece": 0.05}, True, GATE, "3")
    assert not d.promote and _failed(d) == {"regression.macro_f1"}
    assert "v3" in next(r.detail for r in d.rules if r.rule == "regression.macro_f1")


def test_fails_relative_regression_only():
    gate = GateConfig.model_validate(
        {"floors": {"macro_f1": 0.4}, "regression": {"macro_f1": {"max_drop": 0.1, "max_relative_drop": 0.05}}}
    )
    # drop 0.04 <= 0.1 absolute, but 0.04 / 0.5 = 8 % > 5 % relative
    d = decide({"accuracy": 0.9, "macro_f1": 0.46}, {"macro_f1": 0.5}, True, gate, "2")
    assert not d.promote and _failed(d) == {"relative_regression.macro_f1"}
    rel = next(r for r in d.rules if r.rule == "relative_regression.macro_f1")
    assert rel.value == pytest.approx(0.08)


def test_lower_is_better_metrics_regress_upwards():
    assert not higher_is_better("ece") and not higher_is_better("latency.batch_1.p95_ms")
    assert higher_is_better("without_audio.macro_f1")
    d = decide(GOOD, {"macro_f1": 0.94, "ece": 0.0}, True, GATE, "1")  # challenger ECE 0.05 worse by 0.05: allowed
    assert d.promote
    d = decide(_with(GOOD, ece=0.11), {"macro_f1": 0.94, "ece": 0.05}, True, GATE, "1")
    assert _failed(d) == {"regression.ece"}


def test_within_tolerance_promotes_and_improvement_passes():
    assert decide(GOOD, {"macro_f1": 0.955, "ece": 0.06}, True, GATE, "1").promote
    assert decide(GOOD, {"macro_f1": 0.5, "ece": 0.3}, True, GATE, "1").promote


def test_regression_uses_challenger_scores_on_the_same_rows():
    d = decide(GOOD, {"macro_f1": 0.90, "ece": 0.05}, True, GATE, "1",
               challenger_scores={"macro_f1": 0.85, "ece": 0.05})
    assert _failed(d) == {"regression.macro_f1", "relative_regression.macro_f1"}


def test_failed_validation_blocks():
    d = decide(GOOD, None, False, GATE)
    assert not d.promote and _failed(d) == {"data_validation"}


def test_test_data_mismatch_blocks():
    ok = same_test_data_rule("a" * 64, "a" * 64)
    bad = same_test_data_rule("a" * 64, "b" * 64)
    assert ok.passed and not bad.passed
    d = decide(GOOD, None, True, GATE, same_data=bad, test_data_hash="c" * 64)
    assert not d.promote and _failed(d) == {"same_test_data"}


def test_unknown_metric_key_names_it_and_lists_available():
    gate = GateConfig.model_validate({"floors": {"without_smell.macro_f1": 0.5}, "regression": {"f2": {"max_drop": 0.1}}})
    with pytest.raises(UnknownMetricError) as err:
        check_metric_keys(gate, GOOD)
    message = str(err.value)
    assert "without_smell.macro_f1" in message and "'f2'" in message
    assert "available keys:" in message and "without_audio.macro_f1" in message and "latency.batch_1.p95_ms" in message
    d = decide(GOOD, {"macro_f1": 0.9}, True, gate, "1")
    floor = next(r for r in d.rules if r.rule == "floor.without_smell.macro_f1")
    assert not floor.passed and "accuracy" in floor.detail
    assert not next(r for r in d.rules if r.rule == "regression.f2").passed


def test_markdown_lists_every_rule():
    d = decide(GOOD, {"macro_f1": 0.9, "ece": 0.05}, True, GATE, "1", test_data_hash="f" * 64)
    md = render_markdown(d, "m", "2", extra="## extra section\n")
    for rule in ("data_validation", "floor.accuracy", "floor.without_audio.macro_f1", "ceiling.latency.batch_1.p95_ms",
                 "regression.macro_f1", "relative_regression.macro_f1", "regression.ece"):
        assert f"| {rule} |" in md
    assert "PROMOTE" in md and "champion v1" in md and "f" * 64 in md and "## extra section" in md


def test_params_nested_and_dotted_keys_and_null_drops():
    p = load_params(None, [
        "gate.floors.without_audio.macro_f1=0.4", "gate.floors.macro_f1=null",
        "gate.ceilings.latency.batch_1.p95_ms=9", "gate.regression.without_image.accuracy.max_relative_drop=0.1",
    ])
    assert p.gate.floors == {"accuracy": 0.8, "without_audio.macro_f1": 0.4}
    assert p.gate.ceilings == {"latency.batch_1.p95_ms": 9.0}
    assert p.gate.regression["without_image.accuracy"].max_relative_drop == 0.1
    assert "macro_f1" in p.gate.regression  # the default stays unless set to null


def test_params_legacy_keys_migrate():
    g = GateConfig.model_validate({"min_accuracy": 0.7, "min_macro_f1": 0.6, "max_regression": 0.05,
                                   "compare_metric": "accuracy"})
    assert g.floors == {"accuracy": 0.7, "macro_f1": 0.6}
    assert set(g.regression) == {"accuracy"} and g.regression["accuracy"].max_drop == 0.05


def test_params_reject_bad_rules():
    with pytest.raises(ConfigError, match="gate.regression.*latency.*gate.ceilings"):
        load_params(None, ["gate.regression.latency.batch_1.p95_ms.max_drop=1"])
    with pytest.raises(ConfigError, match="gate.regression.accuracy.*max_drop, max_relative_drop"):
        load_params(None, ["gate.regression.accuracy.higher_is_better=true"])
    with pytest.raises(ConfigError, match="quantize.max_accuracy_drop"):
        load_params(None, ["quantize.max_accuracy_drop=2"])


def test_project_params_file_loads():
    from pathlib import Path

    p = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    assert "without_audio.macro_f1" in p.gate.floors and "latency.batch_1.p95_ms" in p.gate.ceilings
    assert p.gate.regression["macro_f1"].max_relative_drop is not None and p.quantize.enabled


def test_dvc_data_md5_read_from_lock(tmp_path):
    from mmops.registry.lineage import dvc_data_md5

    (tmp_path / "data" / "avdigits").mkdir(parents=True)
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  demo_data:\n    cmd: mmops demo-data\n    outs:\n"
        "    - path: data/avdigits\n      md5: 0123abcd.dir\n      size: 10\n      nfiles: 2\n"
    )
    assert dvc_data_md5(tmp_path / "data" / "avdigits", lock) == "0123abcd.dir"
    assert dvc_data_md5(tmp_path / "elsewhere", lock) is None
    assert dvc_data_md5(tmp_path / "data" / "avdigits", tmp_path / "missing.lock") is None


def test_rules_on_a_modality_the_model_lacks_do_not_apply_and_typos_still_fail():
    from mmops.registry.gate import applicable

    gate = GateConfig(floors={"accuracy": 0.8, "without_audio.macro_f1": 0.5, "without_text.macro_f1": 0.5,
                              "without_smell.macro_f1": 0.5})
    assert set(applicable(gate, ["text", "image"]).floors) == {"accuracy", "without_text.macro_f1",
                                                             "without_smell.macro_f1"}
    assert set(applicable(gate, ["image"]).floors) == {"accuracy", "without_smell.macro_f1"}  # nothing to drop
    assert applicable(gate, ["text", "image", "audio"]).floors == gate.floors
