"""Bearer-token auth: with a token set, every endpoint but /health wants `Authorization: Bearer <token>`."""

from __future__ import annotations

import hmac
import os

from fastapi import HTTPException, Request

from mmops.serve.settings import TOKEN_ENV


def resolve_token(configured: str | None) -> str | None:
    """The configured token, else env `MMOPS_SERVE_TOKEN`; empty means no auth."""
    return configured if configured is not None else (os.environ.get(TOKEN_ENV) or None)


def check_token(request: Request, token: str | None) -> None:
    """401 unless the request carries the bearer token (constant-time compare); no-op without a token."""
    if not token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
