"""The prediction log: what the served model saw and answered, and the labels that came back.

`PredictionLog.record` only puts rows on a bounded queue (when it is full the rows are dropped and
counted: serving never waits on the log); a writer process computes the summary features
(`mmops.monitor.summary`, never the raw text or media) and writes Parquet under `config.dir`:

    predictions-<UTC start>-<writer>.parquet   request_id, time, model_name, model_version, label,
                                               p.<class>..., SUMMARY_COLUMNS
                                               (+ text, image_sha256, audio_sha256 with raw_inputs)
    feedback-<UTC start>-<writer>.parquet      request_id, label, time
    drift.json                                 written by `mmops monitor`, read by /metrics

A file is rewritten whole at each flush (atomically: a reader sees the last complete version) until
it holds `max_rows_per_file` rows, then the next one starts; beyond `max_files` files of a kind the
oldest are deleted. Several writers (a server, a `mmops predict` run) share a folder: each names its
own files. `dir` is a folder (relative: to the project root) or an `s3://bucket/prefix` URI
(credentials and endpoint from the AWS_* environment, or `?endpoint_override=host:port` in the URI).

`dir` may also be a `postgresql://user@host:port/dbname` URI: the same rows then go to tables (one
COPY per flush, each kind bounded to `max_rows_per_file * max_files` rows, the oldest deleted) and
drift.json to a documents table; the readers below return the same frames (`mmops.monitor.pgstore`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmops.config.monitor import PredictionLogConfig
from mmops.env import project_root
from mmops.monitor import pgstore
from mmops.monitor.summary import SUMMARY_COLUMNS, summarize

log = logging.getLogger("mmops.monitor")

PREDICTIONS, FEEDBACK = "predictions", "feedback"
DRIFT_FILE = "drift.json"
BASE_COLUMNS = ("request_id", "time", "model_name", "model_version", "label")
RAW_COLUMNS = ("text", "image_sha256", "audio_sha256")
FEEDBACK_COLUMNS = ("request_id", "label", "time")
TIME = pa.timestamp("us", tz="UTC")


def new_request_id() -> str:
    return uuid.uuid4().hex


def resolve_dir(dir: str | Path) -> str:
    """A log folder as an absolute path (relative: to the project root) or an unchanged URI."""
    text = str(dir)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else project_root() / path)


def _filesystem(dir: str | Path) -> tuple[pafs.FileSystem, str]:
    uri = resolve_dir(dir)
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), uri


def _files(fs: pafs.FileSystem, root: str, kind: str) -> list[str]:
    """The `kind` files under `root`, oldest first (their names start with the UTC time)."""
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = (i.path for i in infos if i.type == pafs.FileType.File)
    return sorted(p for p in names if p.rsplit("/", 1)[-1].startswith(f"{kind}-") and p.endswith(".parquet"))


def _utc(t: datetime | None) -> pd.Timestamp | None:
    if t is None:
        return None
    stamp = pd.Timestamp(t)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _read(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """One Parquet file as a frame (only `columns` it has), or None when it vanished meanwhile (rotated out)."""
    try:
        if columns is not None:
            with fs.open_input_file(path) as f:
                names = set(pq.read_schema(f).names)
            columns = [c for c in columns if c in names]
        return pq.read_table(path, filesystem=fs, columns=columns).to_pandas()
    except FileNotFoundError:
        return None


class _Sink:
    """Rows of one kind -> rotated Parquet files: the open file is rewritten whole at each write."""

    def __init__(self, fs: pafs.FileSystem, root: str, kind: str, writer: str, max_rows: int, max_files: int) -> None:
        self.fs, self.root, self.kind, self.writer = fs, root, kind, writer
        self.max_rows, self.max_files = max_rows, max_files
        self.local = isinstance(fs, pafs.LocalFileSystem)
        self.path: str | None = None
        self.parts: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.parts and table.schema != self.parts[0].schema:  # e.g. a new model with other classes
            self._rotate()
        while table.num_rows:
            take = min(table.num_rows, self.max_rows - self.rows)
            if self.path is None:
                self._prune(keep=self.max_files - 1)
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                self.path = f"{self.root}/{self.kind}-{stamp}-{self.writer}.parquet"
            self.parts.append(table.slice(0, take))
            self.rows += take
            table = table.slice(take)
            self._save()
            if self.rows >= self.max_rows:
                self._rotate()

    def _save(self) -> None:
        table = pa.concat_tables(self.parts).combine_chunks()
        self.parts = [table]
        if not self.local:  # an object store's put replaces the object at once
            pq.write_table(table, self.path, filesystem=self.fs)
            return
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/.{self.path.rsplit('/', 1)[-1]}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, self.path)  # rename: readers see the old file or the new one, never half

    def _rotate(self) -> None:
        self.path, self.parts, self.rows = None, [], 0

    def _prune(self, keep: int) -> None:
        """Delete the oldest files of this kind (any writer's) beyond `keep`."""
        files = _files(self.fs, self.root, self.kind)
        for old in files[: max(0, len(files) - keep)]:
            try:
                self.fs.delete_file(old)
            except FileNotFoundError:  # another writer pruned it first
                pass


def _open_sink(dir: str, kind: str, writer: str, config: PredictionLogConfig) -> Any:
    """Where the writer appends rows of `kind`: rotated Parquet files in a folder or under an s3:// prefix,
    or a PostgreSQL table bounded to as many rows as those files hold (`mmops.monitor.pgstore`)."""
    if pgstore.is_postgres(dir):
        return pgstore.PgSink(dir, kind, config.max_rows_per_file, config.max_files)
    fs, root = _filesystem(dir)
    return _Sink(fs, root, kind, writer, config.max_rows_per_file, config.max_files)


FLUSH, STOP = "flush", "stop"
# Counters in shared memory, each written by the writer process only (so no lock crosses processes: a
# writer killed mid-update can never block a request) and read by the server.
_WRITTEN, _FEEDBACK_WRITTEN, _WRITER_DROPPED, _BYTES_TAKEN, _FLUSHED = range(5)


class PredictionLog:
    """Append predictions and feedback to the log from a writer process (see the module doc).

    The server only puts rows on a bounded queue: summaries and writes run in a child process at
    the lowest CPU priority, so they neither hold the server's GIL nor take a core from a request.
    The child is forked from a fork server that has this module loaded (the first log of a process
    waits about a second for it) and gets this process's environment as it is now (AWS_* / PG*
    credentials)."""

    def __init__(self, config: PredictionLogConfig, model_name: str) -> None:
        self.config = config
        self.model_name = model_name
        self.dir = resolve_dir(config.dir)
        ctx = _context()
        self._queue = ctx.Queue(maxsize=config.queue_rows)
        self._shared = ctx.RawArray("q", 5)
        self._bytes_put = 0  # media bytes queued so far; minus the writer's _BYTES_TAKEN: still waiting
        self._max_bytes = int(config.queue_mb * 2**20)
        self._lock = threading.Lock()
        self._dropped = 0  # rows this side refused (queue full, log closed)
        self._flushes = 0
        self._closed = False
        self._process: Any = ctx.Process(
            target=_writer_main, name="mmops-prediction-log", daemon=True,
            args=(self._queue, self._shared, config, model_name, self.dir, uuid.uuid4().hex[:8],
                  dict(os.environ)))
        self._process.start()

    # -- producers (any thread; never block unless asked to) --

    def record(self, request_ids: Sequence[str], rows: Sequence[Mapping[str, Any]],
               predictions: Sequence[Mapping[str, Any]], wait: bool = False) -> int:
        """Queue one row per prediction; returns how many were queued. Without `wait` (serving) a full
        queue drops the rest and counts them; with it (batch inference) the caller waits for room."""
        if not len(request_ids) == len(rows) == len(predictions):
            raise ValueError(f"{len(request_ids)} ids, {len(rows)} rows, {len(predictions)} predictions")
        now = datetime.now(timezone.utc)
        queued = 0
        for request_id, row, prediction in zip(request_ids, rows, predictions):
            size = _media_size(row)
            with self._lock:
                room = self._bytes_put - self._shared[_BYTES_TAKEN] + size <= self._max_bytes or wait
                if room:
                    self._bytes_put += size
            if room and self._put((PREDICTIONS, now, size, request_id, row, prediction), wait):
                queued += 1
                continue
            if room:
                with self._lock:
                    self._bytes_put -= size
            if not wait or not self._process.is_alive():
                self._count_dropped(len(request_ids) - queued)
                break
        return queued

    def feedback(self, request_id: str, label: str) -> bool:
        """Queue a true label for a request id; False when the queue is full (dropped and counted)."""
        if self._put((FEEDBACK, datetime.now(timezone.utc), request_id, str(label)), wait=False):
            return True
        self._count_dropped(1)
        return False

    def _put(self, item: tuple, wait: bool) -> bool:
        """Queue `item`; with `wait`, wait for room while the writer lives."""
        while not self._closed or item[0] == STOP:
            try:
                self._queue.put(item, block=wait, timeout=1.0 if wait else None)
                return True
            except queue.Full:
                if not (wait and self._process.is_alive()):  # a dead writer frees no room
                    return False
        return False

    def _count_dropped(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued so far; True once it is stored (False on timeout or a dead writer)."""
        with self._lock:
            self._flushes += 1
            seq = self._flushes
        if not self._put((FLUSH, seq), wait=True):
            return False
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while self._shared[_FLUSHED] < seq:
            if time.monotonic() >= deadline or not self._process.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued and stop the writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._put((STOP,), wait=True):
            self._process.join(timeout)
        if self._process.is_alive():
            log.warning("prediction log: the writer did not finish within %ss; stopped", timeout)
            self._process.kill()
            self._process.join(5)
        if self._process.exitcode != 0:  # what is still queued is lost: never wait on a pipe nobody reads
            self._queue.cancel_join_thread()
        self._queue.close()
        self._queue.join_thread()

    def __enter__(self) -> "PredictionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def rows(self) -> int:
        """Prediction rows written."""
        return int(self._shared[_WRITTEN])

    @property
    def feedback_rows(self) -> int:
        return int(self._shared[_FEEDBACK_WRITTEN])

    @property
    def dropped(self) -> int:
        """Rows refused by a full queue, or lost to a row or a write that failed."""
        return self._dropped + int(self._shared[_WRITER_DROPPED])

    @property
    def writer_pid(self) -> int:
        return self._process.pid

    def stats(self) -> dict[str, int]:
        return {"rows": self.rows, "feedback": self.feedback_rows, "dropped": self.dropped}


def _context() -> Any:
    """Fork-server processes: a clean, single-threaded parent (never fork a serving process's threads)
    that has this module loaded once, so a writer starts in milliseconds."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _writer_main(items: Any, shared: Any, config: PredictionLogConfig, model_name: str, dir: str,
                 writer: str, env: dict[str, str]) -> None:
    """The writer process: lowest priority, deaf to Ctrl-C and SIGTERM sent to the whole process group
    (the server closes it once it has stopped answering), stops when told or when the server is gone."""
    import multiprocessing
    import signal

    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    except OSError:  # not allowed: the default priority
        pass
    parent = multiprocessing.parent_process()
    _Writer(config, model_name, dir, writer, shared).run(items, lambda: parent is None or parent.is_alive())


class _Writer:
    """Summarise queued rows and write them every `flush_seconds`, on a flush request, or at a full file."""

    def __init__(self, config: PredictionLogConfig, model_name: str, dir: str, writer: str, shared: Any) -> None:
        self.config, self.model_name, self.dir, self.shared = config, model_name, dir, shared
        self.sinks = {kind: _open_sink(dir, kind, writer, config) for kind in (PREDICTIONS, FEEDBACK)}
        self.pending: dict[str, list[dict]] = {PREDICTIONS: [], FEEDBACK: []}

    def run(self, items: Any, server_alive: Any) -> None:
        deadline = time.monotonic() + self.config.flush_seconds
        while True:
            try:
                item = items.get(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                item = (STOP,) if not server_alive() else None
            kind = item[0] if item else None
            if kind in (PREDICTIONS, FEEDBACK):
                self._add(item)
            if kind in (FLUSH, STOP) or time.monotonic() >= deadline \
                    or len(self.pending[PREDICTIONS]) >= self.config.max_rows_per_file:
                self._write()
                deadline = time.monotonic() + self.config.flush_seconds
            if kind == FLUSH:
                self.shared[_FLUSHED] = max(self.shared[_FLUSHED], item[1])
            if kind == STOP:
                return

    def _count(self, slot: int, n: int) -> None:
        self.shared[slot] += n

    def _add(self, item: tuple) -> None:
        kind, now, *rest = item
        try:
            if kind == FEEDBACK:
                request_id, label = rest
                self.pending[FEEDBACK].append({"request_id": request_id, "label": label, "time": now})
            else:
                size, *rest = rest
                self._count(_BYTES_TAKEN, size)
                self.pending[PREDICTIONS].append(self._prediction_row(now, *rest))
        except Exception as err:  # a row that cannot be summarised must not stop the writer
            log.warning("prediction log: row dropped (%s: %s)", type(err).__name__, err)
            self._count(_WRITER_DROPPED, 1)

    def _prediction_row(self, now: datetime, request_id: str, row: Mapping[str, Any],
                        prediction: Mapping[str, Any]) -> dict:
        version = prediction.get("model_version")
        out: dict[str, Any] = {"request_id": str(request_id), "time": now, "model_name": self.model_name,
                               "model_version": None if version is None else str(version),
                               "label": str(prediction["label"])}
        out.update({f"p.{c}": float(p) for c, p in prediction["probabilities"].items()})
        out.update(summarize(row))
        if self.config.raw_inputs:
            out["text"] = row.get("text") or ""
            for name in ("image", "audio"):
                data = row.get(name)
                if isinstance(data, (str, Path)) and str(data):
                    data = Path(data).read_bytes()
                out[f"{name}_sha256"] = hashlib.sha256(data).hexdigest() if data else None
        return out

    def _write(self) -> None:
        for kind, rows in self.pending.items():
            if not rows:
                continue
            try:
                for table in _tables(kind, rows):
                    self.sinks[kind].write(table)
                self._count(_WRITTEN if kind == PREDICTIONS else _FEEDBACK_WRITTEN, len(rows))
            except Exception as err:  # a full disk or an unreachable bucket: count, keep serving
                log.warning("prediction log: %d %s rows not written to %s (%s: %s)",
                            len(rows), kind, pgstore.redact(self.dir), type(err).__name__, err)
                self._count(_WRITER_DROPPED, len(rows))
            rows.clear()


def _media_size(row: Mapping[str, Any]) -> int:
    """Bytes of the image and audio a row holds in memory (a path holds none)."""
    return sum(len(v) for v in (row.get("image"), row.get("audio")) if isinstance(v, (bytes, bytearray)))


def _schema(columns: Iterable[str]) -> pa.Schema:
    strings = {"request_id", "model_name", "model_version", "label", *RAW_COLUMNS}
    return pa.schema([(c, TIME if c == "time" else pa.string() if c in strings else pa.float64()) for c in columns])


def _tables(kind: str, rows: list[dict]) -> list[pa.Table]:
    """Rows -> tables, a new one wherever the columns change (a model with other classes)."""
    if kind == FEEDBACK:
        return [pa.Table.from_pylist(rows, schema=_schema(FEEDBACK_COLUMNS))]
    out, start = [], 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i].keys() != rows[start].keys():
            out.append(pa.Table.from_pylist(rows[start:i], schema=_schema(rows[start].keys())))
            start = i
    return out


def record_manifest(plog: PredictionLog, data_dir: str | Path, predictions: pd.DataFrame,
                    version: str | None) -> list[str]:
    """Log the output of `predict_manifest` (sample_id, label, prob_<class>) for the dataset at
    `data_dir`, waiting for room in the queue (batch inference drops nothing); the request ids."""
    from mmops.data.manifest import MEDIA_COLUMNS, read_manifest

    manifest = read_manifest(data_dir)
    rows = [{"text": r.get("text") or "",
             **{m: str(Path(data_dir) / r[m]) if r.get(m) else None for m in MEDIA_COLUMNS}}
            for r in manifest.to_dict("records")]
    classes = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    answers = [{"label": str(label), "probabilities": dict(zip(classes, p)), "model_version": version}
               for label, p in zip(predictions["label"], probs)]
    ids = [new_request_id() for _ in answers]
    plog.record(ids, rows, answers, wait=True)
    return ids


# -- readers --


def read_feedback(dir: str | Path) -> pd.DataFrame:
    """Every feedback row (request_id, label, time), oldest first."""
    if pgstore.is_postgres(dir):
        frames = [f for f in [pgstore.read_rows(str(dir), FEEDBACK)] if len(f)]
    else:
        fs, root = _filesystem(dir)
        frames = [f for f in (_read(fs, p) for p in _files(fs, root, FEEDBACK)) if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({"request_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
                             "time": pd.Series(dtype="datetime64[us, UTC]")})
    return pd.concat(frames, ignore_index=True).sort_values("time", kind="stable", ignore_index=True)


def read_log(dir: str | Path, since: datetime | None = None, until: datetime | None = None,
             last: int | None = None, model_version: str | None = None,
             columns: Sequence[str] | None = None, model_name: str | None = None) -> pd.DataFrame:
    """Prediction rows in time order (`since` <= time < `until`, of `model_version` and `model_name`,
    the `last` n), with `true_label` from the feedback (the latest per request id; NaN where none
    came). `columns` limits what is read (the base columns are always read). Several models may
    share a folder: give `model_name` with `model_version`."""
    wanted = None if columns is None else list(dict.fromkeys([*BASE_COLUMNS, *columns]))
    if pgstore.is_postgres(dir):  # the same filters, in SQL
        frames = [f for f in [pgstore.read_rows(
            str(dir), PREDICTIONS, wanted, since=_utc(since), until=_utc(until), last=last,
            model_version=None if model_version is None else str(model_version), model_name=model_name)] if len(f)]
    else:
        fs, root = _filesystem(dir)
        frames = [f for f in (_read(fs, p, wanted) for p in _files(fs, root, PREDICTIONS)) if f is not None and len(f)]
    if frames:
        frame = pd.concat(frames, ignore_index=True)
    else:
        empty = {c: pd.Series(dtype="datetime64[us, UTC]" if c == "time" else object if c in BASE_COLUMNS
                              else float) for c in (*BASE_COLUMNS, *SUMMARY_COLUMNS)}
        frame = pd.DataFrame(empty if wanted is None else {c: empty.get(c, pd.Series(dtype=float)) for c in wanted})
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame["time"] >= _utc(since)
    if until is not None:
        keep &= frame["time"] < _utc(until)
    if model_version is not None:
        keep &= frame["model_version"] == str(model_version)
    if model_name is not None:
        keep &= frame["model_name"] == model_name
    frame = frame[keep].sort_values("time", kind="stable", ignore_index=True)
    if last is not None:
        frame = frame.tail(max(0, last)).reset_index(drop=True)
    feedback = read_feedback(dir).drop_duplicates("request_id", keep="last")
    frame["true_label"] = frame["request_id"].map(feedback.set_index("request_id")["label"])
    return frame


def logged_request_ids(dir: str | Path, ids: Iterable[str]) -> set[str]:
    """Which of `ids` the prediction log holds (reads only its request_id column)."""
    wanted = set(ids)
    if pgstore.is_postgres(dir):
        return pgstore.logged_ids(str(dir), wanted)
    fs, root = _filesystem(dir)
    found: set[str] = set()
    for path in _files(fs, root, PREDICTIONS):
        frame = _read(fs, path, ["request_id"])
        if frame is not None:
            found |= wanted & set(frame["request_id"])
        if found == wanted:
            break
    return found


def live_metrics(frame: pd.DataFrame) -> dict | None:
    """{"n", "accuracy", "macro_f1"} over the rows that have a `true_label`; None when none has."""
    from mmops.evaluate.metrics import classification_metrics

    if "true_label" not in frame:
        return None
    labelled = frame[frame["true_label"].notna()]
    if labelled.empty:
        return None
    return {"n": int(len(labelled)),
            **classification_metrics(labelled["true_label"].astype(str), labelled["label"].astype(str))}


# -- what a server keeps in memory --


class RecentRequests:
    """The last `size` request ids a server issued -> the model version that answered (an LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, str | None] = OrderedDict()

    def add(self, ids: Iterable[str], version: str | None) -> None:
        for request_id in ids:
            self._ids[request_id] = version
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


class LogStatus:
    """For /metrics: live accuracy of one model's version from the log's feedback (recomputed at most
    every `min_interval_s`, and only when the log changed), and the last `drift.json` (re-read when
    its modification time changes)."""

    def __init__(self, dir: str | Path, model_name: str | None = None, min_interval_s: float = 30.0) -> None:
        self.dir = resolve_dir(dir)
        self.model_name = model_name
        self.min_interval_s = min_interval_s
        self.live: dict | None = None
        self.drift: dict | None = None
        self._live_key: tuple | None = None
        self._live_at = -math.inf
        self._drift_mtime: Any = None

    def refresh(self, model_version: str | None, stamp: Any = None) -> None:
        """Update `live` (for `model_version`; `stamp` changes when the log does) and `drift`."""
        key = (model_version, stamp)
        if key != self._live_key and time.monotonic() - self._live_at >= self.min_interval_s:
            try:
                frame = read_log(self.dir, model_version=model_version, model_name=self.model_name, columns=["label"])
                self.live = live_metrics(frame)
                self._live_key, self._live_at = key, time.monotonic()
            except Exception as err:
                log.warning("live metrics from %s failed (%s: %s)", pgstore.redact(self.dir), type(err).__name__, err)
        self._refresh_drift()

    def _refresh_drift(self) -> None:
        """Re-read drift.json when its stamp changed: a file's mtime, a PostgreSQL document's version."""

        def read_file() -> bytes:
            with fs.open_input_stream(path) as f:
                return f.read()

        try:
            if pgstore.is_postgres(self.dir):
                found = pgstore.read_document(self.dir, DRIFT_FILE)
                stamp, read = (found[1], lambda: found[0]) if found else (None, None)
            else:
                fs, root = _filesystem(self.dir)
                path = f"{root}/{DRIFT_FILE}"
                info = fs.get_file_info(path)
                stamp, read = (info.mtime, read_file) if info.type == pafs.FileType.File else (None, None)
            if stamp is None:
                self.drift, self._drift_mtime = None, None
            elif stamp != self._drift_mtime:
                self.drift, self._drift_mtime = json.loads(read()), stamp
        except (OSError, ValueError) as err:  # half-written or unreadable: keep the last one
            log.warning("cannot read %s in %s (%s: %s)", DRIFT_FILE, pgstore.redact(self.dir), type(err).__name__, err)
