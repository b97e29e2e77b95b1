"""`mmops schedule`'s children run with Prefect telemetry off (the full stack: test_scheduling.py)."""

from __future__ import annotations

import json
import sys

from mmops.orchestrate.local import started


def test_started_children_have_prefect_telemetry_off(tmp_path, monkeypatch):
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    keys = ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "X")
    code = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"
    log = tmp_path / "child.log"
    with started("child", [sys.executable, "-c", code], {"X": "1"}, log) as proc:
        proc.wait(timeout=60)
    seen = json.loads(log.read_text().strip().splitlines()[-1])
    assert seen == {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "X": "1"}


def test_an_explicit_setting_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    code = "import os; print(os.environ['DO_NOT_TRACK'])"
    log = tmp_path / "child.log"
    with started("child", [sys.executable, "-c", code], {}, log) as proc:
        proc.wait(timeout=60)
    assert log.read_text().strip() == "0"


def test_a_prefect_api_url_that_does_not_answer_is_refused_clearly(monkeypatch):
    import pytest

    from mmops.errors import UserError
    from mmops.orchestrate.local import run_scheduler
    from servers import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")  # e.g. a stopped scheduler's
    with pytest.raises(UserError, match="does not answer.*mmops env"):
        run_scheduler(params_path=None)
