"""The HTTP service: `create_app(settings)` builds a FastAPI app that serves one registered model.

    POST /predict   JSON {"instances": [{"text": str, "image": base64, "audio": base64}, ...]}
                    or multipart/form-data with fields text, image, audio (one instance)
                    -> {"predictions": [{"label", "probabilities": {class: p}, "model_version"}]}
    GET  /health    liveness + the version being served (no token needed)
    GET  /metadata  name, version, alias, classes, modalities, input contract, limits
    GET  /metrics   Prometheus text: requests by status, latency, batch sizes, model version

This module is the wiring. Requests are checked before they reach the model (`inputs.py`); with
a bearer token set every endpoint but /health wants it (`auth.py`); counters live in
`metrics.py`. Errors never carry a stack trace. Predictions go through `predict_frame`, the
training preprocessing; concurrent requests share one model call (`batching.py`); a background
watcher swaps in a new champion without a restart (`reloader.py`).

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
from mmops.serve.auth import check_token, resolve_token
from mmops.serve.batching import MicroBatcher, Overloaded, ShuttingDown
from mmops.serve.inputs import read_rows
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


def create_app(settings: ServeSettings | None = None, source: ModelSource | None = None) -> FastAPI:
    """Build the service. `source` defaults to `models:/<model_name>@<alias>` in the registry."""
    settings = settings or ServeSettings.from_env()
    token = resolve_token(settings.token)
    metrics = Metrics()
    state: dict[str, Any] = {}

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
        state.update(holder=holder, batcher=batcher, watcher=watcher, source=src, decoder=decoder, inflight=0)
        await batcher.start()
        watcher.start()
        log.info("serving %s v%s (%s)", served.name, served.version, served.uri)
        try:
            yield
        finally:
            watcher.stop()
            await batcher.stop()
            decoder.shutdown(wait=False, cancel_futures=True)
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
            "output": {"predictions": [{"label": "class name", "probabilities": {"<class>": "float"},
                                        "model_version": "string"}]},
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
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def answer(request: Request) -> list[dict]:
        batcher: MicroBatcher = state["batcher"]
        with batcher.incoming():
            rows = await read_rows(request, settings, state["decoder"])
        try:
            return await batcher.submit(rows)
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
            predictions = await asyncio.wait_for(answer(request), settings.request_timeout_s)
        except TimeoutError:  # the request's decode or model call may still finish; its answer is dropped
            raise HTTPException(504, f"request not answered within {settings.request_timeout_s:g} s") from None
        finally:
            state["inflight"] -= 1
            metrics.inflight.set(state["inflight"])
        for p in predictions:
            metrics.instances.labels(p["label"]).inc()
        return Response(json.dumps({"predictions": predictions}).encode(), media_type="application/json")

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

