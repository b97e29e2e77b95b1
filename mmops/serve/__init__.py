"""Serving: the champion behind an HTTP API, micro-batched and hot-reloaded.

    app        create_app / serve: the FastAPI wiring
    settings   ServeSettings (env MMOPS_SERVE_*)
    inputs     request body -> checked rows (size, JSON, base64, media decode, multipart)
    auth       the bearer token
    metrics    Prometheus collectors
    batching   concurrent requests share one model call
    reloader   model sources; a new champion swapped in without a restart

Import the submodules you need (`mmops.serve.app` pulls in FastAPI and MLflow).
"""
