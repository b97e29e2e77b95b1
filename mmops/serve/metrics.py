"""Prometheus metrics: requests by status, latency, batch sizes, model calls, the served version."""

from __future__ import annotations

import time

from mmops.serve.reloader import ServedModel

ENDPOINTS = ("/predict", "/feedback", "/health", "/metadata", "/metrics")


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
        self.in_sync = Gauge("mmops_model_in_sync", "1 when the served version is the one the alias names; 0 "
                             "while a newer champion could not be loaded (e.g. it failed verification)",
                             registry=self.registry)
        self.queued = Gauge("mmops_queued_rows", "rows waiting for the model", registry=self.registry)
        self.inflight = Gauge("mmops_inflight_requests", "/predict requests being read, checked or predicted",
                              registry=self.registry)
        self.feedback = Counter("mmops_feedback", "true labels accepted by POST /feedback", registry=self.registry)
        self.monitor = MonitorCollector()
        self.registry.register(self.monitor)

    def set_model(self, served: ServedModel) -> None:
        alias = served.alias or ""
        self.model_info.clear()
        self.model_info.labels(served.name, alias, served.version).set(1)
        try:
            self.model_version.labels(served.name, alias).set(float(served.version))
        except ValueError:  # a local folder has no numeric version
            self.model_version.labels(served.name, alias).set(-1)

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        """One model call of the micro-batcher."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.model_seconds.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MonitorCollector:
    """The prediction log's counters, live accuracy from its feedback and the last drift report
    (`drift.json` of `mmops monitor`), as of the last `update` (made at each scrape)."""

    def __init__(self) -> None:
        self.log_stats: dict[str, int] | None = None
        self.live: dict | None = None
        self.drift: dict | None = None

    def update(self, log_stats: dict[str, int] | None, live: dict | None, drift: dict | None) -> None:
        self.log_stats, self.live, self.drift = log_stats, live, drift

    def describe(self):
        return []  # families come and go with the log and the report: no fixed names to reserve

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if self.log_stats is not None:
            yield CounterMetricFamily("mmops_prediction_log_rows", "prediction rows written to the log",
                                      value=self.log_stats["rows"])
            yield CounterMetricFamily("mmops_prediction_log_dropped", "rows not logged (queue full or a failed write)",
                                      value=self.log_stats["dropped"])
        if self.live:
            for key, text in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
                yield GaugeMetricFamily(f"mmops_live_{key}", f"live {text} of the served version's predictions "
                                        "that have feedback", value=self.live[key])
            yield GaugeMetricFamily("mmops_live_labelled_rows", "predictions of the served version with feedback",
                                    value=self.live["n"])
        parts = {**(self.drift or {}).get("modalities", {}), "prediction": (self.drift or {}).get("prediction")}
        parts = {name: part for name, part in parts.items()
                 if isinstance(part, dict) and isinstance(part.get("score"), (int, float))}
        if parts:
            score = GaugeMetricFamily("mmops_drift_score", "drift score of the last `mmops monitor` report",
                                      labels=["modality"])
            detected = GaugeMetricFamily("mmops_drift_detected", "1 when the last report found drift",
                                         labels=["modality"])
            for name, part in parts.items():
                score.add_metric([name], float(part["score"]))
                detected.add_metric([name], 1.0 if part.get("drifted") else 0.0)
            yield score
            yield detected


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
