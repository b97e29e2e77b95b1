"""The pipeline's stages: one function per stage, one shape, `stage(params, paths, **options)`.

`dvc.yaml` (through the CLI), the Prefect flow and the CLI all call these, so each stage's
logic exists once. `paths` is the `Catalog` the caller built once from `params.paths` (and a
dataset folder given on the command line); a stage reads and writes only where it says.
The stage graph (what each stage depends on) is declared in `dvc.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mmops.atomic import atomic_write_text
from mmops.catalog import DEMO_STAMP, Catalog
from mmops.config import AUTO, Params
from mmops.data.manifest import MANIFESTS
from mmops.errors import UserError

if TYPE_CHECKING:
    from mmops.config.resolved import Resolved
    from mmops.features.preprocess import Mapper
    from mmops.validate import ValidationReport


class DataValidationError(UserError, RuntimeError):
    """The dataset broke an error-severity rule; the message names samples, columns and rules."""

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


def holds_user_data(folder: Path) -> bool:
    """A dataset folder that the demo generator did not write (it must never be overwritten)."""
    return any((folder / name).exists() for name in MANIFESTS) and not (folder / DEMO_STAMP).exists()


def demo_data(params: Params, paths: Catalog) -> Path:
    """Generate the built-in `avdigits` dataset in `paths.data` (skipped when the same config made it;
    refused when the folder holds another dataset)."""
    from mmops.data.avdigits import generate

    if holds_user_data(paths.data):
        raise UserError(f"{paths.data} holds a dataset that the demo generator did not write; refusing to "
                        "overwrite it (give the demo another folder: mmops demo-data --out DIR)")
    stamp = paths.data / DEMO_STAMP
    wanted = json.dumps({"demo": params.demo.model_dump(mode="json"), "classes": params.classes}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == wanted and (paths.data / "manifest.csv").exists():
        return paths.data
    paths.data.mkdir(parents=True, exist_ok=True)
    stamp.write_text("{}")  # the folder is the demo's from now on, even if generation is interrupted
    generate(paths.data, params.demo, params.classes)
    atomic_write_text(stamp, wanted)
    return paths.data


def validate(params: Params, paths: Catalog) -> ValidationReport:
    """Validate `paths.data` and write the report; raise DataValidationError on any error."""
    from mmops.validate import validate_dataset, write_report

    classes = None if params.classes == AUTO else params.classes
    report = validate_dataset(paths.data, classes, params.validate_)
    write_report(report, paths.reports)
    if not report.passed:
        raise DataValidationError(f"{paths.data}: data validation failed\n{report.summary()}", report)
    return report


def preprocess(params: Params, paths: Catalog, mapper: Mapper | None = None) -> Resolved:
    """Resolve `auto` from the data and featurize every split of the validated dataset into `paths.features`
    (shards mapped over `mapper`; default a local process pool of `features.store.workers`)."""
    from mmops.features.preprocess import preprocess as run

    return run(paths, params.seed, params.classes, params.features, params.model, mapper)


def resolved(params: Params, paths: Catalog) -> Params:
    """`params` with every `auto` replaced by what preprocess derived from the data (`resolved.yaml`)."""
    from mmops.config.resolved import Resolved

    return Resolved.read(paths.resolved).apply(params) if paths.resolved.exists() else params


def train(params: Params, paths: Catalog, resume: bool = False) -> Path:
    """Train on `paths.features`; write the model folder `paths.model`."""
    from mmops.train import train as run

    return run(resolved(params, paths), paths, resume=resume)


def evaluate(params: Params, paths: Catalog) -> dict:
    """Score the model folder on the test split(s); write `paths.metrics`."""
    from mmops.evaluate import evaluate as run

    return run(paths.model, paths.features, paths.metrics, data_dir=paths.data)


def register(params: Params, paths: Catalog) -> dict:
    """Register the model as `challenger`, gate it, maybe promote it; write the registry report."""
    from mmops.registry.register import register as run

    return run(resolved(params, paths), paths)
