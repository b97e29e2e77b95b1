"""Which model is served, and the watcher that swaps in a new champion without a restart.

A `ModelSource` says which version the alias points at now and loads a version. The
`ChampionWatcher` polls the source on a background thread; when the version changes it loads
the new one completely (weights, tokenizer, a warm-up forward) and only then swaps the holder's
reference. A batch takes `holder.current` once when it starts, so requests already in flight
finish on the model they started with, and every prediction names the version that made it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from mmops.errors import UserError
from mmops.inference.model_dir import LoadedModel, load_model_dir
from mmops.inference.predict import load_model_uri, warm_up
from mmops.registry.promotion import ONNX_VERSION_TAG

log = logging.getLogger("mmops.serve")


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and where it came from."""

    name: str
    version: str
    alias: str | None
    uri: str
    loaded: LoadedModel
    workdir: Path | None = field(default=None, compare=False)  # downloaded artifacts, removed on retire
    backend: str = "torch"  # or "onnx": `uri` names the version's ONNX variant, run by ONNX Runtime

    @property
    def classes(self) -> list[str]:
        return list(self.loaded.classes)

    @property
    def modalities(self) -> list[str]:
        return list(self.loaded.params.model.modalities)


class ModelSource(Protocol):
    """Where served models come from (the MLflow registry, or a local model folder)."""

    name: str
    alias: str | None

    def current_version(self) -> str: ...

    def load(self, version: str) -> ServedModel: ...


class NoOnnxVariant(UserError, LookupError):
    """`--backend onnx` for a version that has no registered ONNX variant."""


class RegistrySource:
    """`models:/<name>@<alias>` in the MLflow registry (MLFLOW_TRACKING_URI or the project store).

    With `backend="onnx"` the alias still decides the version; what is loaded is that version's
    ONNX variant (`onnx.onnx_version`), verified like any version, and a version without one is refused."""

    def __init__(self, name: str, alias: str = "champion", tracking_uri: str | None = None,
                 backend: str = "torch") -> None:
        import mlflow

        from mmops.registry.tracking import tracking_uri as default_uri

        self.name, self.alias, self.backend = name, alias, backend
        self.tracking_uri = tracking_uri or default_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def current_version(self) -> str:
        return str(self.client.get_model_version_by_alias(self.name, self.alias).version)

    def onnx_version(self, version: str) -> str:
        """The version of `version`'s ONNX variant; NoOnnxVariant (saying why) when it has none."""
        tags = self.client.get_model_version(self.name, version).tags
        onnx = tags.get(ONNX_VERSION_TAG)
        if onnx:
            return str(onnx)
        why = {"rejected": f"its export did not match PyTorch ({tags.get('onnx.error') or 'max |Δp| ' + tags.get('onnx.max_abs_diff_probs', '?')})"}
        reason = why.get(tags.get("onnx.decision", ""), "it was registered with `onnx.enabled: false`")
        raise NoOnnxVariant(
            f"models:/{self.name}/{version} ({self.alias}) has no ONNX variant: {reason}. Register it with "
            "`--set onnx.enabled=true` (params.yaml `onnx:`), or serve it with --backend torch"
        )

    def load(self, version: str) -> ServedModel:
        # Load the exact version the alias resolved to: the alias may move again meanwhile.
        uri = f"models:/{self.name}/{self.onnx_version(version) if self.backend == 'onnx' else version}"
        workdir = Path(tempfile.mkdtemp(prefix=f"mmops-serve-{self.name}-v{version}-"))
        try:
            loaded = load_model_uri(uri, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return ServedModel(self.name, version, self.alias, uri, loaded, workdir, self.backend)


class LocalDirSource:
    """A model folder on disk (`artifacts/model`): version "local", never changes."""

    def __init__(self, model_dir: Path, name: str = "local") -> None:
        self.model_dir = Path(model_dir)
        self.name, self.alias = name, None

    def current_version(self) -> str:
        return "local"

    def load(self, version: str) -> ServedModel:
        return ServedModel(self.name, version, None, str(self.model_dir), load_model_dir(self.model_dir))


class ModelHolder:
    """The served model; readers take `current` once, the watcher replaces it in one assignment."""

    def __init__(self, model: ServedModel) -> None:
        self._current = model
        self._lock = threading.Lock()

    @property
    def current(self) -> ServedModel:
        return self._current

    def swap(self, new: ServedModel) -> ServedModel:
        with self._lock:
            old, self._current = self._current, new
        return old


def load_and_warm(source: ModelSource, version: str) -> ServedModel:
    served = source.load(version)
    try:
        warm_up(served.loaded)
    except BaseException:
        retire(served)
        raise
    return served


def retire(served: ServedModel) -> None:
    """Drop a replaced model's downloaded files (everything it needs is already in memory)."""
    if served.workdir is not None:
        shutil.rmtree(served.workdir, ignore_errors=True)


class ChampionWatcher:
    """Poll the source every `interval` seconds; load a new version fully, then swap it in."""

    def __init__(
        self,
        source: ModelSource,
        holder: ModelHolder,
        interval: float,
        on_swap: Callable[[ServedModel, ServedModel], None] | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.source, self.holder, self.interval = source, holder, interval
        self.on_swap, self.on_error = on_swap, on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: set[str] = set()  # versions that failed to load: not retried until the alias moves
        self.desired: str | None = None  # the version the alias pointed at on the last check
        self.last_error: str | None = None  # why `desired` is not served (e.g. it failed verification)
        self._check_lock = threading.Lock()

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mmops-champion-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict:
        """Desired (the alias) vs served version, for /health and /metrics."""
        served = self.holder.current.version
        desired = self.desired or served
        return {"desired_version": desired, "in_sync": desired == served, "reload_error": self.last_error}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> bool:
        """Swap in the alias's version if it changed; True when a swap happened. Never raises."""
        with self._check_lock:
            stage = "resolve"
            try:
                version = self.source.current_version()
                self.desired = version
                current = self.holder.current
                if version == current.version:
                    self._failed.clear()
                    self.last_error = None
                    return False
                if version in self._failed:
                    return False
                log.info("%s@%s moved: v%s -> v%s; loading", self.source.name, self.source.alias, current.version, version)
                stage = "load"
                new = load_and_warm(self.source, version)
            except Exception as err:  # a broken store or model must not take the server down
                if stage == "load":
                    self._failed.add(version)
                    self.last_error = f"v{version} refused: {type(err).__name__}: {err}"
                log.warning("champion %s failed (%s: %s); still serving v%s", stage, type(err).__name__, err,
                            self.holder.current.version)
                if self.on_error:
                    self.on_error(stage, err)
                return False
            old = self.holder.swap(new)
            self.last_error = None
            log.info("now serving %s v%s (was v%s)", new.name, new.version, old.version)
            if self.on_swap:
                self.on_swap(old, new)
            retire(old)
            return True
