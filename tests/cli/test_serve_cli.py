"""`mmops serve` refuses an exposed or badly secured set-up before it resolves any model."""

from __future__ import annotations

import secrets

import pytest
from typer.testing import CliRunner

from mmops.cli.serve import app
from servers import self_signed_cert

NAME = ["--model-name", "no-such-model"]


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """Invoke `serve` with an empty SQLite registry and the given MMOPS_SERVE_TOKEN (None = unset)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def invoke(args: list[str], token: str | None = None):
        if token is None:
            monkeypatch.delenv("MMOPS_SERVE_TOKEN", raising=False)
        else:
            monkeypatch.setenv("MMOPS_SERVE_TOKEN", token)
        return CliRunner().invoke(app, ["serve", *NAME, *args])

    return invoke


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_a_network_address_without_a_token_is_refused(serve, host):
    result = serve(["--host", host])
    assert result.exit_code == 2, result.output
    assert f"refusing to serve on {host} without a token" in result.output
    assert "--insecure-no-auth" in result.output and "secrets.token_urlsafe(32)" in result.output


@pytest.mark.parametrize("token, reason", [("changeme", "placeholder"), ("s3cr3t-but-short", "at least 32")])
def test_weak_tokens_are_refused(serve, token, reason):
    result = serve(["--host", "0.0.0.0"], token)
    assert result.exit_code == 2 and reason in result.output, result.output
    assert token not in result.output


def test_tls_needs_a_matching_key(serve, tmp_path):
    cert, _ = self_signed_cert(tmp_path / "a")
    _, other_key = self_signed_cert(tmp_path / "b")
    result = serve(["--ssl-certfile", str(cert)])
    assert result.exit_code == 2 and "both --ssl-certfile and --ssl-keyfile" in result.output, result.output
    result = serve(["--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key)])
    assert result.exit_code == 2 and "cannot load the TLS certificate" in result.output, result.output


@pytest.mark.parametrize("args, token", [
    (["--host", "0.0.0.0", "--insecure-no-auth"], None),
    (["--host", "0.0.0.0"], secrets.token_urlsafe(32)),
    (["--host", "127.0.0.1"], None),
], ids=["insecure-no-auth", "token", "loopback"])
def test_accepted_set_ups_go_on_to_resolve_the_model(serve, args, token):
    result = serve(args, token)
    assert result.exit_code == 1, result.output  # past the checks: the (empty) registry has no such model
    assert "cannot resolve models:/no-such-model@champion" in result.output
