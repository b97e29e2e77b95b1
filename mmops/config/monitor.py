"""Production monitoring knobs (`params.yaml` `monitor:`): the prediction log; schema only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mmops.config.modality import MODALITIES, Modality


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionLogConfig(Strict):
    """What `mmops serve` and `mmops predict` append per prediction (`mmops/monitor/log.py`)."""

    enabled: bool = Field(True, description="append every prediction (and POST /feedback) to the log")
    dir: str = Field(
        ".mmops/predictions",
        description="a folder (relative: to the project root), an s3://bucket/prefix URI (env AWS_* / AWS_ENDPOINT_URL) "
        "or a postgresql://user@host:port/dbname URI (password: PGPASSWORD or ~/.pgpass; ?table_prefix=, default mmops_log)",
    )
    max_rows_per_file: int = Field(10_000, ge=1, description="a Parquet file is closed (rotated) at this many rows")
    max_files: int = Field(100, ge=1, description="prediction files kept (feedback files likewise); the oldest go first")
    queue_rows: int = Field(1024, ge=1, description="rows waiting for the writer; beyond it rows are dropped and counted")
    queue_mb: float = Field(
        256.0, gt=0, description="image and audio bytes waiting for the writer (summarised, then freed); beyond it: dropped"
    )
    flush_seconds: float = Field(5.0, gt=0, description="rows are written at least this often (a file per flush)")
    raw_inputs: bool = Field(
        False, description="also log the text and the SHA-256 of the image/audio bytes (never the media themselves)"
    )


class DriftConfig(Strict):
    """How `mmops monitor` compares a window of the log with the training reference (`mmops/monitor/drift.py`)."""

    last: int | None = Field(1000, ge=1, description="window: the last N logged predictions of the monitored model")
    minutes: float | None = Field(
        None, gt=0, description="window: only predictions of the last M minutes (with `last`: both)"
    )
    min_rows: int = Field(50, ge=2, description="fewer rows in the window: 'not enough data', nothing is decided")
    test: Literal["auto", "ks", "wasserstein", "psi"] = Field(
        "auto", description="per-column test of a numeric summary column; auto: ks while either side has <= 1000 "
        "values, else wasserstein (Evidently's rule); columns of few values get chi-square (p-value tests) or "
        "Jensen-Shannon (distance tests)",
    )
    p_value: float = Field(0.01, gt=0, lt=1, description="ks / chi-square: a column drifts below this p-value")
    distance: float = Field(
        0.1, gt=0, description="wasserstein (in reference std units) / psi / Jensen-Shannon: a column drifts above this"
    )
    share: float = Field(
        0.5, gt=0, le=1, description="a modality drifts when at least this share of its value columns drift, or when "
        "how often it is present drifts",
    )
    reference_rows: int = Field(
        1000, ge=10, description="training rows summarised into the reference at registration (seeded sample; "
        "about 7 ms a row)",
    )


class TriggerConfig(Strict):
    """When the `mmops-monitor/watch` deployment starts `mmops-retrain/manual` (`mmops/orchestrate/monitor.py`)."""

    enabled: bool = Field(True, description="the watch deployment's interval schedule is active")
    interval_minutes: float = Field(30, gt=0, description="how often the watch deployment runs the monitor")
    modalities: list[Modality] = Field(list(MODALITIES), description="feature drift of any of these fires")
    prediction: bool = Field(False, description="prediction-distribution drift fires too")
    max_accuracy_drop: float | None = Field(
        0.1, ge=0, le=1,
        description="live accuracy this far below the test accuracy recorded at registration fires; null: never",
    )
    min_feedback: int = Field(30, ge=1, description="labelled predictions needed before live accuracy counts")
    cooldown_minutes: float = Field(360, ge=0, description="no second retrain is started within this time of the last")


class MonitorConfig(Strict):
    log: PredictionLogConfig = PredictionLogConfig()
    drift: DriftConfig = DriftConfig()
    trigger: TriggerConfig = TriggerConfig()
