"""Keep every tool's state inside the project (or wherever the environment already points)."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = Path(".mmops")


def configure_tool_env(root: Path | None = None) -> None:
    """Set defaults for Prefect, DVC, Hugging Face and MLflow env vars; existing values win.

    Must run before `prefect` is imported (it reads PREFECT_HOME at import).
    """
    state = (root or Path.cwd()).resolve() / STATE_DIR
    defaults = {
        "PREFECT_HOME": state / "prefect",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "DVC_SITE_CACHE_DIR": state / "dvc-site-cache",
        "HF_HOME": state / "hf",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect makes only the leaf
