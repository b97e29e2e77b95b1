"""Who may call the server and over what: the bearer token, its strength, the bind rule and TLS files.

With a token set, every endpoint but /health wants `Authorization: Bearer <token>`. `mmops serve`
refuses to bind a non-loopback address without one (unless told `--insecure-no-auth`), refuses
short or placeholder tokens, and checks the TLS files before uvicorn starts.

`python -m mmops.serve.auth VAR[,VAR...]` checks that each named environment variable holds a usable
secret (set, long enough, not a placeholder) and exits 1 naming the first that does not, never
printing a value: the start-up check of infra/compose.yaml.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import ssl
import sys

from fastapi import HTTPException, Request

from mmops.serve.settings import TOKEN_ENV

MIN_TOKEN_CHARS = 32
MIN_SECRET_CHARS = 16
MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
# Stand-ins people leave in example files, compared without case and punctuation: anywhere in the
# value for the unmistakable ones, as a prefix for plain words.
_PLACEHOLDER_PARTS = ("changeme", "replaceme", "yourtoken", "yoursecret", "yourpassword", "insertyour", "placeholder")
_PLACEHOLDER_PREFIXES = ("fixme", "example", "password", "secret", "default", "token")


class InsecureConfig(ValueError):
    """A server set-up that would expose it: no token on a network address, a weak secret, bad TLS files."""


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


def weakness(secret: str, min_chars: int) -> str | None:
    """Why `secret` is unusable (too short, a placeholder, one repeated character), or None. Never quotes it."""
    folded = re.sub(r"[^a-z0-9]", "", secret.lower())
    if folded.startswith(_PLACEHOLDER_PREFIXES) or any(part in folded for part in _PLACEHOLDER_PARTS):
        return "is a placeholder value"
    if len(secret) < min_chars:
        return f"has {len(secret)} characters, at least {min_chars} are needed"
    if len(set(secret)) < 8:
        return "has fewer than 8 distinct characters"
    return None


def check_token_strength(token: str) -> None:
    """InsecureConfig unless `token` is at least MIN_TOKEN_CHARS long and not a placeholder."""
    why = weakness(token, MIN_TOKEN_CHARS)
    if why:
        raise InsecureConfig(f"the serve token ({TOKEN_ENV}) {why}; {MAKE_ONE}")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (a name other than localhost counts as not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure_no_auth: bool = False) -> None:
    """InsecureConfig for a non-loopback `host` without a token, unless `insecure_no_auth`; checks a given token."""
    if token:
        check_token_strength(token)
    elif not insecure_no_auth and not is_loopback(host):
        raise InsecureConfig(
            f"refusing to serve on {host} without a token: anyone who reaches it could call the model. "
            f"Set {TOKEN_ENV} ({MAKE_ONE}), bind 127.0.0.1, or pass --insecure-no-auth"
        )


def check_tls(certfile: str | None, keyfile: str | None) -> None:
    """InsecureConfig unless both files are given together and load as a certificate chain and its key."""
    if certfile is None and keyfile is None:
        return
    if certfile is None or keyfile is None:
        raise InsecureConfig("TLS needs both --ssl-certfile and --ssl-keyfile")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as err:
        raise InsecureConfig(f"cannot load the TLS certificate {certfile} with key {keyfile}: {err}") from None


def check_env_secrets(names: list[str], min_chars: int = MIN_SECRET_CHARS) -> list[str]:
    """One line per named environment variable that is unset or weak (by name only, never the value)."""
    problems = []
    for name in names:
        value = os.environ.get(name)
        why = "is not set" if not value else weakness(value, min_chars)
        if why:
            problems.append(f"{name} {why}")
    return problems


if __name__ == "__main__":
    found = check_env_secrets([name for arg in sys.argv[1:] for name in arg.split(",") if name])
    for line in found:
        print(f"refusing to start: {line}; {MAKE_ONE}", file=sys.stderr)
    sys.exit(1 if found else 0)
