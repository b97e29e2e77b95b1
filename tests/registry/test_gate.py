from mmops.config import GateConfig
from mmops.registry.gate import decide, render_markdown

GATE = GateConfig(min_accuracy=0.8, min_macro_f1=0.8, max_regression=0.02)
GOOD = {"accuracy": 0.95, "macro_f1": 0.94}


def _failed(decision):
    return {r.rule for r in decision.rules if not r.passed}


def test_first_model_floors_decide():
    d = decide(GOOD, None, True, GATE)
    assert d.promote and _failed(d) == set()
    assert "max_regression" not in {r.rule for r in d.rules}


def test_fails_floor():
    d = decide({"accuracy": 0.95, "macro_f1": 0.7}, None, True, GATE)
    assert not d.promote and _failed(d) == {"min_macro_f1"}


def test_regression_against_champion():
    d = decide(GOOD, {"accuracy": 0.99, "macro_f1": 0.97}, True, GATE, "3")
    assert not d.promote and _failed(d) == {"max_regression"}
    assert "v3" in next(r.detail for r in d.rules if r.rule == "max_regression")


def test_within_tolerance_promotes():
    d = decide(GOOD, {"accuracy": 0.95, "macro_f1": 0.955}, True, GATE, "1")
    assert d.promote


def test_failed_validation_blocks():
    d = decide(GOOD, None, False, GATE)
    assert not d.promote and _failed(d) == {"data_validation"}


def test_markdown_lists_every_rule():
    md = render_markdown(decide(GOOD, {"accuracy": 0.9, "macro_f1": 0.9}, True, GATE, "1"), "m", "2")
    for rule in ("data_validation", "min_accuracy", "min_macro_f1", "max_regression"):
        assert rule in md
    assert "PROMOTE" in md


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
