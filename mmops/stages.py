"""The pipeline's stages, wired to the paths in params: one function per stage.

`dvc.yaml` (through the CLI), the Prefect flow and the CLI all call these, so each stage's
logic exists once. Each reads files and writes files under `params.paths`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmops.config import Params


class DataValidationError(RuntimeError):
    """The dataset broke an error-severity rule; the message names samples, columns and rules."""

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


def demo_data(params: Params, out_dir: Path | None = None) -> Path:
    """Generate the built-in `avdigits` dataset (skipped when the same config already made it)."""
    from mmops.data.avdigits import generate

    out_dir = Path(out_dir or params.paths.data)
    stamp = out_dir / ".demo-config.json"
    wanted = json.dumps({"demo": params.demo.model_dump(mode="json"), "classes": params.classes}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == wanted and (out_dir / "manifest.csv").exists():
        return out_dir
    generate(out_dir, params.demo, params.classes)
    stamp.write_text(wanted)
    return out_dir


def validation_json(params: Params) -> Path:
    return params.paths.reports / "validation.json"


def validate(params: Params, data_dir: Path | None = None):
    """Validate the dataset and write the report; raise DataValidationError on any error."""
    from mmops.validate import validate_dataset, write_report

    data_dir = Path(data_dir or params.paths.data)
    report = validate_dataset(data_dir, params.classes, params.validate_)
    write_report(report, params.paths.reports)
    if not report.passed:
        raise DataValidationError(f"{data_dir}: data validation failed\n{report.summary()}", report)
    return report


def preprocess(params: Params, data_dir: Path | None = None) -> Path:
    from mmops.features.preprocess import preprocess as run

    return run(Path(data_dir or params.paths.data), validation_json(params), params.paths.features, params)


def train(params: Params, resume: bool = False) -> Path:
    from mmops.train import train as run

    return run(params.paths.features, params.paths.model, params, resume=resume)


def evaluate(params: Params) -> dict:
    from mmops.evaluate import evaluate as run

    return run(params.paths.model, params.paths.features, params.paths.metrics)


def register(params: Params, data_dir: Path | None = None) -> dict:
    from mmops.registry.register import register as run

    return run(
        params.paths.model,
        params.paths.metrics,
        validation_json(params),
        params.paths.features,
        Path(data_dir or params.paths.data),
        params,
        params.paths.reports,
    )
