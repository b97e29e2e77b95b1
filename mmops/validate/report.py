"""The validation report: failures by rule, counts, timings; JSON, Markdown and Rich views."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.catalog import VALIDATION_JSON, VALIDATION_MD
from mmops.config.validate import RULES, ValidateConfig

RuleStatus = Literal["passed", "failed", "skipped", "off"]


class Failure(BaseModel):
    """One failed rule on one column: who failed, how many, and why."""

    rule: str
    severity: Literal["error", "warning"]
    column: str | None = None
    sample_ids: list[str] = Field(default_factory=list, description="first N offending samples")
    n_failed: int = 0
    message: str
    details: list[str] = Field(default_factory=list, description="'<sample>: <reason>', first N")


class ValidationReport(BaseModel):
    """Everything one validation run found; `passed` is False iff any error."""

    data_dir: str
    manifest: str | None = None
    data_hash: str = ""
    failures: list[Failure] = Field(default_factory=list)
    rules: dict[str, RuleStatus] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    n_rows: int = 0
    n_files: int = 0
    n_bytes: int = 0
    file_workers: int = Field(0, description="processes that ran the file checks, this one included "
                                             "(validate.workers, auto resolved from the number of files)")
    files_in_workers: int = Field(0, description="files checked in worker processes rather than this one")
    rows_per_split: dict[str, int] = Field(default_factory=dict)
    rows_per_label: dict[str, int] = Field(default_factory=dict)
    modality_counts: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    config: dict = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "error"]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "warning"]

    def failed_rules(self) -> set[str]:
        return {f.rule for f in self.failures}

    def summary(self) -> str:
        """One line per severity, e.g. '2 errors: label_in_classes (label) samples s001, s007; ...'."""
        head = (
            f"{'PASSED' if self.passed else 'FAILED'}: {self.n_rows} rows, {self.n_files} files"
            f", data {self.data_hash[:12] or '-'}"
        )
        lines = [head]
        for sev, group in (("error", self.errors), ("warning", self.warnings)):
            if not group:
                continue
            parts = []
            for f in group:
                col = f" ({f.column})" if f.column else ""
                who = f" samples {', '.join(f.sample_ids)}" if f.sample_ids else ""
                extra = f.n_failed - len(f.sample_ids)
                more = f" +{extra} more" if f.sample_ids and extra > 0 else ""
                parts.append(f"{f.rule}{col}{who}{more}" if who else f"{f.rule}{col}: {_short('; '.join(f.details))}")
            lines.append(f"{len(group)} {sev}{'s' if len(group) != 1 else ''}: " + "; ".join(parts))
        return "\n".join(lines)


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class Findings:
    """Collects problems by (rule, column) while checks run, then builds the failures."""

    def __init__(self, cfg: ValidateConfig):
        self.cfg = cfg
        self.status: dict[str, RuleStatus] = {}
        self.notes: list[str] = []
        self._rows: dict[tuple[str, str | None], dict[int, tuple[str, str]]] = defaultdict(dict)
        self._items: dict[tuple[str, str | None], list[str]] = defaultdict(list)

    def enabled(self, rule: str) -> bool:
        return self.cfg.severity_of(rule) != "off"

    def ran(self, *rules: str) -> None:
        """Mark rules as checked (passed unless a problem is or was recorded)."""
        for rule in rules:
            if not self.enabled(rule):
                self.status[rule] = "off"
            elif self.status.get(rule) not in ("failed",):
                self.status[rule] = "passed"

    def skip(self, rules: tuple[str, ...] | list[str], why: str) -> None:
        skipped = []
        for rule in rules:
            if not self.enabled(rule):
                self.status[rule] = "off"
            elif rule not in self.status:
                self.status[rule] = "skipped"
                skipped.append(rule)
        if skipped:
            self.notes.append(f"skipped ({why}): {', '.join(skipped)}")

    def row(self, rule: str, column: str | None, index: int, ident: str, detail: str = "") -> None:
        """A problem on one row (index = 0-based data row, ident = its sample id or 'row N')."""
        if not self.enabled(rule):
            self.status[rule] = "off"
            return
        self._rows[(rule, column)].setdefault(index, (ident, detail))
        self.status[rule] = "failed"

    def item(self, rule: str, column: str | None, message: str) -> None:
        """A problem on the table or a column as a whole (e.g. a class short of samples)."""
        if not self.enabled(rule):
            self.status[rule] = "off"
            return
        self._items[(rule, column)].append(message)
        self.status[rule] = "failed"

    def failures(self) -> list[Failure]:
        n = self.cfg.max_ids
        out: list[Failure] = []
        for (rule, column), rows in self._rows.items():
            hits = [rows[i] for i in sorted(rows)]
            ids = [ident for ident, _ in hits[:n]]
            details = [f"{ident}: {d}" if d else ident for ident, d in hits[:n]]
            more = f" and {len(hits) - n} more" if len(hits) > n else ""
            where = f" column '{column}':" if column else ""
            message = (
                f"{rule}:{where} {len(hits)} sample{'s' if len(hits) != 1 else ''} failed: "
                + "; ".join(details)
                + more
            )
            out.append(
                Failure(rule=rule, severity=self.cfg.severity_of(rule), column=column, sample_ids=ids,
                        n_failed=len(hits), message=message, details=details)
            )
        for (rule, column), items in self._items.items():
            where = f" column '{column}':" if column else ""
            shown = items[:n]
            more = f" and {len(items) - n} more" if len(items) > n else ""
            out.append(
                Failure(rule=rule, severity=self.cfg.severity_of(rule), column=column, n_failed=len(items),
                        message=f"{rule}:{where} " + "; ".join(shown) + more, details=shown)
            )
        order = {r: i for i, r in enumerate(RULES)}
        out.sort(key=lambda f: (f.severity != "error", order.get(f.rule, len(order)), f.column or ""))
        return out

    def rule_table(self) -> dict[str, RuleStatus]:
        return {r: self.status.get(r, "off" if not self.enabled(r) else "skipped") for r in RULES}


# --------------------------------------------------------------------------- writers


def write_report(report: ValidationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write validation.json (machine) and validation.md (people) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / VALIDATION_JSON, "markdown": out_dir / VALIDATION_MD}
    atomic_write_text(paths["markdown"], to_markdown(report))
    atomic_write_json(paths["json"], report.model_dump(mode="json"))  # last: the next stage reads it
    return paths


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: ValidationReport) -> str:
    """The report as a Markdown page."""
    verdict = "PASSED" if report.passed else "FAILED"
    out = [
        f"# Data validation: {verdict}",
        "",
        f"- dataset: `{report.data_dir}`",
        f"- manifest: `{report.manifest or '-'}`",
        f"- data hash: `{report.data_hash or '-'}`",
        f"- rows: {report.n_rows}, media files: {report.n_files} ({report.n_bytes:,} bytes"
        + (f"; checked by {report.file_workers} process{'es' if report.file_workers != 1 else ''}, "
           f"{report.files_in_workers} files in workers" if report.n_files else "") + ")",
        f"- errors: {len(report.errors)}, warnings: {len(report.warnings)}",
    ]
    if report.rows_per_split:
        out.append("- rows per split: " + ", ".join(f"{k} {v}" for k, v in report.rows_per_split.items()))
    if report.modality_counts:
        out.append("- non-empty cells: " + ", ".join(f"{k} {v}" for k, v in report.modality_counts.items()))
    if report.timings:
        out.append("- timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in report.timings.items()))
    out += ["", "## Failures", ""]
    if report.failures:
        out += ["| severity | rule | column | failed | samples (first N) | message |", "|---|---|---|---:|---|---|"]
        for f in report.failures:
            out.append(
                f"| {f.severity} | `{f.rule}` | {_md(f.column or '')} | {f.n_failed} | "
                f"{_md(', '.join(f.sample_ids))} | {_md(f.message)} |"
            )
    else:
        out.append("None.")
    out += ["", "## Rules", "", "| rule | status |", "|---|---|"]
    out += [f"| `{r}` | {s} |" for r, s in report.rules.items()]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {_md(n)}" for n in report.notes]
    return "\n".join(out) + "\n"


def print_report(report: ValidationReport, console=None) -> None:
    """Print a concise Rich table of the failures and a one-line verdict."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    style = "bold green" if report.passed else "bold red"
    console.print(
        f"[{style}]{'PASSED' if report.passed else 'FAILED'}[/] data validation of {report.data_dir}: "
        f"{report.n_rows} rows, {report.n_files} files, {len(report.errors)} errors, "
        f"{len(report.warnings)} warnings, data {report.data_hash[:12] or '-'}"
    )
    if not report.failures:
        return
    table = Table(show_lines=False, header_style="bold")
    for name, kw in (("severity", {}), ("rule", {}), ("column", {}), ("failed", {"justify": "right"}),
                     ("samples / detail", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for f in report.failures:
        sev = "[red]error[/]" if f.severity == "error" else "[yellow]warning[/]"
        who = ", ".join(f.sample_ids) if f.sample_ids else _short(f.message.split(": ", 1)[-1], 120)
        if f.sample_ids and f.details:  # the first reason, so the fix is on screen (e.g. which label, which param)
            who += f"\n{_short(f.details[0], 240)}"
        table.add_row(sev, f.rule, f.column or "", str(f.n_failed), who)
    console.print(table)
