"""Is the pipeline up to date? One answer for the flow, for `mmops run`'s no-op check and for `dvc repro`.

Each run keeps exactly one record of what its stages last produced:

- A run that *is* the pipeline `dvc.yaml` declares (started in a DVC project folder, with that
  folder's `params.yaml`, no `--set`, its own data folder, the catalogue writing where `dvc.yaml`
  says) keeps `dvc.lock`: a stage is up to date when `dvc status` finds nothing changed, and after
  the flow runs a stage it commits it to `dvc.lock` and the DVC cache, as `dvc repro` would. So
  `mmops run` after `dvc repro`, and `dvc repro` after `mmops run`, both find nothing to do.
- Any other run (another params file, overrides, `--data` elsewhere, no DVC project) is one DVC
  cannot describe; it keeps content-hash stamps in the catalogue (`cache.StageCache`).

The register stage has a third condition either way: the registration it recorded must still stand
in the registry (`registry_unchanged`). Nothing here imports Prefect, so `mmops run` can decide that
nothing must run before it pays for an orchestrator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from mmops.catalog import HISTORY_JSON, Catalog
from mmops.config import Params
from mmops.config.resolved import Resolved
from mmops.orchestrate.cache import StageCache, tree_digest

STAGES = ("validate", "preprocess", "train", "evaluate", "register")
DEMO_STAGE = "demo_data"


class Record(Protocol):
    """Where a stage's freshness is kept: `StageCache` (stamps) or `DvcStage` (dvc.lock)."""

    stage: str
    key: str

    def staleness(self) -> str | None: ...

    def record(self) -> None: ...


# -- dvc.lock as the record -------------------------------------------------------------------


def _outs(stage: dict) -> list[str]:
    """The paths a dvc.yaml stage writes (`outs`, `metrics`, `plots`; plain or with options)."""
    entries = [e for key in ("outs", "metrics", "plots") for e in stage.get(key) or ()]
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def stage_outputs(stage: str, paths: Catalog) -> list[Path]:
    """What the flow's `stage` writes (the stamp's outputs; folders where the stage owns one)."""
    return {
        DEMO_STAGE: [paths.data],
        "validate": [paths.validation_json, paths.validation_md],
        "preprocess": [paths.features],
        "train": [paths.model],
        "evaluate": [paths.metrics],
        "register": [paths.registry_json, paths.gate_md],
    }[stage]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def dvc_root(params_path: str | Path | None, overrides: list[str] | None, data_dir: str | Path | None,
             paths: Catalog, cwd: Path | None = None) -> Path | None:
    """The DVC project folder when this run is exactly the pipeline its `dvc.yaml` declares, else None."""
    root = (cwd or Path.cwd()).resolve()
    declared = root / "dvc.yaml"
    if overrides or params_path is None or not (root / ".dvc").is_dir() or not declared.is_file():
        return None
    if Path(params_path).resolve() != root / "params.yaml":
        return None
    if data_dir is not None:
        raw = yaml.safe_load((root / "params.yaml").read_text()) or {}
        if Path(data_dir).resolve() != (root / str((raw.get("paths") or {}).get("data", ""))).resolve():
            return None
    stages = (yaml.safe_load(declared.read_text()) or {}).get("stages") or {}
    for name in STAGES:
        if name not in stages:
            return None
        ours = [(root / p).resolve() for p in stage_outputs(name, paths)]
        theirs = [(root / p).resolve() for p in _outs(stages[name])]
        if not theirs or not all(_inside(p, ours) for p in theirs) or not all(_inside_any(o, theirs) for o in ours):
            return None
    return root


def _inside_any(ours: Path, theirs: list[Path]) -> bool:
    """Some DVC out is `ours` or lies inside it (a folder of several declared files)."""
    return any(t == ours or ours in t.parents for t in theirs)


def dvc_status(root: Path, stages: list[str]) -> dict[str, str]:
    """{stage: why it is out of date} for the named stages, per `dvc status` (absent: up to date)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status(targets=stages)
    return {stage: _describe(changes) for stage, changes in status.items()}


def _describe(changes: list) -> str:
    parts = []
    for entry in changes:
        if isinstance(entry, str):
            parts.append(entry)
            continue
        for kind, items in entry.items():
            named = [f"{p} ({v})" if isinstance(v, str) else f"{p}: {', '.join(map(str, v))}" for p, v in items.items()]
            parts.append(f"{kind}: {', '.join(named)}")
    return "dvc.lock says " + "; ".join(parts)


@dataclass
class DvcStage:
    """A stage whose record is `dvc.lock` (see the module docstring)."""

    root: Path
    stage: str

    @property
    def key(self) -> str:
        return f"dvc:{self.root}:{self.stage}"

    def staleness(self) -> str | None:
        return dvc_status(self.root, [self.stage]).get(self.stage)

    def fresh(self) -> bool:
        return self.staleness() is None

    def record(self) -> None:
        """Commit the stage's deps, params and outputs to dvc.lock and its outputs to the DVC cache."""
        from dvc.repo import Repo

        with Repo(str(self.root)) as repo:
            repo.commit(self.stage, force=True)


# -- stamps as the record ---------------------------------------------------------------------


def stage_record(stage: str, params: Params, paths: Catalog, root: Path | None, data_hash: str | None) -> Record:
    """The record of `stage` for this run, built from the files as they are now (call it just
    before the stage: its inputs are the outputs of the stages before it)."""
    if root is not None:
        return DvcStage(root, stage)
    outputs = stage_outputs(stage, paths)
    if stage in ("validate", "preprocess"):
        return StageCache(stage, params, paths, {"data": data_hash}, outputs)
    if stage == "train":
        return StageCache(stage, params, paths, {"features": tree_digest(paths.features)}, outputs)
    if stage == "evaluate":
        inputs = {"model": tree_digest(paths.model), "features": tree_digest(paths.features)}
        return StageCache(stage, params, paths, inputs, outputs)
    from mmops.registry.tracking import tracking_uri

    inputs = {"model": tree_digest(paths.model), "metrics": tree_digest(paths.metrics_json), "data": data_hash}
    return StageCache(stage, params, paths, inputs, outputs, extra={"tracking_uri": tracking_uri()})


# -- the registry ------------------------------------------------------------------------------


def registry_unchanged(paths: Catalog) -> bool:
    """The recorded registration still stands: its version exists and the champion is the same, or
    the champion is pinned (a person moved it: registering the same model again would only be held).
    A registration a pin held stands only while a pin exists (after `mmops release` it runs again)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mmops.registry.promotion import read_pin
    from mmops.registry.tracking import tracking_uri

    try:
        recorded = json.loads(paths.registry_json.read_text())
        client = MlflowClient(tracking_uri())
        version = client.get_model_version(recorded["model_name"], recorded["version"])
    except (OSError, ValueError, KeyError, MlflowException):
        return False
    try:
        champion = str(client.get_model_version_by_alias(recorded["model_name"], "champion").version)
    except MlflowException:  # no champion (yet, or any more)
        champion = None
    expected = recorded.get("champion_version")
    if version.run_id != recorded["run_id"]:
        return False
    pinned = read_pin(client, recorded["model_name"]) is not None
    if recorded.get("held") and not pinned:  # held by a pin since released: the gate's pass may now promote
        return False
    return champion == (str(expected) if expected else None) or pinned


def with_registry_state(result: dict) -> dict:
    """The registration `result` with the champion and pin as the registry has them now (a reused
    result was recorded before any later promote, rollback or release)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mmops.registry.promotion import current_version, read_pin
    from mmops.registry.tracking import tracking_uri

    try:
        client = MlflowClient(tracking_uri())
        pin = read_pin(client, result["model_name"])
        champion = current_version(client, result["model_name"])
    except MlflowException:
        return result
    return result | {"champion_version": champion, "pin": pin.model_dump() if pin else None}


# -- results of reused stages ------------------------------------------------------------------


def stored_result(stage: str, paths: Catalog) -> Any:
    """What the stage function returned when it wrote the outputs that are being reused."""
    if stage == "validate":
        report = json.loads(paths.validation_json.read_text())
        return {"passed": report["passed"], "data_hash": report["data_hash"]}
    if stage == "preprocess":
        return Resolved.read(paths.resolved)
    if stage == "train":
        return paths.model
    if stage == "evaluate":
        return json.loads(paths.metrics_json.read_text())
    if stage == "register":
        return json.loads(paths.registry_json.read_text())
    return paths.data  # demo_data


def run_summary(paths: Catalog, metrics: dict, registry: dict) -> dict:
    """What `mmops run` prints: metrics, registry decision, what `auto` resolved to, training budget."""
    chosen = Resolved.read(paths.resolved).summary() if paths.resolved.exists() else []
    budget = json.loads((paths.model / HISTORY_JSON).read_text())["summary"].get("budget")
    return {"metrics": metrics, "registry": registry, "resolved": chosen + ([("training", budget)] if budget else [])}


# -- the whole pipeline, before any orchestrator starts ----------------------------------------


@dataclass
class Check:
    """The answer of `check`: which record was asked, and the first stage that must run (if any)."""

    record: str  # "dvc.lock" or "stamps"
    stale: dict[str, str] = field(default_factory=dict)  # {stage: why} (the first stale stage only)
    seconds: float = 0.0

    @property
    def up_to_date(self) -> bool:
        return not self.stale


def check(params: Params, paths: Catalog, params_path: str | Path | None, overrides: list[str] | None,
          data_dir: str | Path | None) -> Check:
    """Whether every stage of this run can be reused as it is, without running or orchestrating any."""
    started = time.perf_counter()
    root = dvc_root(params_path, overrides, data_dir, paths)
    if root is not None:
        named = [DEMO_STAGE, *STAGES] if demo_in_pipeline(root, paths) else list(STAGES)
        stale = dvc_status(root, named)
        first = next(({s: stale[s]} for s in named if s in stale), {})
    else:
        first = {}
        if not paths.data.exists():
            first = {DEMO_STAGE: f"the data folder {paths.data} does not exist"}
        else:
            from mmops.data.hashing import dataset_hash

            data_hash = dataset_hash(paths.data)
            for stage in STAGES:
                why = stage_record(stage, params, paths, None, data_hash).staleness()
                if why is not None:
                    first = {stage: why}
                    break
    if not first and not registry_unchanged(paths):
        first = {"register": "the recorded registration no longer matches the registry"}
    return Check("dvc.lock" if root is not None else "stamps", first, time.perf_counter() - started)


def demo_in_pipeline(root: Path, paths: Catalog) -> bool:
    """Whether the project's `demo_data` stage writes the data folder this run reads."""
    stage = ((yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}).get(DEMO_STAGE)
    return stage is not None and [(root / p).resolve() for p in _outs(stage)] == [paths.data.resolve()]
