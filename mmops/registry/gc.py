"""Retention (`mmops gc --keep N`): delete old versions of a registered model and their artifacts,
then the frozen-weight blobs no remaining version references.

A version is kept when any of these holds (the first that applies is printed as the reason):
- it is one of the newest N fp32 versions (`--keep N`; int8 variants follow their source);
- an alias points at it (`champion`, `challenger`, `champion-int8`, ...);
- `mmops rollback` without `--to` could go back to it (the champion history's undo stack);
- it is the int8 or ONNX variant or the fp32 source of a kept version.
A blob is kept while any version of any registered model in the registry references it (read from
the version's `base_weights.json`); when one cannot be read, no blob is deleted.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from mmops.catalog import BASE_WEIGHTS
from mmops.inference.verify import BLOB_EXPERIMENT, BLOB_TAG, MODEL_FILES_TAG, registered_model_dir
from mmops.registry.promotion import CHAMPION, INT8_VERSION_TAG, ONNX_VERSION_TAG, read_history

VARIANT_OF_TAG = "mmops.variant_of"


@dataclass
class Item:
    """One version or blob: what gc does with it and why."""

    kind: str  # "version" or "blob"
    name: str  # "v12" or "sha256:ab12…"
    delete: bool
    reason: str
    bytes: int | None = None  # on a local artifact store; None when not measurable


@dataclass
class GcResult:
    model_name: str
    keep: int
    dry_run: bool
    items: list[Item] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(i.bytes or 0 for i in self.items if i.delete)


def local_path(uri: str) -> Path | None:
    """The folder of a `file:` (or plain path) artifact URI; None for remote stores."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def tree_bytes(uri: str) -> int | None:
    path = local_path(uri)
    if path is None or not path.exists():
        return None
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def delete_artifacts(uri: str) -> None:
    path = local_path(uri)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(uri).delete_artifacts()


def rollback_stack(client, name: str) -> list[str]:
    """Every version a chain of `mmops rollback` (without --to) could reach, nearest first."""
    stack: list[str] = []
    for event in read_history(client, name):
        if event.alias != CHAMPION or event.action == "release":
            continue
        if event.undo:
            if stack:
                stack.pop()
        elif event.from_version is not None:
            stack.append(event.from_version)
    return list(reversed(stack))


def kept_versions(client, name: str, keep: int) -> dict[str, str]:
    """{version: why it is kept} (see the module docstring)."""
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    why: dict[str, str] = {}
    fp32 = sorted((v for v in versions if VARIANT_OF_TAG not in versions[v].tags), key=int, reverse=True)
    for v in fp32[:keep]:
        why.setdefault(v, f"newest {keep}")
    for alias, v in sorted(client.get_registered_model(name).aliases.items()):
        if str(v) in versions:
            why.setdefault(str(v), f"alias {alias}")
    for v in rollback_stack(client, name):
        if v in versions:
            why.setdefault(v, "rollback target")
    changed = True
    while changed:  # int8 variant <-> fp32 source of anything kept
        changed = False
        for v in list(why):
            tags = versions[v].tags
            for other, reason in ((tags.get(INT8_VERSION_TAG), f"int8 of v{v}"), (tags.get(ONNX_VERSION_TAG), f"onnx of v{v}"),
                                  (tags.get(VARIANT_OF_TAG), f"source of v{v}")):
                if other in versions and other not in why:
                    why[other] = reason
                    changed = True
    return why


def referenced_blobs(client) -> set[str] | None:
    """sha256 of every blob any version in the registry references; None if one could not be read."""
    import mlflow

    found: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mmops-gc-") as tmp:
        for i, mv in enumerate(client.search_model_versions()):
            files = mv.tags.get(MODEL_FILES_TAG)
            if files is not None and BASE_WEIGHTS not in json.loads(files):
                continue  # the version lists its files and has no base_weights.json
            try:
                location = client.get_model_version_download_uri(mv.name, mv.version).rstrip("/")
                mlmodel = Path(mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location}/MLmodel", dst_path=f"{tmp}/{i}"))
                relative = registered_model_dir(mlmodel.read_text())
                bases = Path(mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location}/{relative}/{BASE_WEIGHTS}", dst_path=f"{tmp}/{i}"))
                found.update(str(e["sha256"]).lower() for e in json.loads(bases.read_text()).values())
            except Exception:  # noqa: BLE001  unreadable: keep every blob rather than guess
                return None
    return found


def collect_garbage(client, name: str, keep: int, dry_run: bool = False) -> GcResult:
    """Delete (unless `dry_run`) the versions of `name` nothing keeps, then the unreferenced blobs."""
    if keep < 1:
        raise ValueError("--keep must be at least 1")
    result = GcResult(name, keep, dry_run)
    why = kept_versions(client, name, keep)
    for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda m: int(m.version)):
        v = str(mv.version)
        uri = client.get_model_version_download_uri(name, v)
        item = Item("version", f"v{v}", v not in why, why.get(v, "old"), tree_bytes(uri))
        result.items.append(item)
        if item.delete and not dry_run:
            client.delete_model_version(name, v)
            delete_artifacts(uri)
            if str(mv.source).startswith("models:/"):
                try:
                    client.delete_logged_model(str(mv.source).removeprefix("models:/").split("/")[0])
                except Exception:  # noqa: BLE001  the artifacts are gone; a stale entry is harmless
                    pass
    result.items.extend(_blobs(client, result, dry_run))
    return result


def _blobs(client, result: GcResult, dry_run: bool) -> list[Item]:
    experiment = client.get_experiment_by_name(BLOB_EXPERIMENT)
    if experiment is None:
        return []
    deleted = {i.name[1:] for i in result.items if i.kind == "version" and i.delete}
    referenced = referenced_blobs(client)
    if dry_run and referenced is not None:  # nothing was deleted: discount what would go
        referenced = _referenced_without(client, result.model_name, deleted)
    items = []
    for run in client.search_runs([experiment.experiment_id], max_results=10_000):
        sha = run.data.tags.get(BLOB_TAG, "")
        finished = run.info.status == "FINISHED"
        if referenced is None:
            delete, reason = False, "unreadable version: all kept"
        elif not finished:
            delete, reason = True, f"upload {run.info.status.lower()}"
        else:
            delete, reason = sha not in referenced, ("referenced" if sha in referenced else "unreferenced")
        items.append(Item("blob", f"sha256:{sha[:12]}", delete, reason, tree_bytes(run.info.artifact_uri)))
        if delete and not dry_run:
            delete_artifacts(run.info.artifact_uri)
            client.delete_run(run.info.run_id)
    return items


def _referenced_without(client, name: str, gone: set[str]) -> set[str] | None:
    """`referenced_blobs` as it would be with versions `gone` of `name` deleted (for --dry-run)."""

    class Without:
        def __getattr__(self, attr):
            return getattr(client, attr)

        def search_model_versions(self, *args, **kwargs):
            return [mv for mv in client.search_model_versions(*args, **kwargs)
                    if not (mv.name == name and str(mv.version) in gone)]

    return referenced_blobs(Without())


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def gc_table(result: GcResult):
    """A Rich table of every version and blob, deleted or kept with its reason (fits 80 columns)."""
    from rich.table import Table

    verb = "would delete" if result.dry_run else "deleted"
    table = Table(title=f"{result.model_name}: keep newest {result.keep}", width=80)
    table.add_column("item", no_wrap=True, max_width=22)
    table.add_column("action", no_wrap=True, max_width=12)
    table.add_column("why", max_width=30)
    table.add_column("size", justify="right", no_wrap=True, max_width=10)
    for i in result.items:
        table.add_row(i.name, verb if i.delete else "keep", i.reason, human_bytes(i.bytes))
    table.caption = f"{verb}: {sum(i.delete for i in result.items)} items, {human_bytes(result.freed)} freed"
    return table
