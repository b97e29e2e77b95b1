"""The HTTP service: `create_app(settings)` builds a FastAPI app that serves one registered model.

    POST /predict   JSON {"instances": [{"text": str, "image": base64, "audio": base64}, ...]}
                    or multipart/form-data with fields text, image, audio (one instance)
                    -> {"predictions": [{"label", "probabilities": {class: p}, "model_version"}]}
    GET  /health    liveness + the version being served (no token needed)
    GET  /metadata  name, version, alias, classes, modalities, input contract, limits
    GET  /metrics   Prometheus text: requests by status, latency, batch sizes, model version

Every request is checked before it reaches the model (size, JSON types, base64, does the image
or audio decode), and answered with a 4xx whose message names the instance and the field. When
`MMOPS_SERVE_TOKEN` is set every endpoint but /health wants `Authorization: Bearer <token>`.
Errors never carry a stack trace. Predictions go through `predict_frame`, the training
preprocessing; concurrent requests share one model call (`batching.py`); a background watcher
swaps in a new champion without a restart (`reloader.py`).
"""

from __future__ import annotations

import binascii
import hmac
import io
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mmops.serve.batching import MicroBatcher, Overloaded, ShuttingDown
from mmops.serve.reloader import (
    MODALITIES,
    ChampionWatcher,
    ModelHolder,
    ModelSource,
    RegistrySource,
    ServedModel,
    load_and_warm,
    retire,
)

log = logging.getLogger("mmops.serve")

TOKEN_ENV = "MMOPS_SERVE_TOKEN"
ENV_PREFIX = "MMOPS_SERVE_"
ENDPOINTS = ("/predict", "/health", "/metadata", "/metrics")
INLINE_BODY_BYTES = 512 * 1024


class ServeSettings(BaseModel):
    """Serving knobs. Each can be set by env `MMOPS_SERVE_<NAME>` (e.g. MMOPS_SERVE_MAX_BODY_BYTES)."""

    model_name: str = Field("mmops-classifier", min_length=1)
    alias: str = Field("champion", min_length=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="request body cap (413 above)")
    max_instances: int = Field(64, gt=0, description="instances per request (413 above)")
    max_batch_size: int = Field(32, gt=0, description="rows per model call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits for more requests (under load)")
    model_thread: bool = Field(False, description="model calls on their own thread (many-core machines)")
    max_queue_rows: int = Field(1024, gt=0, description="rows waiting for the model (503 above)")
    torch_threads: int = Field(
        default_factory=lambda: max(1, min(4, (os.cpu_count() or 2) // 2)),
        gt=0, description="intra-op threads of the model call (oversubscribed OpenMP is very slow)",
    )
    poll_interval_s: float = Field(10.0, ge=0, description="champion check period; 0 = no hot reload")
    max_image_pixels: int = Field(16_000_000, gt=0)
    max_audio_seconds: float = Field(60.0, gt=0)
    token: str | None = Field(None, description=f"bearer token; default from env {TOKEN_ENV}", repr=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> "ServeSettings":
        """Defaults, then `MMOPS_SERVE_*` env vars, then explicit overrides (None = not given)."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(ENV_PREFIX + name.upper())
            if env not in (None, ""):
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


class BadInput(HTTPException):
    """A client error with a message that names the instance and field; never echoes the data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)


# ---------------------------------------------------------------------------------------------
# Input checks: JSON shape and types, base64, media decoding. Pure functions, unit-tested.


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def parse_json_instances(payload: Any, max_instances: int) -> list[dict]:
    """`{"instances": [...]}` -> list of {field: str|None}; 422/413 naming the offending spot."""
    if not isinstance(payload, dict):
        raise BadInput(422, f"body must be a JSON object with an 'instances' array, got {_type_name(payload)}")
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise BadInput(422, f"unknown top-level field {unknown[0]!r} (expected 'instances')")
    if "instances" not in payload:
        raise BadInput(422, "missing 'instances' (an array of objects with text, image, audio)")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadInput(422, f"'instances' must be an array, got {_type_name(instances)}")
    if not instances:
        raise BadInput(422, "'instances' is empty")
    if len(instances) > max_instances:
        raise BadInput(413, f"{len(instances)} instances in one request; the limit is {max_instances}")
    out = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise BadInput(422, f"instances[{i}]: must be an object, got {_type_name(inst)}")
        extra = sorted(set(inst) - set(MODALITIES))
        if extra:
            raise BadInput(422, f"instances[{i}].{extra[0]}: unknown field (expected text, image, audio)")
        row = {}
        for name in MODALITIES:
            value = inst.get(name)
            if value is not None and not isinstance(value, str):
                kind = "a string" if name == "text" else "a base64 string"
                raise BadInput(422, f"instances[{i}].{name}: expected {kind} or null, got {_type_name(value)}")
            row[name] = value
        out.append(row)
    return out


def decode_base64(value: str, where: str) -> bytes:
    """Standard base64 (line breaks and a `data:...;base64,` prefix allowed) -> bytes."""
    if value.startswith("data:"):
        head, sep, value = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise BadInput(422, f"{where}: a data URI must be ';base64,' encoded")
    for attempt in (value, "".join(value.split())):  # then MIME-style, line breaks stripped
        try:
            return binascii.a2b_base64(attempt.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            continue
    raise BadInput(422, f"{where}: not valid base64")


def check_image(data: bytes, where: str, max_pixels: int) -> None:
    """The bytes decode as an image of at most `max_pixels` pixels (else 422)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise BadInput(422, f"{where}: image is {width}x{height}, above the {max_pixels}-pixel limit")
            img.load()
    except BadInput:
        raise
    except Exception:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise BadInput(422, f"{where}: not a decodable image") from None


def check_audio(data: bytes, where: str, max_seconds: float) -> None:
    """The bytes decode as audio (WAV/FLAC/OGG/MP3) of at most `max_seconds` (else 422)."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0 or f.frames <= 0:
                raise BadInput(422, f"{where}: audio has no samples")
            if f.frames / f.samplerate > max_seconds:
                raise BadInput(422, f"{where}: audio is {f.frames / f.samplerate:.1f} s, above the "
                                    f"{max_seconds:g} s limit")
            f.read(frames=min(1024, f.frames), dtype="float32")  # the header parsed; samples decode
    except BadInput:
        raise
    except Exception:
        raise BadInput(422, f"{where}: not decodable audio") from None


def decode_instance(i: int, raw: dict, settings: ServeSettings, base64_media: bool = True) -> dict:
    """One checked instance -> the row `predict_frame` takes (text str, image/audio bytes|None)."""
    row: dict[str, Any] = {"text": raw.get("text") or ""}
    for name, check, limit in (
        ("image", check_image, settings.max_image_pixels),
        ("audio", check_audio, settings.max_audio_seconds),
    ):
        value = raw.get(name)
        if value is None or (isinstance(value, (str, bytes)) and len(value) == 0):
            row[name] = None
            continue
        where = f"instances[{i}].{name}"
        data = decode_base64(value, where) if base64_media else bytes(value)
        if not data:
            row[name] = None
            continue
        check(data, where, limit)
        row[name] = data
    if not row["text"].strip() and row["image"] is None and row["audio"] is None:
        raise BadInput(422, f"instances[{i}]: no input (give at least one of text, image, audio)")
    return row


# ---------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """Prometheus metrics in the app's own registry (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mmops_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("mmops_request_latency_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.batch_rows = Histogram("mmops_batch_size", "rows per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_requests = Histogram("mmops_batch_requests", "requests merged into one model call",
                                        buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.model_seconds = Histogram("mmops_model_call_seconds", "time of one model call (featurize + forward)",
                                       buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
                                       registry=self.registry)
        self.instances = Counter("mmops_predictions", "predicted instances by label", ["label"],
                                 registry=self.registry)
        self.model_version = Gauge("mmops_model_version", "registry version being served",
                                   ["model", "alias"], registry=self.registry)
        self.model_info = Gauge("mmops_model_info", "the model being served (value 1)",
                                ["model", "alias", "version"], registry=self.registry)
        self.reloads = Counter("mmops_model_reloads", "champion changes picked up by the watcher",
                               ["result"], registry=self.registry)
        self.queued = Gauge("mmops_queued_rows", "rows waiting for the model", registry=self.registry)

    def set_model(self, served: ServedModel) -> None:
        alias = served.alias or ""
        self.model_info.clear()
        self.model_info.labels(served.name, alias, served.version).set(1)
        try:
            self.model_version.labels(served.name, alias).set(float(served.version))
        except ValueError:  # a local folder has no numeric version
            self.model_version.labels(served.name, alias).set(-1)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI: count every response by status and time it (cheap, no body buffering)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# The app


def predict_rows(served: ServedModel, rows: list[dict]) -> list[dict]:
    """Rows -> prediction dicts through `predict_frame` (the pyfunc's and training's path)."""
    from mmops.registry.pyfunc import predict_frame

    frame = pd.DataFrame(rows, columns=list(MODALITIES))
    out = predict_frame(served.loaded, frame, batch_size=max(len(rows), 1))
    classes = served.classes
    probs = out[classes].to_numpy(dtype=np.float64)
    return [
        {"label": str(label), "probabilities": dict(zip(classes, map(float, p))), "model_version": served.version}
        for label, p in zip(out["label"], probs)
    ]


def input_contract(served: ServedModel, settings: ServeSettings) -> dict:
    return {
        "json": {"instances": [{"text": "string (optional)", "image": "base64 image bytes (optional)",
                                "audio": "base64 audio bytes (optional)"}]},
        "multipart": {"text": "form field", "image": "file", "audio": "file"},
        "used_modalities": served.modalities,
        "missing_modalities": "allowed: absent, null or empty means missing; at least one input per instance",
        "image_formats": "anything Pillow decodes (PNG, JPEG, ...)",
        "audio_formats": "anything libsndfile decodes (WAV, FLAC, OGG, MP3)",
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadInput(400, "invalid Content-Length") from None
        if size > limit:
            raise BadInput(413, f"payload is {size} bytes; the limit is {limit}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadInput(413, f"payload exceeds the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's cache: request.form() parses from it
    return body


async def parse_multipart(request: Request, settings: ServeSettings) -> tuple[dict, bool]:
    """One instance from a form: text (a field or a UTF-8 file), image and audio (file uploads)."""
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=3, max_fields=6, max_part_size=settings.max_body_bytes)
    except HTTPException as err:  # starlette answers a malformed form with HTTPException(400)
        raise BadInput(400, f"malformed multipart body: {err.detail}") from None
    except Exception:
        raise BadInput(400, "malformed multipart body") from None
    unknown = sorted(set(form.keys()) - set(MODALITIES))
    if unknown:
        raise BadInput(422, f"instances[0].{unknown[0]}: unknown form field (expected text, image, audio)")
    raw: dict[str, Any] = {}
    try:
        for name in MODALITIES:
            value = form.get(name)
            if isinstance(value, UploadFile):
                data = await value.read()
                if name == "text":
                    try:
                        raw[name] = data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise BadInput(422, "instances[0].text: not UTF-8") from None
                else:
                    raw[name] = data
            elif value is not None and name != "text":
                raise BadInput(422, f"instances[0].{name}: expected a file upload")
            else:
                raw[name] = value
    finally:
        await form.close()  # uploads may be spooled to temp files
    return raw, False


def _check_token(request: Request, token: str | None) -> None:
    if not token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def create_app(settings: ServeSettings | None = None, source: ModelSource | None = None) -> FastAPI:
    """Build the service. `source` defaults to `models:/<model_name>@<alias>` in the registry."""
    settings = settings or ServeSettings.from_env()
    token = settings.token if settings.token is not None else (os.environ.get(TOKEN_ENV) or None)
    metrics = Metrics()
    state: dict[str, Any] = {}

    def run_batch(rows: list[dict]) -> list[dict]:
        served = state["holder"].current  # taken once: a swap mid-batch does not affect this batch
        return predict_rows(served, rows)

    def on_batch(rows: int, requests: int, seconds: float) -> None:
        metrics.batch_rows.observe(rows)
        metrics.batch_requests.observe(requests)
        metrics.model_seconds.observe(seconds)

    def set_threads() -> None:
        import torch

        torch.set_num_threads(settings.torch_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        set_threads()
        src = source or RegistrySource(settings.model_name, settings.alias)
        version = await run_in_threadpool(src.current_version)
        served = await run_in_threadpool(load_and_warm, src, version)
        holder = ModelHolder(served)
        metrics.set_model(served)
        batcher = MicroBatcher(run_batch, settings.max_batch_size, settings.max_wait_ms, settings.max_queue_rows,
                               on_batch, thread_initializer=set_threads,
                               model_thread=settings.model_thread)
        watcher = ChampionWatcher(
            src, holder, settings.poll_interval_s,
            on_swap=lambda old, new: (metrics.set_model(new), metrics.reloads.labels("swapped").inc()),
            on_error=lambda stage, err: metrics.reloads.labels(f"{stage}_failed").inc(),
        )
        state.update(holder=holder, batcher=batcher, watcher=watcher, source=src)
        await batcher.start()
        watcher.start()
        log.info("serving %s v%s (%s)", served.name, served.version, served.uri)
        try:
            yield
        finally:
            watcher.stop()
            await batcher.stop()
            retire(holder.current)

    app = FastAPI(title="mmops model server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.serve = state
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.get("/health")
    async def health() -> dict:
        served = state["holder"].current
        return {"status": "ok", "model": served.name, "version": served.version}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict:
        _check_token(request, token)
        served = state["holder"].current
        return {
            "name": served.name,
            "version": served.version,
            "alias": served.alias,
            "uri": served.uri,
            "classes": served.classes,
            "modalities": served.modalities,
            "input": input_contract(served, settings),
            "output": {"predictions": [{"label": "class name", "probabilities": {"<class>": "float"},
                                        "model_version": "string"}]},
            "limits": {"max_body_bytes": settings.max_body_bytes, "max_instances": settings.max_instances,
                       "max_image_pixels": settings.max_image_pixels,
                       "max_audio_seconds": settings.max_audio_seconds},
            "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
            "hot_reload": {"poll_interval_s": settings.poll_interval_s},
            "auth": "bearer" if token else "none",
        }

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        _check_token(request, token)
        metrics.queued.set(state["batcher"].queued_rows)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def read_rows(request: Request) -> list[dict]:
        body = await read_body(request, settings.max_body_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raw, base64_media = await parse_multipart(request, settings)
            instances = [raw]
        elif ctype in ("application/json", "") or ctype.endswith("+json"):
            try:
                if len(body) <= INLINE_BODY_BYTES:
                    payload = json.loads(body)
                else:
                    payload = await run_in_threadpool(json.loads, body)
            except (ValueError, UnicodeDecodeError):
                raise BadInput(400, "body is not valid JSON") from None
            instances, base64_media = parse_json_instances(payload, settings.max_instances), True
        else:
            raise BadInput(415, f"unsupported content type {ctype!r}: use application/json or multipart/form-data")

        def decode_all() -> list[dict]:
            return [decode_instance(i, raw, settings, base64_media) for i, raw in enumerate(instances)]

        # Small bodies are checked inline (a thread hop costs more than the check); big ones on
        # a worker thread so one large upload does not stall the event loop.
        return decode_all() if len(body) <= INLINE_BODY_BYTES else await run_in_threadpool(decode_all)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        _check_token(request, token)
        batcher: MicroBatcher = state["batcher"]
        with batcher.incoming():
            rows = await read_rows(request)
        try:
            predictions = await batcher.submit(rows)
        except Overloaded:
            raise HTTPException(503, "server is overloaded; retry later", headers={"Retry-After": "1"}) from None
        except ShuttingDown:
            raise HTTPException(503, "server is shutting down") from None
        for p in predictions:
            metrics.instances.labels(p["label"]).inc()
        return Response(json.dumps({"predictions": predictions}).encode(), media_type="application/json")

    return app


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info",
          access_log: bool = False, source: ModelSource | None = None) -> None:
    """Run the app under uvicorn until SIGINT/SIGTERM (graceful: in-flight requests finish)."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings, source), host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=30, server_header=False)

