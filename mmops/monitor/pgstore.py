"""The prediction log in PostgreSQL: `monitor.log.dir` = `postgresql://user@host:port/dbname`.

The password comes from the URI or, better, from PGPASSWORD / ~/.pgpass (libpq reads them); other
libpq parameters (`?sslmode=require`, `connect_timeout`) pass through. `?table_prefix=NAME`
(default `mmops_log`) names three tables, each created on first use:

    NAME_predictions   id, then the columns of the first rows written (request_id, time, model_name,
                       model_version, label, probabilities, SUMMARY_COLUMNS...); columns that later
                       rows bring (text, image_sha256, audio_sha256 with raw_inputs) are added then.
                       `p.<class>` columns are stored as one `probabilities` json object (each model
                       has its own classes; json, not jsonb, keeps the class order) and expanded back.
    NAME_feedback      id, request_id, label, time
    NAME_documents     name, body, version, updated: drift.json

Rotation here means a bound on rows: a write (one COPY, then one DELETE) that leaves more than
`max_rows_per_file * max_files` rows of its kind deletes the oldest by time down to a file's worth
fewer, as the Parquet log drops its oldest file; between rotations a write costs no scan. Readers
return the frames the Parquet readers build, filtering in SQL.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

SCHEMES = ("postgresql", "postgres")
DEFAULT_PREFIX = "mmops_log"
PROBABILITIES = "probabilities"  # the json column holding the p.<class> columns
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_SQL_TYPES = {pa.string(): "text", pa.float64(): "double precision", pa.timestamp("us", tz="UTC"): "timestamptz"}
_TEXT, _FLOAT8, _TIMESTAMPTZ = 25, 701, 1184  # type OIDs in cursor.description
_ARROW_TYPES = {_TEXT: pa.string(), _FLOAT8: pa.float64(), _TIMESTAMPTZ: pa.timestamp("us", tz="UTC")}


class PgLogError(OSError):
    """The PostgreSQL log could not be reached or written; the message never holds the password."""


def is_postgres(dir: object) -> bool:
    """A postgresql:// or postgres:// URI (also SQLAlchemy's postgresql+psycopg2://, as MLflow's is written)."""
    scheme, sep, _ = str(dir).partition("://")
    return bool(sep) and scheme.lower().split("+")[0] in SCHEMES


def redact(dir: object) -> str:
    """`dir` with any password in its URI replaced by ***, for messages."""
    text = str(dir)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _dsn_and_prefix(uri: str) -> tuple[str, str]:
    """The libpq URI (table_prefix removed) and the table prefix."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = dict(query).get("table_prefix", DEFAULT_PREFIX)
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"table_prefix={prefix!r} in {redact(uri)}: use 1-40 letters, digits or _, not starting with a digit")
    rest = [(k, v) for k, v in query if k != "table_prefix"]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest))), prefix


def _table(uri: str, kind: str) -> sql.Identifier:
    return sql.Identifier(f"{_dsn_and_prefix(uri)[1]}_{kind}")


def _connect(uri: str):
    """An autocommit connection (each execute is one transaction) or a PgLogError that says what to check."""
    dsn, _ = _dsn_and_prefix(uri)
    given = dict(parse_qsl(urlsplit(dsn).query))
    extra = {k: v for k, v in {"connect_timeout": "10", "application_name": "mmops-prediction-log"}.items()
             if k not in given}
    try:
        conn = psycopg2.connect(dsn, **extra)
    except psycopg2.Error as err:
        raise PgLogError(f"cannot connect to the prediction log {redact(uri)}: {_scrub(err, uri)}; check the "
                         "host, port and database, and the password (in the URI, PGPASSWORD or ~/.pgpass)") from None
    conn.autocommit = True
    return conn


def _scrub(err: Exception, uri: str) -> str:
    """The error's text without the URI's password, should a driver ever echo it."""
    text = str(err).strip()
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text


@contextmanager
def _cursor(uri: str) -> Iterator[Any]:
    """A cursor on a fresh connection, closed after; database errors become PgLogError."""
    conn = _connect(uri)
    try:
        with closing(conn), conn.cursor() as cur:
            yield cur
    except psycopg2.Error as err:
        raise PgLogError(f"prediction log {redact(uri)}: {_scrub(err, uri)}") from None


def _column_sql(schema: pa.Schema) -> list[sql.Composable]:
    """Column definitions for `schema`, its p.<class> columns folded into one json column where the first stood."""
    out: list[sql.Composable] = []
    for field in schema:
        if field.name.startswith("p."):
            if field.name == next(n for n in schema.names if n.startswith("p.")):
                out.append(sql.SQL("{} json").format(sql.Identifier(PROBABILITIES)))
            continue
        if field.type not in _SQL_TYPES:
            raise TypeError(f"prediction log column {field.name!r} has type {field.type}; no PostgreSQL type for it")
        out.append(sql.SQL("{} {}").format(sql.Identifier(field.name), sql.SQL(_SQL_TYPES[field.type])))
    return out


class PgSink:
    """Rows of one kind -> one PostgreSQL table of at most `max_rows * max_files` rows (the interface
    of the Parquet `_Sink`). Connects on the first write, in whichever process writes: until then it
    holds plain fields only, so it pickles."""

    def __init__(self, uri: str, kind: str, max_rows: int, max_files: int) -> None:
        self.uri, self.kind = uri, kind
        self.limit = max_rows * max_files
        self.keep = max(self.limit - max_rows, max_rows)  # what a rotation leaves: a file's worth fewer
        self._conn: Any = None
        self._columns: set[str] = set()  # the table's columns, as far as this sink knows

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_conn": None, "_columns": set()}

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        while True:
            fresh = self._conn is None
            if fresh:
                self._conn = _connect(self.uri)
            try:
                with self._conn.cursor() as cur:
                    self._ensure_table(cur, table.schema)
                    self._insert(cur, table)
                return
            except psycopg2.Error as err:
                self._conn.close()
                self._conn, self._columns = None, set()
                # a kept connection the server dropped (restart, idle timeout): once more on a new one
                if fresh or not isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                    raise PgLogError(f"prediction log {redact(self.uri)}: {_scrub(err, self.uri)}") from None

    def _ensure_table(self, cur, schema: pa.Schema) -> None:
        """Create the table and its indexes, or add the columns `schema` brings, once per new column set."""
        wanted = {PROBABILITIES if n.startswith("p.") else n for n in schema.names}
        if wanted <= self._columns:
            return
        table = _table(self.uri, self.kind)
        name = table.strings[0]
        columns = _column_sql(schema)
        statements = [
            sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(sql.Literal(name)),  # concurrent writers
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, {})").format(table, sql.SQL(", ").join(columns)),
            *(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(table, c) for c in columns),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (time, id)").format(sql.Identifier(f"{name}_time"), table),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(sql.Identifier(f"{name}_request_id"), table),
        ]
        cur.execute(sql.SQL("; ").join(statements))  # one implicit transaction
        self._columns |= wanted

    def _insert(self, cur, table: pa.Table) -> None:
        """COPY every row in (CSV from Arrow: ~10x faster than an INSERT built in Python), then, past
        `limit` rows, DELETE all but the newest `keep`. max(id) - min(id) + 1 bounds the row count from
        two index probes, so the ordered scan that finds the cut runs about once per `max_rows` rows
        written, as the Parquet log drops a whole file."""
        classes = [n for n in table.column_names if n.startswith("p.")]
        if classes:
            probabilities = [json.dumps({c[2:]: None if p is None or math.isnan(p) else p  # NaN: not JSON
                                         for c, p in zip(classes, ps)})
                             for ps in zip(*table.select(classes).to_pydict().values())]
            table = table.drop_columns(classes).append_column(PROBABILITIES, pa.array(probabilities, pa.string()))
        data = io.BytesIO()
        pacsv.write_csv(table, data, pacsv.WriteOptions(include_header=False))  # null: empty; "": quoted
        data.seek(0)
        target = _table(self.uri, self.kind)
        cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, table.column_names))).as_string(cur), data)
        cur.execute(sql.SQL(
            "DELETE FROM {t} WHERE (SELECT max(id) - min(id) + 1 FROM {t}) > {limit} AND (time, id) <= "
            "(SELECT time, id FROM {t} ORDER BY time DESC, id DESC OFFSET {keep} LIMIT 1)"
        ).format(t=target, limit=sql.Literal(self.limit), keep=sql.Literal(self.keep)))


# -- readers: the frames the Parquet readers build --


def read_rows(uri: str, kind: str, columns: Sequence[str] | None = None, *, since: datetime | None = None,
              until: datetime | None = None, model_version: str | None = None, model_name: str | None = None,
              last: int | None = None) -> pd.DataFrame:
    """Rows of `kind` in time order (`since` <= time < `until`, of `model_version` and `model_name`,
    the `last` n), only the `columns` the table has (None: all; `p.<class>` columns expanded from
    the json); an empty frame when the table does not exist yet."""
    table = _table(uri, kind)
    with _cursor(uri) as cur:
        try:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(table))
        except psycopg2.errors.UndefinedTable:
            return pd.DataFrame()
        have = [d.name for d in cur.description if d.name != "id"]
        if columns is not None:
            probabilities = any(c.startswith("p.") for c in columns)
            have = [c for c in have if c in columns or (c == PROBABILITIES and probabilities)]
        where, args = [], []
        for column, op, value in (("time", ">=", since), ("time", "<", until),
                                  ("model_version", "=", model_version), ("model_name", "=", model_name)):
            if value is not None:
                where.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
                args.append(value.to_pydatetime() if isinstance(value, pd.Timestamp) else value)
        query = sql.SQL("SELECT {cols}, id FROM {t}{where} ORDER BY time DESC, id DESC{limit}").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, have)), t=table,
            where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
            limit=sql.SQL(" LIMIT {}").format(sql.Literal(max(0, last))) if last is not None else sql.SQL(""))
        cur.execute(query, args)
        rows = cur.fetchall()[::-1]  # newest first for LIMIT, then oldest first
        description = cur.description[:-1]
    return _frame(description, rows, columns)


def _frame(description, rows: list[tuple], columns: Sequence[str] | None) -> pd.DataFrame:
    """Fetched rows -> a frame typed as pyarrow reads the Parquet log (p.<class> columns expanded)."""
    arrays: dict[str, pa.Array] = {}
    for i, d in enumerate(description):
        values = [r[i] for r in rows]
        if d.name != PROBABILITIES:
            arrays[d.name] = pa.array(values, _ARROW_TYPES.get(d.type_code))
            continue
        dicts = [v if isinstance(v, dict) else json.loads(v) if v else {} for v in values]
        classes = list(dict.fromkeys(c for p in dicts for c in p))
        for c in classes:
            if columns is None or f"p.{c}" in columns:
                arrays[f"p.{c}"] = pa.array([p.get(c) for p in dicts], pa.float64())
    return pa.table(arrays).to_pandas() if arrays else pd.DataFrame()


def logged_ids(uri: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` the predictions table holds."""
    wanted = list(set(ids))
    with _cursor(uri) as cur:
        try:
            cur.execute(sql.SQL("SELECT DISTINCT request_id FROM {} WHERE request_id = ANY(%s)").format(
                _table(uri, "predictions")), (wanted,))
        except psycopg2.errors.UndefinedTable:
            return set()
        return {r[0] for r in cur.fetchall()}


def write_document(uri: str, name: str, text: str) -> None:
    """Store `text` as document `name` (replacing it); its stamp changes."""
    table = _table(uri, "documents")
    with _cursor(uri) as cur:
        cur.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (name text PRIMARY KEY, body text NOT NULL, version bigint NOT NULL, "
            "updated timestamptz NOT NULL); "
            "INSERT INTO {t} AS d VALUES (%s, %s, 1, clock_timestamp()) ON CONFLICT (name) DO UPDATE "
            "SET body = excluded.body, version = d.version + 1, updated = excluded.updated"
        ).format(t=table), (name, text))


def read_document(uri: str, name: str) -> tuple[str, tuple] | None:
    """(text, stamp) of document `name`, the stamp changing whenever it is rewritten; None when absent."""
    with _cursor(uri) as cur:
        try:
            cur.execute(sql.SQL("SELECT body, version, updated FROM {} WHERE name = %s").format(
                _table(uri, "documents")), (name,))
        except psycopg2.errors.UndefinedTable:
            return None
        found = cur.fetchone()
    return None if found is None else (found[0], (found[1], found[2]))
