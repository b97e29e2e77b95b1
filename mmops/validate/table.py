"""Manifest and table rules: reading the manifest, then a Great Expectations suite, pandas aggregates
and a PII count (mmops.data.pii)."""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from mmops.config.validate import ValidateConfig
from mmops.data.manifest import ALL_SPLITS, SPLITS, manifest_path, read_manifest
from mmops.data.pii import KINDS, find_pii
from mmops.validate.report import Findings

MODALITIES = ("text", "image", "audio")


def blank(values: pd.Series) -> pd.Series:
    """True where a cell is empty or whitespace only (a missing value / modality)."""
    return values.astype(str).str.strip() == ""


def idents(df: pd.DataFrame) -> list[str]:
    """How each row is named in reports: its sample_id, or 'row N' (1-based data row) if it has none."""
    if "sample_id" not in df.columns:
        return [f"row {i + 1}" for i in range(len(df))]
    return [s if s.strip() else f"row {i + 1}" for i, s in enumerate(df["sample_id"].astype(str))]


# --------------------------------------------------------------------------- manifest


def read_checked(data_dir: Path, findings: Findings) -> tuple[pd.DataFrame | None, Path | None]:
    """Read the manifest as `read_manifest` does; record manifest_* failures (always errors)."""
    data_dir = Path(data_dir)
    try:
        path = manifest_path(data_dir)
    except FileNotFoundError:
        where = "does not exist" if not data_dir.is_dir() else "has no manifest.csv or manifest.parquet"
        findings.item("manifest_exists", None, f"dataset folder {data_dir} {where}")
        return None, None
    findings.ran("manifest_exists")

    if path.suffix == ".csv":
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            findings.item("manifest_encoding", None, _encoding_message(path, raw, err))
            return None, path
    findings.ran("manifest_encoding")

    try:
        df = read_manifest(data_dir)
    except pd.errors.EmptyDataError:
        findings.item("manifest_not_empty", None, f"{path.name} is empty (no header, no rows)")
        return None, path
    except Exception as err:  # parser errors, corrupt parquet, ...
        msg = " ".join(str(err).split())
        findings.item("manifest_readable", None, f"{path.name} cannot be read: {type(err).__name__}: {msg}")
        return None, path
    findings.ran("manifest_readable")
    if len(df) == 0:
        cols = ", ".join(map(str, df.columns)) or "none"
        findings.item("manifest_not_empty", None, f"{path.name} has a header ({cols}) but no rows")
        return None, path
    findings.ran("manifest_not_empty")
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True), path


def _encoding_message(path: Path, raw: bytes, err: UnicodeDecodeError) -> str:
    """Name the offending byte, its line, and the data row / sample id it sits in."""
    line = raw.count(b"\n", 0, err.start) + 1
    bad = raw[err.start : err.end].hex(" ")
    where = f"line {line}" + (" (the header)" if line == 1 else f" (data row {line - 1})")
    try:  # locate the row through the parser too (robust to quoted newlines) to name its sample id
        text = raw.decode("utf-8", errors="replace")
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        hit = df.apply(lambda col: col.astype(str).str.contains("\ufffd", regex=False)).any(axis=1)
        if hit.any():
            i = int(hit.to_numpy().nonzero()[0][0])
            sid = df["sample_id"].iloc[i] if "sample_id" in df.columns else ""
            where = f"line {line} (data row {i + 1}" + (f", sample {sid}" if sid else "") + ")"
    except Exception:
        pass
    return f"{path.name} is not UTF-8: byte(s) {bad} at offset {err.start}, {where}"


# --------------------------------------------------------------------------- Great Expectations


def _gx():
    """Import Great Expectations lazily (about 5 s) with its logging quiet."""
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


def _ge_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Object-dtype copy where blank cells of sample_id/label/text are None (GE's 'null')."""
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in df.columns:
        values = df[col].astype(str).tolist()
        if col in ("sample_id", "label", "text"):
            values = [v if v.strip() else None for v in values]
        out[col] = pd.Series(values, dtype=object)
    return out


def _suite(gx, df: pd.DataFrame, classes: list[str] | None, cfg: ValidateConfig, findings: Findings) -> list:
    """The expectations to run, each tagged with meta={'rule', 'column'}; skipped rules noted."""
    E = gx.expectations
    cols = set(df.columns)
    exps = []

    def add(rule: str, exp_cls, target: str | None, **kw) -> None:
        """Add one expectation; `target` is the column the failure is reported on."""
        if findings.enabled(rule):
            exps.append(exp_cls(**kw, meta={"rule": rule, "column": target}))
        findings.ran(rule)

    if cfg.required_columns:
        add("required_columns", E.ExpectTableColumnsToMatchSet, None,
            column_set=list(cfg.required_columns), exact_match=False)
    if "sample_id" in cols:
        add("sample_id_not_null", E.ExpectColumnValuesToNotBeNull, "sample_id", column="sample_id")
        add("sample_id_unique", E.ExpectColumnValuesToBeUnique, "sample_id", column="sample_id")
    else:
        findings.skip(["sample_id_not_null", "sample_id_unique"], "no sample_id column")
    if "label" in cols:
        add("label_not_null", E.ExpectColumnValuesToNotBeNull, "label", column="label")
        if classes is not None:
            add("label_in_classes", E.ExpectColumnValuesToBeInSet, "label", column="label", value_set=list(classes))
        else:
            findings.skip(["label_in_classes"], "classes: auto (the labels found are the classes)")
    else:
        findings.skip(["label_not_null", "label_in_classes"], "no label column")
    if "split" in cols:
        add("split_in_set", E.ExpectColumnValuesToBeInSet, "split", column="split", value_set=list(ALL_SPLITS))
    else:
        findings.skip(["split_in_set"], "no split column (the pipeline splits)")
    if "text" in cols:
        add("text_length", E.ExpectColumnValueLengthsToBeBetween, "text", column="text",
            min_value=cfg.text_min_chars, max_value=cfg.text_max_chars)
    else:
        findings.skip(["text_length"], "no text column")
    content = [c for c in df.columns if c != "sample_id"]
    if content:
        add("duplicate_rows", E.ExpectCompoundColumnsToBeUnique, ",".join(content),
            column_list=content, ignore_row_if="never")
    else:
        findings.skip(["duplicate_rows"], "no columns besides sample_id")
    return exps


def run_expectations(df: pd.DataFrame, classes: list[str] | None, cfg: ValidateConfig, findings: Findings) -> None:
    """Build an ephemeral GE context and suite over the manifest; map failures back to sample ids."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    exps = _suite(gx, df, classes, cfg, findings)
    if not exps:
        return
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = ctx.data_sources.add_pandas("mmops_manifest").add_dataframe_asset("manifest")
    batch_def = asset.add_batch_definition_whole_dataframe("all_rows")
    # built whole and added once: add_expectation on a stored suite re-serialises it each time
    suite = ctx.suites.add(gx.ExpectationSuite(name="mmops_data_contract", expectations=exps))
    batch = batch_def.get_batch(batch_parameters={"dataframe": _ge_frame(df)})
    results = batch.validate(suite, result_format="COMPLETE")

    ids = idents(df)
    for res in results.results:
        meta = res.expectation_config.meta or {}
        rule, column = meta.get("rule"), meta.get("column")
        if res.exception_info and res.exception_info.get("raised_exception"):
            msg = " ".join(str(res.exception_info.get("exception_message")).split())
            findings.item(rule, column, f"Great Expectations raised on column '{column}': {msg}")
            continue
        if res.success:
            continue
        if rule == "required_columns":
            present = ", ".join(df.columns)
            missing = res.result.get("details", {}).get("mismatched", {}).get("missing") or []
            for col in missing or [c for c in cfg.required_columns if c not in df.columns]:
                findings.item(rule, col, f"required column '{col}' is missing (present: {present})")
            continue
        rows = sorted({int(i) for i in res.result.get("unexpected_index_list") or []})
        for k, i in enumerate(rows):  # details only for the rows the report lists
            findings.row(rule, column, i, ids[i], _detail(rule, df, i, ids) if k < cfg.max_ids else "")


def _detail(rule: str, df: pd.DataFrame, i: int, ids: list[str]) -> str:
    """Why row i broke a GE rule, in words."""
    if rule == "sample_id_not_null":
        return "sample_id is empty"
    if rule == "sample_id_unique":
        sid = df["sample_id"].iat[i]
        return f"sample_id '{sid}' appears {int((df['sample_id'] == sid).sum())} times"
    if rule == "label_not_null":
        return "label is empty"
    if rule == "label_in_classes":
        return (f"label '{df['label'].iat[i]}' is not in params `classes`; set `classes: auto` (the training "
                "labels become the classes) or add it to the list")
    if rule == "split_in_set":
        return f"split '{df['split'].iat[i]}' is not one of {'|'.join(ALL_SPLITS)}"
    if rule == "text_length":
        return f"text has {len(df['text'].iat[i])} chars"
    if rule == "duplicate_rows":
        content = [c for c in df.columns if c != "sample_id"]
        same = (df[content] == df[content].iloc[i]).all(axis=1).to_numpy().nonzero()[0]
        others = [ids[j] for j in same if j != i][:3]
        return "same " + "/".join(content) + " as " + ", ".join(others)
    return ""


# --------------------------------------------------------------------------- pandas aggregates


def check_aggregates(df: pd.DataFrame, classes: list[str] | None, cfg: ValidateConfig, findings: Findings) -> None:
    """Rules GE has no fitting expectation for: modality presence, per-split counts, class balance,
    and (with pinned classes) the labels outside them, with how to fix params."""
    ids = idents(df)
    present = [c for c in MODALITIES if c in df.columns]
    findings.ran("modality_present")
    empty = pd.Series(True, index=df.index)
    for c in present:
        empty &= blank(df[c])
    for i in empty.to_numpy().nonzero()[0]:
        findings.row("modality_present", "text,image,audio", int(i), ids[i], "text, image and audio are all empty")

    if "label" not in df.columns:
        findings.skip(["min_samples_per_class_split", "class_balance", "class_balance_mild"], "no label column")
        return
    labels = df["label"].astype(str)
    if classes is None:
        classes = sorted(set(labels) - {""})
    if not classes:
        findings.skip(["min_samples_per_class_split", "class_balance", "class_balance_mild"], "no labels")
        return
    findings.ran("min_samples_per_class_split")
    if cfg.min_samples_per_class > 0:
        if "split" in df.columns:
            groups = [(s, labels[df["split"].astype(str) == s]) for s in SPLITS]
        else:
            groups = [("the dataset", labels)]
        for split, lab in groups:
            counts = lab.value_counts()
            for c in classes:
                n = int(counts.get(c, 0))
                if n < cfg.min_samples_per_class:
                    where = f"split '{split}'" if split != "the dataset" else split
                    rows = [ids[i] for i in (labels == c).to_numpy().nonzero()[0][:5]]
                    findings.item("min_samples_per_class_split", "label",
                                  f"class '{c}' has {n} sample{'s' if n != 1 else ''} in {where} "
                                  f"(minimum {cfg.min_samples_per_class})"
                                  + (f"; its rows: {', '.join(rows)}" if rows else ""))

    counts = labels.value_counts()
    per_class = {c: int(counts.get(c, 0)) for c in classes}
    lo_c = min(per_class, key=per_class.get)
    hi_c = max(per_class, key=per_class.get)
    lo, hi = per_class[lo_c], per_class[hi_c]
    ratio = lo / hi if hi else 0.0
    findings.ran("class_balance", "class_balance_mild")
    total = max(sum(per_class.values()), 1)
    text = (f"least frequent class '{lo_c}' has {lo} samples ({lo / total:.1%}), most frequent '{hi_c}' "
            f"has {hi} ({hi / total:.1%}): ratio {ratio:.3f}")
    if ratio < cfg.class_balance_min_ratio and findings.enabled("class_balance"):
        findings.item("class_balance", "label", f"{text} is below the floor {cfg.class_balance_min_ratio}")
    elif ratio < cfg.class_balance_warn_ratio:
        findings.item("class_balance_mild", "label", f"{text} is below {cfg.class_balance_warn_ratio}")


# --------------------------------------------------------------------------- PII

NOT_FREE_TEXT = ("split", "image", "audio")  # a split name and media paths: not scanned for PII by default


def check_pii(df: pd.DataFrame, cfg: ValidateConfig, findings: Findings) -> None:
    """Count e-mails, phones, cards, IBANs and IP addresses per column and sample, never quoting
    them: a report names the sample (or its row, when the sample id itself holds PII), the column,
    the kinds and their counts."""
    if not findings.enabled("pii"):
        findings.ran("pii")  # recorded as off
        return
    wanted = cfg.pii_columns if cfg.pii_columns is not None else [c for c in df.columns if c not in NOT_FREE_TEXT]
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        findings.notes.append(f"pii: column(s) {', '.join(absent)} not in the manifest, not scanned")
    columns = [c for c in wanted if c in df.columns]
    if not columns:
        findings.skip(["pii"], "no column to scan for PII")
        return
    findings.ran("pii")
    ids = idents(df)
    for col in columns:
        values = df[col].astype(str)
        totals: Counter[str] = Counter()
        hits = 0
        for i, value in enumerate(values):
            found = find_pii(value)
            if not found:
                continue
            hits += 1
            totals += found
            who = f"row {i + 1}" if find_pii(ids[i]) else ids[i]
            findings.row("pii", col, i, who, _counts(found))
        if hits:
            fix = "features.text.scrub_pii: true replaces them before training and serving; " if col == "text" else ""
            findings.notes.append(f"pii: column '{col}' holds {_counts(totals)} in {hits} of {len(df)} samples "
                                  f"(values not shown); {fix}validate.severity.pii: error refuses such data")


def _counts(found: Counter[str]) -> str:
    """'2 email, 1 phone': kinds and counts, never the values."""
    return ", ".join(f"{found[k]} {k}" for k in KINDS if found[k])


def check_table(df: pd.DataFrame, classes: list[str] | None, cfg: ValidateConfig, findings: Findings) -> dict[str, float]:
    """All table rules; returns timings."""
    t0 = time.perf_counter()
    _gx()
    t1 = time.perf_counter()
    run_expectations(df, classes, cfg, findings)
    t2 = time.perf_counter()
    check_aggregates(df, classes, cfg, findings)
    t3 = time.perf_counter()
    check_pii(df, cfg, findings)
    t4 = time.perf_counter()
    return {"ge_import": t1 - t0, "table_ge": t2 - t1, "table_pandas": t3 - t2, "table_pii": t4 - t3}
