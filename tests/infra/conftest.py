"""Fixtures for tests/infra: one real S3 server (SeaweedFS, tests/s3_server.py) per test session."""

from __future__ import annotations

from s3_server import s3_server  # noqa: F401  (a session fixture: started once for tests/infra)
