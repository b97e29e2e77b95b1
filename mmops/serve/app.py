"""The HTTP service: `create_app(settings)` builds a FastAPI app that serves one registered model.

    POST /predict   JSON {"instances": [{"text": str, "image": base64, "audio": base64}, ...]}
                    or multipart/form-data with fields text, image, audio (one instance)
                    -> {"predictions": [{"request_id", "label", "probabilities": {class: p}, "model_version"}]}
    POST /feedback  JSON {"request_id": str, "label": str} or {"feedback": [{...}, ...]}: the true labels
                    -> {"accepted": n}; 404 for an id this server did not issue, 422 for an unknown class
    GET  /health    liveness + the version being served (no token needed)
    GET  /metadata  name, version, alias, classes, modalities, input contract, limits
    GET  /metrics   Prometheus text: requests by status, latency, batch sizes, model version

This module is the wiring. Requests are checked before they reach the model (`inputs.py`); with
a bearer token set every endpoint but /health wants it (`auth.py`); counters live in
`metrics.py`. Errors never carry a stack trace. Predictions go through `predict_frame`, the
training preprocessing; concurrent requests share one model call (`batching.py`); a background
watcher swaps in a new champion without a restart (`reloader.py`).

Every answered instance gets a `request_id` and, unless `settings.prediction_log.enabled` is off,
is appended to the prediction log (`mmops.monitor.log`: summary features, never raw media) by the
log's writer process: the request path only queues it. /feedback joins true labels to those ids: an
id is known while it is among the last `feedback_ids` this server issued, or when the log on disk
holds it (predictions from before a restart, or from `mmops predict`); feedback for any other id
is refused (404). /metrics adds live accuracy from that feedback and the last drift report.

The event loop only routes: media checks run on a small decode pool, model calls on the model
thread, so /health answers while a heavy request runs. A /predict beyond
`max_concurrent_requests` in flight gets 503 at once; one not answered within
`request_timeout_s` gets 504.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mmops.inference.predict import predict_rows as inference_predict_rows
from mmops.monitor.log import (
    LogStatus,
    PredictionLog,
    RecentRequests,
    logged_request_ids,
    new_request_id,
)
from mmops.monitor.pgstore import redact
from mmops.serve.auth import check_token, resolve_token
from mmops.serve.batching import MicroBatcher, Overloaded, ShuttingDown
from mmops.serve.inputs import BadInput, parse_json, read_body, read_rows
from mmops.serve.metrics import Metrics, MetricsMiddleware
from mmops.serve.reloader import (
    ChampionWatcher,
    ModelHolder,
    ModelSource,
    RegistrySource,
    ServedModel,
    load_and_warm,
    retire,
)
from mmops.serve.settings import ServeSettings

log = logging.getLogger("mmops.serve")

MAX_FEEDBACK_ITEMS = 10_000  # labels per /feedback request (413 above)


def predict_rows(served: ServedModel, rows: list[dict]) -> list[dict]:
    """Rows -> prediction dicts: the shared model call the evaluate stage times for the latency gate."""
    return inference_predict_rows(served.loaded, rows, served.version)


def input_contract(served: ServedModel) -> dict:
    """What /predict accepts, for /metadata."""
    return {
        "json": {"instances": [{"text": "string (optional)", "image": "base64 image bytes (optional)",
                                "audio": "base64 audio bytes (optional)"}]},
        "multipart": {"text": "form field", "image": "file", "audio": "file"},
        "used_modalities": served.modalities,
        "missing_modalities": "allowed: absent, null or empty means missing; at least one input per instance",
        "image_formats": "anything Pillow decodes (PNG, JPEG, ...)",
        "audio_formats": "anything libsndfile decodes (WAV, FLAC, OGG, MP3)",
    }


def feedback_items(payload: Any, classes: list[str]) -> list[tuple[str, str, str]]:
    """A /feedback body -> (where, request_id, label) per label; 422/413 naming the item and field."""
    if isinstance(payload, dict) and "feedback" in payload:
        if set(payload) != {"feedback"} or not isinstance(payload["feedback"], list):
            raise BadInput(422, "body must be {\"feedback\": [{\"request_id\": ..., \"label\": ...}, ...]}")
        items, where = payload["feedback"], "feedback[{}]"
    else:
        items, where = [payload], "body"
    if not items:
        raise BadInput(422, "'feedback' is empty")
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise BadInput(413, f"{len(items)} labels in one request; the limit is {MAX_FEEDBACK_ITEMS}")
    out = []
    for i, item in enumerate(items):
        at = where.format(i)
        if not isinstance(item, dict) or set(item) != {"request_id", "label"}:
            raise BadInput(422, f"{at}: must be an object with exactly request_id and label")
        request_id, label = item["request_id"], item["label"]
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
            raise BadInput(422, f"{at}.request_id: expected the request_id string a prediction returned")
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)  # classes are strings; a digit class may come as a number
        if not isinstance(label, str):
            raise BadInput(422, f"{at}.label: expected a class name (string)")
        if label not in classes:
            shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise BadInput(422, f"{at}.label: unknown class {label[:100]!r}; the model's classes are {shown}")
        out.append((at, request_id, label))
    return out


def create_app(settings: ServeSettings | None = None, source: ModelSource | None = None) -> FastAPI:
    """Build the service. `source` defaults to `models:/<model_name>@<alias>` in the registry."""
    settings = settings or ServeSettings.from_env()
    token = resolve_token(settings.token)
    metrics = Metrics()
    state: dict[str, Any] = {}
    log_config = settings.prediction_log

    def run_batch(rows: list[dict]) -> list[dict]:
        served = state["holder"].current  # taken once: a swap mid-batch does not affect this batch
        return predict_rows(served, rows)

    def set_threads() -> None:
        import torch

        torch.set_num_threads(settings.torch_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        set_threads()
        src = source or RegistrySource(settings.model_name, settings.alias, backend=settings.backend)
        version = await run_in_threadpool(src.current_version)
        served = await run_in_threadpool(load_and_warm, src, version)
        holder = ModelHolder(served)
        metrics.set_model(served)
        batcher = MicroBatcher(run_batch, settings.max_batch_size, settings.max_wait_ms, settings.max_queue_rows,
                               metrics.observe_batch, thread_initializer=set_threads)
        decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="mmops-decode")
        watcher = ChampionWatcher(
            src, holder, settings.poll_interval_s,
            on_swap=lambda old, new: (metrics.set_model(new), metrics.reloads.labels("swapped").inc()),
            on_error=lambda stage, err: metrics.reloads.labels(f"{stage}_failed").inc(),
        )
        plog = PredictionLog(log_config, served.name) if log_config.enabled else None
        state.update(holder=holder, batcher=batcher, watcher=watcher, source=src, decoder=decoder, inflight=0,
                     log=plog, recent=RecentRequests(settings.feedback_ids),
                     log_status=LogStatus(log_config.dir, served.name) if plog else None)
        await batcher.start()
        watcher.start()
        log.info("serving %s v%s (%s)", served.name, served.version, served.uri)
        try:
            yield
        finally:
            watcher.stop()
            await batcher.stop()
            decoder.shutdown(wait=False, cancel_futures=True)
            if plog is not None:
                await run_in_threadpool(plog.close)  # what is queued is written
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
        """Liveness, the served version and the one the alias names (they differ while a new
        champion is refused, e.g. a tampered artifact: the old one keeps serving)."""
        served = state["holder"].current
        sync = state["watcher"].status()
        return {"status": "ok", "model": served.name, "version": served.version,
                "desired_version": sync["desired_version"], "in_sync": sync["in_sync"]}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict:
        check_token(request, token)
        served = state["holder"].current
        return {
            "name": served.name,
            "version": served.version,
            "alias": served.alias,
            "uri": served.uri,
            "backend": served.backend,
            "classes": served.classes,
            "modalities": served.modalities,
            "input": input_contract(served),
            "output": {"predictions": [{"request_id": "32 hex characters (for POST /feedback)",
                                        "label": "class name", "probabilities": {"<class>": "float"},
                                        "model_version": "string"}]},
            "feedback": {"json": {"request_id": "a prediction's request_id", "label": "the true class"},
                         "or": {"feedback": [{"request_id": "...", "label": "..."}]},
                         "answer": {"accepted": "int"}, "max_items": MAX_FEEDBACK_ITEMS,
                         "enabled": state["log"] is not None},
            "prediction_log": {"enabled": log_config.enabled, "dir": redact(state["log"].dir) if state["log"] else None,
                               "raw_inputs": log_config.raw_inputs, "max_rows_per_file": log_config.max_rows_per_file,
                               "max_files": log_config.max_files},
            "limits": {"max_body_bytes": settings.max_body_bytes, "max_instances": settings.max_instances,
                       "max_image_pixels": settings.max_image_pixels,
                       "max_audio_seconds": settings.max_audio_seconds,
                       "max_audio_channels": settings.max_audio_channels,
                       "max_text_chars": settings.max_text_chars,
                       "max_concurrent_requests": settings.max_concurrent_requests,
                       "request_timeout_s": settings.request_timeout_s},
            "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
            "hot_reload": {"poll_interval_s": settings.poll_interval_s, **state["watcher"].status()},
            "auth": "bearer" if token else "none",
        }

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        check_token(request, token)
        metrics.queued.set(state["batcher"].queued_rows)
        metrics.in_sync.set(1.0 if state["watcher"].status()["in_sync"] else 0.0)
        plog, status = state["log"], state["log_status"]
        if plog is not None:
            stats = plog.stats()
            await run_in_threadpool(status.refresh, state["holder"].current.version, (stats["rows"], stats["feedback"]))
            metrics.monitor.update(stats, status.live, status.drift)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def answer(request: Request) -> tuple[list[dict], list[dict]]:
        batcher: MicroBatcher = state["batcher"]
        with batcher.incoming():
            rows = await read_rows(request, settings, state["decoder"])
        try:
            return rows, await batcher.submit(rows)
        except Overloaded:
            raise HTTPException(503, "server is overloaded; retry later", headers={"Retry-After": "1"}) from None
        except ShuttingDown:
            raise HTTPException(503, "server is shutting down") from None

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        check_token(request, token)
        if state["inflight"] >= settings.max_concurrent_requests:
            raise HTTPException(503, f"{state['inflight']} requests in flight (limit "
                                     f"{settings.max_concurrent_requests}); retry later", headers={"Retry-After": "1"})
        state["inflight"] += 1
        metrics.inflight.set(state["inflight"])
        try:
            rows, predictions = await asyncio.wait_for(answer(request), settings.request_timeout_s)
        except TimeoutError:  # the request's decode or model call may still finish; its answer is dropped
            raise HTTPException(504, f"request not answered within {settings.request_timeout_s:g} s") from None
        finally:
            state["inflight"] -= 1
            metrics.inflight.set(state["inflight"])
        for p in predictions:
            metrics.instances.labels(p["label"]).inc()
        ids = [new_request_id() for _ in predictions]
        if state["log"] is not None:
            state["log"].record(ids, rows, predictions)  # a queue put: summaries and files in the log's writer process
            state["recent"].add(ids, predictions[0]["model_version"] if predictions else None)
        answered = [{"request_id": i, **p} for i, p in zip(ids, predictions)]
        return Response(json.dumps({"predictions": answered}).encode(), media_type="application/json")

    @app.post("/feedback")
    async def feedback(request: Request) -> dict:
        check_token(request, token)
        plog: PredictionLog | None = state["log"]
        if plog is None:
            raise HTTPException(409, "the prediction log is off (mmops serve --no-log or monitor.log.enabled: "
                                     "false): feedback has nowhere to go")
        body = await read_body(request, settings.max_body_bytes)
        items = feedback_items(parse_json(body), state["holder"].current.classes)
        unseen = {rid for _, rid, _ in items if rid not in state["recent"]}
        if unseen:  # older than memory: the log on disk decides
            unseen -= await run_in_threadpool(logged_request_ids, log_config.dir, unseen)
        for where, rid, _ in items:
            if rid in unseen:
                raise HTTPException(404, f"{where}.request_id: {rid!r} was not issued by this server (not among "
                                         f"its last {settings.feedback_ids:,} predictions nor in the prediction log)")
        accepted = sum(plog.feedback(rid, label) for _, rid, label in items)
        metrics.feedback.inc(accepted)
        if accepted < len(items):
            raise HTTPException(503, f"prediction log queue full: {accepted} of {len(items)} labels stored; retry "
                                     "the rest (the last label per request id wins)", headers={"Retry-After": "1"})
        return {"accepted": accepted}

    return app


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info",
          access_log: bool = False, source: ModelSource | None = None, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None) -> None:
    """Run the app under uvicorn until SIGINT/SIGTERM (graceful: in-flight requests finish).

    With a certificate and key it speaks HTTPS only: a plain-HTTP client fails the TLS handshake.
    """
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings, source), host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=30, server_header=False, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)

