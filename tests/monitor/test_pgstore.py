"""The prediction log in PostgreSQL on a real local server: it reads back as the Parquet log does,
two models with other classes share a table, the row bound, no raw inputs by default, the drift
document behind /metrics, and a wrong password that drops (counted) without showing it. Generated
data unlike the demo: labels with spaces, text and grey JPEGs only."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmops.config.monitor import PredictionLogConfig
from mmops.monitor import log as log_module
from mmops.monitor.log import (
    FEEDBACK,
    PREDICTIONS,
    LogStatus,
    PredictionLog,
    logged_request_ids,
    new_request_id,
    read_feedback,
    read_log,
)
from mmops.monitor.pgstore import (
    PgLogError,
    PgSink,
    is_postgres,
    redact,
    write_document,
)
from mmops.orchestrate.monitor import write_to_log_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))  # postgres_server.py lives with the infra tests
from postgres_server import running_postgres

CLASSES = ["sea otter", "red fox", "barn owl", "grey heron"]
OTHER = ["snow leopard", "lynx"]
WORDS = ["river", "bank", "fur", "whiskers", "dusk", "feather", "reed", "pond", "moss", "pebble"]


@pytest.fixture(scope="module")
def pg():
    with running_postgres() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSWORD", server.password)  # the writer process inherits it
        yield server


@pytest.fixture
def prefix() -> str:
    return f"log_{uuid.uuid4().hex[:10]}"


def _uri(pg, prefix: str, password: str | None = None, query: str = "") -> str:
    auth = f"mmops:{password}" if password else "mmops"
    return f"postgresql://{auth}@127.0.0.1:{pg.port}/postgres?table_prefix={prefix}{query}"


def _jpeg(rng, h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L").save(buf, format="JPEG")
    return buf.getvalue()


def _traffic(n: int, seed: int, classes: list[str], version: str = "3"):
    """n rows of text and/or a grey image, and answers over `classes`."""
    rng = np.random.default_rng(seed)
    rows, answers = [], []
    for i in range(n):
        rows.append({"text": " ".join(rng.choice(WORDS, 1 + i % 6)) if i % 3 else "",
                     "image": _jpeg(rng, 9 + i, 17 + 2 * i) if i % 2 == 0 else None})
        p = rng.dirichlet(np.ones(len(classes)))
        answers.append({"label": classes[int(p.argmax())], "probabilities": dict(zip(classes, p.tolist())),
                        "model_version": version})
    return [new_request_id() for _ in range(n)], rows, answers


def _config(dir, **kw) -> PredictionLogConfig:
    return PredictionLogConfig(dir=str(dir), flush_seconds=60, **kw)


def _log_both(dirs: list, **kw) -> tuple[list[str], list[str], list[dict]]:
    """The same traffic and feedback into each of `dirs`: model `clf` (CLASSES, versions 3 and 4),
    then model `other` (OTHER); returns (clf ids, other ids, clf answers)."""
    ids, rows, answers = _traffic(7, seed=1, classes=CLASSES)
    ids4, rows4, answers4 = _traffic(3, seed=2, classes=CLASSES, version="4")
    other = _traffic(4, seed=3, classes=OTHER)
    for dir in dirs:
        with PredictionLog(_config(dir, **kw), "clf") as plog:
            plog.record(ids, rows, answers)
            assert plog.flush(30)  # a second write into the same table
            plog.record(ids4, rows4, answers4)
            plog.feedback(ids[0], "lynx")
            plog.feedback(ids[0], CLASSES[1])  # the latest label wins
            plog.feedback(ids[5], CLASSES[2])
        with PredictionLog(_config(dir, **kw), "other") as plog:
            plog.record(*other)
            plog.feedback(other[0][0], "snow leopard")
        assert plog.dropped == 0
    return ids + ids4, other[0], answers + answers4


def test_uris_are_recognised_and_passwords_masked():
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://u@h:5432/db?sslmode=require")
    assert not is_postgres("s3://bucket/postgresql") and not is_postgres("/srv/postgresql://x")
    assert is_postgres("postgresql+psycopg2://u@h/db") and not is_postgres(Path("postgres/log"))
    assert redact("postgresql://u:s3cr%40t@h:5/db?sslmode=disable") == "postgresql://u:***@h:5/db?sslmode=disable"
    assert redact("postgres://u@h/db") == "postgres://u@h/db" and redact("/var/log") == "/var/log"
    with pytest.raises(ValueError, match="table_prefix='1; drop'"):
        PgSink("postgresql://u:pw@h/db?table_prefix=1; drop", PREDICTIONS, 10, 2).write(
            log_module._tables(FEEDBACK, [{"request_id": "a", "label": "b", "time": pd.Timestamp.now("UTC")}])[0])


def test_rows_read_back_as_the_parquet_log_reads_them(pg, prefix, tmp_path):
    uri = _uri(pg, prefix)
    ids, other_ids, answers = _log_both([tmp_path / "log", uri])
    parquet = tmp_path / "log"

    frame = read_log(uri)
    assert list(frame["request_id"]) == ids + other_ids and frame["time"].is_monotonic_increasing
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    np.testing.assert_allclose(frame[[f"p.{c}" for c in CLASSES]][: len(ids)].to_numpy(),
                               [[a["probabilities"][c] for c in CLASSES] for a in answers])
    assert frame[[f"p.{c}" for c in OTHER]][: len(ids)].isna().all().all()
    assert frame[[f"p.{c}" for c in CLASSES]][len(ids):].isna().all().all()
    assert frame.set_index("request_id")["true_label"].dropna().to_dict() == {
        ids[0]: CLASSES[1], ids[5]: CLASSES[2], other_ids[0]: "snow leopard"}
    assert list(frame["text.present"]) == list(read_log(parquet)["text.present"])

    def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
        """Equal but for the times (each target got its own records) and the column order; the Parquet
        reader also keeps all-NaN p.<class> columns of other models' files, SQL reads only the rows asked for."""
        assert len(a) and list(a["request_id"]) == list(b["request_id"])
        b = b.drop(columns=[c for c in b if c.startswith("p.") and c not in a and b[c].isna().all()])
        pd.testing.assert_frame_equal(a.drop(columns="time"), b.drop(columns="time"), check_like=True)

    same(frame, read_log(parquet))
    for query in ({"model_name": "other"}, {"model_version": "4", "model_name": "clf"}, {"last": 5},
                  {"columns": ["label", "image.width"], "last": 2}):
        same(read_log(uri, **query), read_log(parquet, **query))
    windows = [read_log(d, since=t[7], until=t[10]) for d, t in ((uri, frame["time"]), (parquet, read_log(parquet)["time"]))]
    same(*windows)  # each target's own times: the second batch of clf
    assert list(windows[0]["request_id"]) == ids[7:10]
    same(read_feedback(uri), read_feedback(parquet))
    unknown = new_request_id()
    assert logged_request_ids(uri, [ids[2], other_ids[3], unknown]) == {ids[2], other_ids[3]}
    assert logged_request_ids(uri, [unknown]) == set()


def test_the_table_keeps_the_newest_rows_within_the_bound(pg, prefix):
    uri = _uri(pg, prefix, password=pg.password, query="&sslmode=disable")  # password and libpq options in the URI
    config = _config(uri, max_rows_per_file=3, max_files=2)  # at most 6 rows of a kind; a rotation leaves 3
    ids, rows, answers = _traffic(14, seed=4, classes=CLASSES)
    with PredictionLog(config, "clf") as plog:
        for start in range(0, 14, 4):
            plog.record(ids[start:start + 4], rows[start:start + 4], answers[start:start + 4])
            for request_id in ids[start:start + 4]:
                plog.feedback(request_id, CLASSES[0])
            assert plog.flush(30)
            for kind, read in ((PREDICTIONS, read_log), (FEEDBACK, read_feedback)):
                count = pg.query("postgres", f"SELECT count(*) FROM {prefix}_{kind}")[0][0]
                assert 3 <= count <= 6
                assert list(read(uri)["request_id"]) == ids[:start + 4][-count:]  # the newest
    assert plog.rows == 14 and plog.dropped == 0
    frame = read_log(uri)  # each kind is bounded on its own: the labels of the kept feedback rows
    assert frame["true_label"].dropna().eq(CLASSES[0]).all()
    assert set(frame["request_id"][frame["true_label"].notna()]) == set(read_feedback(uri)["request_id"])
    indexed = {r[0] for r in pg.query("postgres", f"SELECT indexdef FROM pg_indexes WHERE tablename = '{prefix}_predictions'")}
    assert any("(\"time\", id)" in d or "(time, id)" in d for d in indexed) and any("(request_id)" in d for d in indexed)


def test_a_dropped_connection_is_reopened_without_losing_the_write(pg, prefix):
    uri = _uri(pg, prefix)
    rows = [{"request_id": new_request_id(), "label": "red fox", "time": pd.Timestamp.now("UTC")} for _ in range(3)]
    sink = PgSink(uri, FEEDBACK, 10, 2)
    sink.write(log_module._tables(FEEDBACK, rows[:1])[0])
    pg.query("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'mmops-prediction-log'")  # as a server restart would
    sink.write(log_module._tables(FEEDBACK, rows[1:])[0])
    assert list(read_feedback(uri)["request_id"]) == [r["request_id"] for r in rows]


def test_no_raw_inputs_in_the_table_by_default_only_digests_when_enabled(pg, prefix):
    ids, rows, answers = _traffic(6, seed=5, classes=CLASSES)
    secret = "my pin is 4921, the door code 7730"
    rows[1]["text"] = secret
    uri = _uri(pg, prefix)
    with PredictionLog(_config(uri), "clf") as plog:
        plog.record(ids, rows, answers)
    columns = {r[0] for r in pg.query(
        "postgres", f"SELECT column_name FROM information_schema.columns WHERE table_name = '{prefix}_predictions'")}
    assert {"request_id", "probabilities", "image.width"} <= columns
    assert not columns & {"text", "image_sha256", "audio_sha256"}
    dump = "\n".join(r[0] for r in pg.query("postgres", f"SELECT t::text FROM {prefix}_predictions t"))
    assert ids[1] in dump and secret not in dump and "pin" not in dump

    with PredictionLog(_config(uri, raw_inputs=True), "clf") as plog:  # the same table gains the columns
        plog.record(ids, rows, answers)
    frame = read_log(uri)
    assert len(frame) == 12 and frame["text"][:6].isna().all() and frame.loc[7, "text"] == secret
    digests = [hashlib.sha256(r["image"]).hexdigest() if r["image"] else None for r in rows]
    assert [x if isinstance(x, str) else None for x in frame["image_sha256"][6:]] == digests


def test_the_drift_document_reaches_log_status(pg, prefix):
    uri = _uri(pg, prefix, password=pg.password)
    ids, rows, answers = _traffic(4, seed=6, classes=CLASSES)
    with PredictionLog(_config(uri), "clf") as plog:
        plog.record(ids, rows, answers)
        plog.feedback(ids[0], answers[0]["label"])
    status = LogStatus(uri, "clf", min_interval_s=0)
    status.refresh("3", 0)
    assert status.drift is None and status.live == {"n": 1, "accuracy": 1.0, "macro_f1": 1.0}
    first = {"modalities": {"image": {"score": 0.42, "drifted": True}}, "prediction": {"score": 0.1, "drifted": False}}
    where = write_to_log_dir(uri, first)
    assert pg.password not in where and "***" in where
    status.refresh("3", 0)
    assert status.drift == first
    second = {"modalities": {"text": {"score": 0.05, "drifted": False}}}
    write_document(uri, "drift.json", json.dumps(second))
    status.refresh("3", 0)
    assert status.drift == second


def test_a_wrong_password_is_dropped_counted_and_never_shown(pg, prefix, monkeypatch):
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]
    table = log_module._tables(FEEDBACK, [{"request_id": "a", "label": "b", "time": pd.Timestamp.now("UTC")}])[0]
    sink = pickle.loads(pickle.dumps(PgSink(_uri(pg, prefix, password=wrong), FEEDBACK, 10, 2)))  # pickles unconnected
    with pytest.raises(PgLogError) as raised:
        sink.write(table)
    message = str(raised.value)
    assert wrong not in message and "password authentication failed" in message and "PGPASSWORD" in message
    assert "mmops:***@127.0.0.1" in message
    with pytest.raises(PgLogError, match="SSL"):  # libpq options pass through
        PgSink(_uri(pg, prefix, query="&sslmode=require"), FEEDBACK, 10, 2).write(table)

    monkeypatch.setenv("PGPASSWORD", wrong)
    ids, rows, answers = _traffic(5, seed=7, classes=CLASSES)
    with PredictionLog(_config(_uri(pg, prefix)), "clf") as plog:
        assert plog.record(ids[:3], rows[:3], answers[:3]) == 3
        assert plog.feedback(ids[0], CLASSES[0])
        assert plog.flush(30)
        assert plog.dropped == 4 and plog.rows == 0
        assert plog.record(ids[3:], rows[3:], answers[3:]) == 2  # serving goes on
        assert plog.flush(30) and plog.dropped == 6
    monkeypatch.setenv("PGPASSWORD", pg.password)
    assert read_log(_uri(pg, prefix)).empty
