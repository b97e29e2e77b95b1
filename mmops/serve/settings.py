"""Serving knobs: defaults, then `MMOPS_SERVE_*` env vars, then explicit overrides."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, Field

from mmops.config.monitor import PredictionLogConfig
from mmops.inference.predict import SERVE_MAX_BATCH_SIZE, serve_torch_threads

ENV_PREFIX = "MMOPS_SERVE_"
TOKEN_ENV = ENV_PREFIX + "TOKEN"


def prediction_log_from_env() -> PredictionLogConfig:
    """`PredictionLogConfig` defaults under env `MMOPS_SERVE_PREDICTION_LOG`, a JSON object such as
    '{"dir": "/var/log/mmops"}'."""
    return PredictionLogConfig.model_validate(json.loads(os.environ.get(ENV_PREFIX + "PREDICTION_LOG") or "{}"))


class ServeSettings(BaseModel):
    """Serving knobs. Each can be set by env `MMOPS_SERVE_<NAME>` (e.g. MMOPS_SERVE_MAX_BODY_BYTES)."""

    model_name: str = Field("mmops-classifier", min_length=1)
    alias: str = Field("champion", min_length=1)
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="torch: the registered model; onnx: its ONNX variant through ONNX Runtime"
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="request body cap (413 above)")
    max_instances: int = Field(64, gt=0, description="instances per request (413 above)")
    max_batch_size: int = Field(SERVE_MAX_BATCH_SIZE, gt=0, description="rows per model call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits for more requests (under load)")
    max_queue_rows: int = Field(1024, gt=0, description="rows waiting for the model (503 above)")
    max_concurrent_requests: int = Field(64, gt=0, description="/predict requests in flight (503 above)")
    request_timeout_s: float = Field(30.0, gt=0, description="a /predict request not answered by then gets 504")
    decode_threads: int = Field(2, gt=0, description="threads that read JSON and check media off the event loop")
    torch_threads: int = Field(
        default_factory=serve_torch_threads,
        gt=0, description="intra-op threads of the model call (oversubscribed OpenMP is very slow)",
    )
    poll_interval_s: float = Field(10.0, ge=0, description="champion check period; 0 = no hot reload")
    max_image_pixels: int = Field(16_000_000, gt=0, description="from the header, before decoding (422 above)")
    max_audio_seconds: float = Field(60.0, gt=0, description="from the header, before decoding (422 above)")
    max_audio_channels: int = Field(8, gt=0, le=8, description="from the header (422 above; decoding allows 8)")
    max_text_chars: int = Field(100_000, gt=0, description="characters per text (422 above)")
    token: str | None = Field(None, description=f"bearer token; default from env {TOKEN_ENV}", repr=False)
    prediction_log: PredictionLogConfig = Field(
        default_factory=prediction_log_from_env,
        description="params `monitor.log` (`mmops serve` passes it); default: env MMOPS_SERVE_PREDICTION_LOG, "
        "a JSON object of its keys, over the defaults",
    )
    feedback_ids: int = Field(
        100_000, gt=0, description="request ids remembered for POST /feedback (older ones are looked up in the log)"
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> "ServeSettings":
        """Defaults, then `MMOPS_SERVE_*` env vars, then explicit overrides (None = not given)."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            if name == "prediction_log":  # a JSON object: read by its default factory
                continue
            env = os.environ.get(ENV_PREFIX + name.upper())
            if env not in (None, ""):
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
