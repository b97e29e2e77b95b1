"""The manifest and table rules: a valid dataset passes, each broken variant fails on its rule."""

from __future__ import annotations

import pandas as pd


def test_valid_dataset_passes(dataset, check):
    report = check(dataset)
    assert report.passed, report.summary()
    assert report.failures == []
    assert report.n_rows == 30 and report.n_files == 60
    assert report.rows_per_split == {"test": 10, "train": 10, "val": 10}
    assert set(report.rules.values()) == {"passed"}


def test_valid_parquet_manifest_passes(tmp_path, kit, check):
    root = kit.make_dataset(tmp_path / "pq", fmt="parquet")
    report = check(root)
    assert report.passed, report.summary()
    assert report.manifest == "manifest.parquet"


def test_no_split_column_passes_and_skips_split_rules(dataset, kit, check):
    kit.save(dataset, kit.load(dataset).drop(columns=["split"]))
    report = check(dataset)
    assert report.passed, report.summary()
    assert report.rules["split_in_set"] == "skipped"
    assert report.rules["split_leakage"] == "skipped"


# --------------------------------------------------------------------------- manifest


def test_missing_manifest(dataset, kit, check):
    (dataset / "manifest.csv").unlink()
    kit.assert_fails(check(dataset), "manifest_exists", str(dataset))


def test_missing_dataset_folder(tmp_path, kit, check):
    kit.assert_fails(check(tmp_path / "nope"), "manifest_exists", "does not exist")


def test_non_utf8_byte_names_its_row(dataset, kit, check):
    path = dataset / "manifest.csv"
    raw = path.read_bytes().replace(b"sample 3\"", b"sample \xe9 3\"", 1)  # s003's text, line 5
    assert b"\xe9" in raw
    path.write_bytes(raw)
    report = check(dataset)
    kit.assert_fails(report, "manifest_encoding", "line 5", "data row 4", "s003", "e9")


def test_header_only_manifest(dataset, kit, check):
    (dataset / "manifest.csv").write_text("sample_id,split,label,text,image,audio\n")
    kit.assert_fails(check(dataset), "manifest_not_empty", "no rows")


def test_empty_manifest_file(dataset, kit, check):
    (dataset / "manifest.csv").write_bytes(b"")
    kit.assert_fails(check(dataset), "manifest_not_empty", "manifest.csv")


def test_ragged_csv_is_unreadable(dataset, kit, check):
    with open(dataset / "manifest.csv", "a") as fh:
        fh.write("s999,train,1,a,b,c,d,e\n")
    kit.assert_fails(check(dataset), "manifest_readable", "manifest.csv")


def test_corrupt_parquet_is_unreadable(tmp_path, kit, check):
    root = kit.make_dataset(tmp_path / "pq", fmt="parquet")
    (root / "manifest.parquet").write_bytes(b"PAR1 this is not parquet")
    kit.assert_fails(check(root), "manifest_readable", "manifest.parquet")


def test_required_column_missing_is_named(dataset, kit, check):
    kit.save(dataset, kit.load(dataset).drop(columns=["label"]))
    report = check(dataset)
    kit.assert_fails(report, "required_columns", "'label'")
    assert report.rules["label_in_classes"] == "skipped"


def test_a_manifest_without_a_modality_column_passes_and_required_columns_are_configurable(dataset, kit, check):
    kit.save(dataset, kit.load(dataset).drop(columns=["audio"]))
    report = check(dataset)  # any subset of text/image/audio is a dataset
    assert report.passed, report.summary()
    kit.assert_fails(check(dataset, required_columns=["sample_id", "label", "audio"]), "required_columns", "'audio'")


# --------------------------------------------------------------------------- table rules (GE)


def test_empty_sample_id(dataset, kit, check):
    kit.set_cell(dataset, "s005", "sample_id", "")
    kit.assert_fails(check(dataset), "sample_id_not_null", "row 6", "sample_id")


def test_duplicate_sample_id(dataset, kit, check):
    kit.set_cell(dataset, "s004", "sample_id", "s003")
    kit.assert_fails(check(dataset), "sample_id_unique", "s003", "sample_id", "appears 2 times")


def test_empty_label(dataset, kit, check):
    kit.set_cell(dataset, "s005", "label", "")
    kit.assert_fails(check(dataset), "label_not_null", "s005", "label")


def test_label_not_in_classes(dataset, kit, check):
    kit.set_cell(dataset, "s007", "label", "11")
    kit.assert_fails(check(dataset), "label_in_classes", "s007", "label", "'11'")


def test_bad_split_value(dataset, kit, check):
    kit.set_cell(dataset, "s002", "split", "training")
    kit.assert_fails(check(dataset), "split_in_set", "s002", "split", "'training'")


def test_empty_split_value_when_column_present(dataset, kit, check):
    kit.set_cell(dataset, "s002", "split", "")
    kit.assert_fails(check(dataset), "split_in_set", "s002")


def test_text_too_long(dataset, kit, check):
    kit.set_cell(dataset, "s008", "text", "x" * 200)
    kit.assert_fails(check(dataset, text_max_chars=100), "text_length", "s008", "text", "200 chars")


def test_text_too_short(dataset, kit, check):
    kit.set_cell(dataset, "s008", "text", "ab")
    kit.assert_fails(check(dataset, text_min_chars=3), "text_length", "s008")


def test_duplicate_rows(dataset, kit, check):
    df = kit.load(dataset)
    content = ["split", "label", "text", "image", "audio"]
    df.loc[df.sample_id == "s011", content] = df.loc[df.sample_id == "s010", content].to_numpy()
    kit.save(dataset, df)
    kit.assert_fails(check(dataset), "duplicate_rows", "s010", "s011")


# --------------------------------------------------------------------------- table rules (pandas)


def test_row_with_no_modality(dataset, kit, check):
    for col in ("text", "image", "audio"):
        kit.set_cell(dataset, "s012", col, "")
    kit.assert_fails(check(dataset), "modality_present", "s012", "text,image,audio")


def test_row_with_one_modality_is_fine(dataset, kit, check):
    for col in ("image", "audio"):
        kit.set_cell(dataset, "s012", col, "")
    assert check(dataset).passed


def test_class_missing_from_a_split(dataset, kit, check):
    df = kit.load(dataset)
    kit.save(dataset, df[df.sample_id != "s029"])  # the only '9' in test
    kit.assert_fails(check(dataset), "min_samples_per_class_split", "label", "'9'", "'test'")


def test_min_samples_per_class_is_configurable(dataset, kit, check):
    kit.assert_fails(check(dataset, min_samples_per_class=2), "min_samples_per_class_split", "label")


def _add_text_rows(root, kit, n: int, label: str = "0") -> None:
    df = kit.load(root)
    extra = pd.DataFrame([{"sample_id": f"x{i:03d}", "split": "train", "label": label,
                           "text": f"extra text {i}", "image": "", "audio": ""} for i in range(n)])
    kit.save(root, pd.concat([df, extra], ignore_index=True))


def test_severe_class_imbalance(dataset, kit, check):
    _add_text_rows(dataset, kit, 40)  # class 0: 43, the others 3 -> ratio 0.07 < 0.1
    kit.assert_fails(check(dataset), "class_balance", "label", "'0'")


def test_mild_class_imbalance_is_a_warning(dataset, kit, check):
    _add_text_rows(dataset, kit, 4)  # class 0: 7, others 3 -> ratio 0.43 < 0.5
    report = check(dataset)
    assert report.passed, report.summary()
    [warn] = report.warnings
    assert warn.rule == "class_balance_mild" and warn.column == "label"
    assert "class_balance_mild" in report.summary()
    report = check(dataset, severity={"class_balance_mild": "error"})
    kit.assert_fails(report, "class_balance_mild", "label")


# --------------------------------------------------------------------------- PII


def _pii_dataset(root, n: int = 60):
    """Unlike the demo: string labels, text only (no media columns), long texts, a metadata column;
    PII in a few texts, in a note and in one sample id."""
    root.mkdir(parents=True)
    filler = "a long description of the scene, with numbers like 3, 42 and 2024 that are not PII. " * 60
    rows = [{"sample_id": f"item-{i:04d}", "label": ["cat", "dog", "bird"][i % 3],
             "text": f"{filler} item {i}", "note": ""} for i in range(n)]
    rows[3]["text"] += " write to jane.doe@example.org or bob@example.com"
    rows[7]["text"] += " card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32"
    rows[11]["text"] = "served from 203.0.113.7 and 2001:db8::8a2e:370:7334"
    rows[20]["note"] = "call +44 20 7946 0958"
    rows[30]["sample_id"] = "max.mustermann@example.de"
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


PII_VALUES = ["jane.doe@example.org", "bob@example.com", "4111 1111 1111 1111", "GB82 WEST", "203.0.113.7",
              "2001:db8", "7946 0958", "max.mustermann"]


def test_pii_is_counted_per_column_and_sample_and_never_quoted(tmp_path):
    from mmops.validate import ValidateConfig, to_markdown, validate_dataset

    report = validate_dataset(_pii_dataset(tmp_path / "pii"), None, ValidateConfig())
    assert report.passed, report.summary()  # a warning by default
    pii = {f.column: f for f in report.failures if f.rule == "pii"}
    assert set(pii) == {"sample_id", "text", "note"} and {f.severity for f in pii.values()} == {"warning"}
    assert pii["text"].sample_ids == ["item-0003", "item-0007", "item-0011"]
    assert pii["text"].details == ["item-0003: 2 email", "item-0007: 1 iban, 1 card", "item-0011: 2 ip"]
    assert pii["note"].details == ["item-0020: 1 phone"]
    assert pii["sample_id"].details == ["row 31: 1 email"]  # an id holding PII is named by its row
    assert any("column 'text' holds 2 email, 1 iban, 1 card, 2 ip in 3 of 60 samples" in n for n in report.notes)
    assert report.timings["table_pii"] < 5
    shown = report.model_dump_json() + to_markdown(report) + report.summary()
    assert not [v for v in PII_VALUES if v in shown]


def test_pii_severity_and_columns_are_configurable(tmp_path, kit):
    from mmops.validate import ValidateConfig, validate_dataset

    root = _pii_dataset(tmp_path / "pii")
    report = validate_dataset(root, None, ValidateConfig(severity={"pii": "error"}))
    kit.assert_fails(report, "pii", "column 'text'", "item-0007: 1 iban, 1 card")

    report = validate_dataset(root, None, ValidateConfig(severity={"pii": "off"}))
    assert report.rules["pii"] == "off" and not [f for f in report.failures if f.rule == "pii"]

    report = validate_dataset(root, None, ValidateConfig(pii_columns=["note", "comment"]))
    assert {f.column for f in report.failures if f.rule == "pii"} == {"note"}
    assert any("comment not in the manifest" in n for n in report.notes)

    report = validate_dataset(root, None, ValidateConfig(pii_columns=["comment"]))
    assert report.rules["pii"] == "skipped"
