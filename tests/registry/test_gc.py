"""`mmops gc` on a real SQLite store: old versions and unreferenced blobs go; aliased, rollback
targets, int8 pairs and the newest N stay; --dry-run deletes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from mmops.catalog import BASE_WEIGHTS
from mmops.inference.verify import BLOB_EXPERIMENT, MODEL_FILES_TAG
from mmops.registry.gc import collect_garbage, gc_table
from mmops.registry.promotion import promote
from mmops.registry.tracking import store_blob

MLMODEL = "flavors:\n  python_function:\n    artifacts:\n      model_dir:\n        path: artifacts/model_dir\n"


def _version_dir(root: Path, v: int, blob: str | None) -> Path:
    """A logged-model folder: MLmodel + model_dir (1 KB checkpoint, base_weights.json when `blob`)."""
    folder = root / f"v{v}"
    model_dir = folder / "artifacts" / "model_dir"
    model_dir.mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL)
    (model_dir / "checkpoint.pt").write_bytes(b"x" * 1024)
    if blob:
        (model_dir / BASE_WEIGHTS).write_text(json.dumps({"text": {"sha256": blob, "file": "model.safetensors"}}))
    return folder


def _blob(tmp_path: Path, client, content: bytes) -> str:
    import hashlib

    sha = hashlib.sha256(content).hexdigest()
    path = tmp_path / f"{sha[:8]}" / "model.safetensors"
    path.parent.mkdir()
    path.write_bytes(content)
    store_blob(client, path, sha)
    return sha


def test_gc_keeps_what_serving_and_rollback_need_and_drops_the_rest(store, model_factory, tmp_path):
    client = MlflowClient()
    kept_blob, dropped_blob = _blob(tmp_path, client, b"a" * 4096), _blob(tmp_path, client, b"b" * 8192)
    name = model_factory(client, tmp_path / "sources", n=4)  # v3 rejected, v4 = int8 of v2
    for v in range(5, 9):
        blob = {5: dropped_blob, 7: kept_blob}.get(v)
        client.create_model_version(name, source=str(_version_dir(tmp_path / "sources", v, blob)), run_id=None)
        client.set_model_version_tag(name, str(v), "gate.decision", "promoted")
    for mv in client.search_model_versions(f"name='{name}'"):
        files = {"checkpoint.pt": "0" * 64} | ({BASE_WEIGHTS: "1" * 64} if str(mv.version) in ("5", "7") else {})
        client.set_model_version_tag(name, str(mv.version), MODEL_FILES_TAG, json.dumps(files))
    promote(client, name, "2", "first")
    promote(client, name, "6", "second")  # `mmops rollback` would go back to v2
    client.set_registered_model_alias(name, "challenger", "8")

    dry = collect_garbage(client, name, keep=2, dry_run=True)
    would = {i.name for i in dry.items if i.delete}
    assert would == {"v1", "v3", "v5", f"sha256:{dropped_blob[:12]}"}, dry.items
    assert len(client.search_model_versions(f"name='{name}'")) == 8  # nothing deleted

    result = collect_garbage(client, name, keep=2)
    reasons = {i.name: i.reason for i in result.items if not i.delete}
    assert reasons["v2"] == "rollback target" and reasons["v6"] == "alias champion"
    assert reasons["v4"] in ("int8 of v2", "alias champion-int8")
    assert reasons["v7"] == "newest 2" and reasons["v8"] == "newest 2"
    assert reasons[f"sha256:{kept_blob[:12]}"] == "referenced"
    assert sorted(int(mv.version) for mv in client.search_model_versions(f"name='{name}'")) == [2, 4, 6, 7, 8]
    assert not (tmp_path / "sources" / "v5").exists() and (tmp_path / "sources" / "v7").exists()
    blob_runs = client.search_runs([client.get_experiment_by_name(BLOB_EXPERIMENT).experiment_id])
    assert [r.data.tags["mmops.blob.sha256"] for r in blob_runs] == [kept_blob]
    assert result.freed >= 8192 + 1024  # v5's checkpoint and its blob at least

    console = Console(width=80, record=True)
    console.print(gc_table(result))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "deleted" in text and "freed" in text
