"""Data validation: Great Expectations table rules plus media file checks.

    report = validate_dataset(data_dir, classes, cfg)   # never raises on bad data
    write_report(report, out_dir)                       # validation.json + validation.md
    report.passed                                       # False iff any failure of severity "error"
"""

from __future__ import annotations

import time
from pathlib import Path

from mmops.config.validate import (
    DEFAULT_SEVERITY,
    MANIFEST_RULES,
    RULES,
    ValidateConfig,
)
from mmops.data.hashing import bytes_sha256, combine, dataset_hash
from mmops.validate.files import check_files
from mmops.validate.report import (
    Failure,
    Findings,
    ValidationReport,
    print_report,
    to_markdown,
    write_report,
)
from mmops.validate.table import MODALITIES, blank, check_table, idents, read_checked

__all__ = [
    "DEFAULT_SEVERITY",
    "MANIFEST_RULES",
    "RULES",
    "Failure",
    "ValidateConfig",
    "ValidationReport",
    "print_report",
    "to_markdown",
    "validate_dataset",
    "write_report",
]


def validate_dataset(
    data_dir: str | Path, classes: list[str] | None, cfg: ValidateConfig | None = None
) -> ValidationReport:
    """Check a dataset folder against the data contract; every problem becomes a Failure.

    `classes`: the pinned class names, or None (`classes: auto`): the labels found are the classes.
    """
    cfg = cfg or ValidateConfig()
    if classes is not None and len(classes) == 0:
        raise ValueError("validate_dataset needs the class names (params `classes`) or None for auto")
    classes = [str(c) for c in classes] if classes is not None else None
    data_dir = Path(data_dir)
    findings = Findings(cfg)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report = ValidationReport(data_dir=str(data_dir), config=cfg.model_dump(mode="json"))

    df, mpath = read_checked(data_dir, findings)
    timings["read"] = time.perf_counter() - t0
    if mpath is not None:
        report.manifest = mpath.name
    if df is None:
        rest = [r for r in RULES if r not in MANIFEST_RULES]
        findings.skip(rest, "the manifest could not be read")
        findings.skip(list(MANIFEST_RULES), "an earlier manifest rule failed")
        if mpath is not None:  # an unreadable manifest still has an identity: its bytes
            report.data_hash = combine(mpath.name, bytes_sha256(mpath.read_bytes()), [])
        return _finish(report, findings, timings, t0)

    ids = idents(df)
    report.n_rows = len(df)
    if "split" in df.columns:
        report.rows_per_split = {str(k): int(v) for k, v in df["split"].value_counts().sort_index().items()}
    if "label" in df.columns:
        report.rows_per_label = {str(k): int(v) for k, v in df["label"].value_counts().sort_index().items()}
    report.modality_counts = {c: int((~blank(df[c])).sum()) for c in MODALITIES if c in df.columns}

    timings.update(check_table(df, classes, cfg, findings))

    t = time.perf_counter()
    stats, digests = check_files(data_dir, df, ids, cfg, findings)
    timings["files"] = time.perf_counter() - t
    report.n_files, report.n_bytes = stats["files"], stats["bytes"]
    report.file_workers, report.files_in_workers = stats["workers"], stats["in_workers"]

    t = time.perf_counter()
    report.data_hash = dataset_hash(data_dir, known_digests=digests, df=df)
    timings["hash"] = time.perf_counter() - t
    return _finish(report, findings, timings, t0)


def _finish(report: ValidationReport, findings: Findings, timings: dict[str, float], t0: float) -> ValidationReport:
    timings["total"] = time.perf_counter() - t0
    report.failures = findings.failures()
    report.rules = findings.rule_table()
    report.notes = findings.notes
    report.timings = {k: round(v, 4) for k, v in timings.items()}
    return report
