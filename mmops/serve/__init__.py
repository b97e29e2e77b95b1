"""Serving: the champion behind an HTTP API (`app`), micro-batching, hot reload, PII scrubbing.

Kept import-light: `mmops.serve.privacy` is used by the feature extractor at training time,
so importing this package must not pull in FastAPI, uvicorn or MLflow.
"""

from __future__ import annotations

from mmops.serve.privacy import scrub_pii, scrub_texts

__all__ = ["scrub_pii", "scrub_texts", "create_app", "ServeSettings"]


def __getattr__(name: str):
    if name in ("create_app", "ServeSettings"):
        from mmops.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'mmops.serve' has no attribute {name!r}")
