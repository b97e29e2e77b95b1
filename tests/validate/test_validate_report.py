"""Severities, the data hash, the report writers and the config knobs."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import ValidationError
from rich.console import Console

from mmops.data.hashing import dataset_hash
from mmops.validate import RULES, ValidateConfig, ValidationReport, print_report, write_report

# --------------------------------------------------------------------------- severity


def test_warning_severity_does_not_fail(dataset, kit, check):
    kit.set_cell(dataset, "s007", "label", "11")
    report = check(dataset, severity={"label_in_classes": "warning"}, min_samples_per_class=0)
    assert report.passed, report.summary()
    [warn] = report.warnings
    assert warn.rule == "label_in_classes" and warn.sample_ids == ["s007"]
    assert report.rules["label_in_classes"] == "failed"


def test_off_severity_skips_the_rule(dataset, kit, check):
    kit.set_cell(dataset, "s007", "label", "11")
    report = check(dataset, severity={"label_in_classes": "off"}, min_samples_per_class=0)
    assert report.passed, report.summary()
    assert report.failures == []
    assert report.rules["label_in_classes"] == "off"


def test_off_file_rule(dataset, kit, check):
    kit.write_wav(dataset / "audio" / "s017.wav", seed=17, sr=4000)
    report = check(dataset, severity={"audio_sample_rate": "off"})
    assert report.passed and report.rules["audio_sample_rate"] == "off"


def test_failures_are_ordered_errors_first(dataset, kit, check):
    kit.set_cell(dataset, "s007", "label", "11")
    kit.set_cell(dataset, "s006", "audio", "audio/nope.wav")
    report = check(dataset, severity={"label_in_classes": "warning"}, min_samples_per_class=0)
    assert [f.severity for f in report.failures] == ["error", "warning"]


# --------------------------------------------------------------------------- data hash


def test_data_hash_is_stable_and_content_sensitive(dataset, check):
    h1, h2 = dataset_hash(dataset), dataset_hash(dataset)
    assert h1 == h2 and len(h1) == 64
    assert check(dataset).data_hash == h1  # the validator's parallel digests give the same hash
    png = dataset / "images" / "s005.png"
    data = bytearray(png.read_bytes())
    data[-20] ^= 0x01
    png.write_bytes(bytes(data))
    assert dataset_hash(dataset) != h1


def test_data_hash_follows_the_manifest(dataset, kit):
    h1 = dataset_hash(dataset)
    kit.set_cell(dataset, "s001", "text", "changed")
    assert dataset_hash(dataset) != h1


def test_data_hash_does_not_depend_on_the_folder_location(tmp_path, kit):
    a = kit.make_dataset(tmp_path / "a")
    b = kit.make_dataset(tmp_path / "elsewhere" / "b")
    assert dataset_hash(a) == dataset_hash(b)


def test_data_hash_of_an_unreadable_dataset(dataset, kit, check):
    kit.set_cell(dataset, "s006", "audio", "audio/nope.wav")
    report = check(dataset)
    assert report.data_hash == dataset_hash(dataset)


# --------------------------------------------------------------------------- report


def test_write_report(dataset, kit, check, tmp_path):
    kit.set_cell(dataset, "s007", "label", "11")
    report = check(dataset, min_samples_per_class=0)  # s007 was class 7's only train sample
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "markdown"}
    assert paths["json"].name == "validation.json" and paths["markdown"].name == "validation.md"
    data = json.loads(paths["json"].read_text())
    assert data["passed"] is False
    assert data["n_rows"] == 30 and data["n_files"] == 60
    [f] = data["failures"]
    assert f["rule"] == "label_in_classes" and f["sample_ids"] == ["s007"] and f["n_failed"] == 1
    assert set(data["rules"]) == set(RULES) and "total" in data["timings"]
    again = ValidationReport.model_validate_json(paths["json"].read_text())
    assert again.passed is False and again.failures == report.failures
    md = paths["markdown"].read_text()
    assert "FAILED" in md and "label_in_classes" in md and "s007" in md and report.data_hash in md


def test_summary_names_rule_column_and_samples(dataset, kit, check):
    kit.set_cell(dataset, "s001", "label", "x")
    kit.set_cell(dataset, "s007", "label", "y")
    summary = check(dataset, min_samples_per_class=0).summary()
    assert "FAILED" in summary
    assert "1 error: label_in_classes (label) samples s001, s007" in summary


def test_print_report(dataset, kit, check):
    kit.set_cell(dataset, "s007", "label", "11")
    buf = io.StringIO()
    print_report(check(dataset), console=Console(file=buf, width=120))
    out = buf.getvalue()
    assert "FAILED" in out and "label_in_classes" in out and "s007" in out


def test_print_report_passed(dataset, check):
    buf = io.StringIO()
    print_report(check(dataset), console=Console(file=buf, width=120))
    assert "PASSED" in buf.getvalue()


# --------------------------------------------------------------------------- config


def test_config_defaults_and_partial_severity():
    cfg = ValidateConfig(severity={"class_balance": "warning"})
    assert cfg.severity["class_balance"] == "warning"
    assert cfg.severity["label_in_classes"] == "error"
    assert ValidateConfig().severity["class_balance_mild"] == "warning"
    assert cfg.severity_of("manifest_exists") == "error"


def test_config_from_yaml_off_is_off():
    import yaml

    raw = yaml.safe_load("severity:\n  class_balance: off\n  duplicate_rows: warning\n")
    assert raw["severity"]["class_balance"] is False  # YAML 1.1
    cfg = ValidateConfig.model_validate(raw)
    assert cfg.severity["class_balance"] == "off" and cfg.severity["duplicate_rows"] == "warning"


@pytest.mark.parametrize("bad", [
    {"severity": {"no_such_rule": "error"}},
    {"severity": {"manifest_exists": "off"}},
    {"severity": {"label_in_classes": "fatal"}},
    {"text_min_chars": 10, "text_max_chars": 5},
    {"image_formats": ["PSD"]},
    {"workers": 0},
    {"unknown_knob": 1},
])
def test_config_rejects(bad):
    with pytest.raises(ValidationError):
        ValidateConfig(**bad)


def test_validation_is_quiet(dataset, check, capfd):
    capfd.readouterr()
    check(dataset)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err and out == ""
