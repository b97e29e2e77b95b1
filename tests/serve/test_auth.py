"""The serving security rules on their own: token strength, loopback, bind, TLS files, env secrets."""

from __future__ import annotations

import secrets

import pytest

from mmops.serve.auth import (
    MIN_TOKEN_CHARS,
    InsecureConfig,
    check_bind,
    check_env_secrets,
    check_tls,
    is_loopback,
    weakness,
)
from servers import self_signed_cert

STRONG = secrets.token_urlsafe(32)


@pytest.mark.parametrize("value", ["changeme", "CHANGE-ME-please-0123456789abcdefghijkl", "change_me_postgres",
                                   "your-token-here-0123456789abcdefghijklmn", "password1234567890abcdefghijklmn"])
def test_placeholders_are_refused_whatever_their_length(value):
    assert weakness(value, 8) == "is a placeholder value"


def test_short_and_repetitive_secrets_are_refused_without_quoting_them():
    short = secrets.token_urlsafe(8)
    assert weakness(short, MIN_TOKEN_CHARS) == f"has {len(short)} characters, at least {MIN_TOKEN_CHARS} are needed"
    assert weakness("ab" * 20, MIN_TOKEN_CHARS) == "has fewer than 8 distinct characters"
    assert weakness(STRONG, MIN_TOKEN_CHARS) is None


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("10.0.0.5", False), ("", False), ("myhost", False)])
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_bind_needs_a_strong_token_off_loopback():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", STRONG)
    check_bind("0.0.0.0", None, insecure_no_auth=True)
    with pytest.raises(InsecureConfig, match="refusing to serve on 0.0.0.0 without a token.*token_urlsafe"):
        check_bind("0.0.0.0", None)
    with pytest.raises(InsecureConfig, match="at least 32"):
        check_bind("127.0.0.1", "short-token-1234")  # a weak token is refused even on loopback
    with pytest.raises(InsecureConfig, match="placeholder"):
        check_bind("0.0.0.0", "changeme-" + STRONG, insecure_no_auth=True)


def test_tls_files_are_checked_before_serving(tmp_path):
    cert, key = self_signed_cert(tmp_path / "a")
    other_cert, _ = self_signed_cert(tmp_path / "b")
    check_tls(None, None)
    check_tls(str(cert), str(key))
    with pytest.raises(InsecureConfig, match="both --ssl-certfile and --ssl-keyfile"):
        check_tls(str(cert), None)
    with pytest.raises(InsecureConfig, match="cannot load the TLS certificate"):
        check_tls(str(other_cert), str(key))  # a key that is not the certificate's
    with pytest.raises(InsecureConfig, match="cannot load"):
        check_tls(str(tmp_path / "missing.pem"), str(key))


def test_env_secrets_are_named_never_quoted(monkeypatch):
    monkeypatch.setenv("GOOD_SECRET", STRONG)
    monkeypatch.setenv("PLACEHOLDER_SECRET", "change-me-postgres")
    monkeypatch.setenv("SHORT_SECRET", "Ab3$x")
    monkeypatch.delenv("UNSET_SECRET", raising=False)
    problems = check_env_secrets(["GOOD_SECRET", "PLACEHOLDER_SECRET", "SHORT_SECRET", "UNSET_SECRET"])
    assert problems == ["PLACEHOLDER_SECRET is a placeholder value",
                        "SHORT_SECRET has 5 characters, at least 16 are needed", "UNSET_SECRET is not set"]
    assert not any("change-me" in p or "Ab3$x" in p for p in problems)
