"""Verified loading: a registered model folder is checked against the digests recorded at
registration before one byte of it is loaded.

Registration records, on the model version itself (in the same call that creates it):

    lineage.model_hash       sha256 over every file of the model folder (`tree_sha256`)
    lineage.model_files      {relative path: sha256} of each file, to say *which* file differs
    lineage.model_signature  HMAC-SHA256 of the hash under `MMOPS_MODEL_SIGNING_KEY` (when set)

`load_registered` downloads the version's MLmodel file, finds the model folder through it (read
as YAML data, never executed), downloads only that folder, verifies it and loads it with `load_model_dir`
(tensors only, `weights_only=True`), or an ONNX variant folder with `load_onnx_dir` (model.onnx
checked against its own recorded sha256 too, before ONNX Runtime reads it). A folder that references frozen pretrained weights by sha256
(`base_weights.json`, covered by the hash like every file) gets them from the local blob cache,
the path they were trained from, or else the registry's blob store (one run per digest in the
experiment `mmops-blobs`, written once per content hash at registration); a fetched blob is hashed
before it enters the cache, and one whose sha256 differs is refused, named. Nothing of MLflow's pickled or code-based pyfunc runs. With
a signing key set where models are loaded, a version without a valid signature is refused too:
then someone who can write to the registry but lacks the key cannot get a model served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from mmops.data.hashing import digests_sha256, file_sha256, tree_digests
from mmops.errors import UserError
from mmops.inference.model_dir import LoadedModel, load_model_dir, read_base_weights
from mmops.inference.onnx_model import is_onnx_dir, load_onnx_dir
from mmops.models.pretrained import BaseWeightsMissing, blob_cache_file, find_base_weights

MODEL_HASH_TAG = "lineage.model_hash"
MODEL_FILES_TAG = "lineage.model_files"
SIGNATURE_TAG = "lineage.model_signature"
SIGNING_KEY_ENV = "MMOPS_MODEL_SIGNING_KEY"
MODEL_DIR_ARTIFACT = "model_dir"  # the pyfunc artifact that holds the model folder
MAX_TAG_CHARS = 5000  # model-version tag values are VARCHAR(5000) in MLflow's SQL stores
BLOB_EXPERIMENT = "mmops-blobs"  # one run per frozen-weights digest, its file as the run's artifact
BLOB_TAG = "mmops.blob.sha256"
BLOB_DIR = "blobs/sha256"  # artifact path of a blob in its run: blobs/sha256/<digest>/<file name>


class ModelVerificationError(UserError, RuntimeError):
    """A model folder does not match what was recorded when it was registered; it is not loaded."""


def signature(model_hash: str, key: str) -> str:
    return hmac.new(key.encode(), model_hash.encode(), hashlib.sha256).hexdigest()


def model_record(model_dir: Path) -> dict[str, str]:
    """The version tags that pin a model folder's content (see the module docstring)."""
    digests = tree_digests(model_dir)
    record = {MODEL_HASH_TAG: digests_sha256(digests)}
    files = json.dumps(digests, sort_keys=True, separators=(",", ":"))
    if len(files) <= MAX_TAG_CHARS:  # too many files to list: the hash alone still pins them
        record[MODEL_FILES_TAG] = files
    if key := os.environ.get(SIGNING_KEY_ENV):
        record[SIGNATURE_TAG] = signature(record[MODEL_HASH_TAG], key)
    return record


def _differences(recorded: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    changed = [f"{f} (changed)" for f in sorted(recorded.keys() & found.keys()) if recorded[f] != found[f]]
    missing = [f"{f} (missing)" for f in sorted(recorded.keys() - found.keys())]
    added = [f"{f} (not registered)" for f in sorted(found.keys() - recorded.keys())]
    return changed + missing + added


def verify_model_dir(model_dir: Path, tags: Mapping[str, str], label: str) -> None:
    """Raise ModelVerificationError unless `model_dir` hashes to the recorded `lineage.model_hash`
    (and, with a signing key set here, carries a valid signature). `label` names the version."""
    expected = tags.get(MODEL_HASH_TAG)
    if not expected:
        raise ModelVerificationError(
            f"{label} has no recorded {MODEL_HASH_TAG}; it was not registered by mmops (or its tags were "
            "removed), so it is not loaded. Register the model again."
        )
    key = os.environ.get(SIGNING_KEY_ENV)
    if key and not hmac.compare_digest(tags.get(SIGNATURE_TAG, ""), signature(expected, key)):
        raise ModelVerificationError(
            f"{label}: {SIGNATURE_TAG} is missing or does not match {SIGNING_KEY_ENV}; the version was not "
            "registered by a holder of the signing key, so it is not loaded"
        )
    found = tree_digests(model_dir)
    if digests_sha256(found) == expected:
        return
    recorded = json.loads(tags.get(MODEL_FILES_TAG) or "{}")
    which = _differences(recorded, found) if recorded else ["(per-file digests were not recorded)"]
    raise ModelVerificationError(
        f"{label}: the model files do not match the hash recorded at registration "
        f"({expected[:12]}…): {', '.join(which) or 'file list differs'}. The artifact was changed after "
        "registration; it is not loaded."
    )


def registered_model_dir(mlmodel_text: str) -> str:
    """The model folder's path inside a registered model, read from its MLmodel file (as data)."""
    mlmodel = yaml.safe_load(mlmodel_text) or {}
    artifacts = (mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts") or {})
    relative = str((artifacts.get(MODEL_DIR_ARTIFACT) or {}).get("path") or "")
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise ModelVerificationError(f"MLmodel names no valid `{MODEL_DIR_ARTIFACT}` artifact ({relative!r}); not an mmops model")
    return Path(relative).as_posix()


def resolve_models_uri(uri: str, client) -> tuple[str, str]:
    """`models:/<name>/<version>` or `models:/<name>@<alias>` -> (name, version)."""
    body = uri.removeprefix("models:/") if uri.startswith("models:/") else None
    if not body or body.count("/") + body.count("@") != 1:
        raise ModelVerificationError(
            f"{uri!r}: give a model folder, models:/<name>/<version> or models:/<name>@<alias>; other MLflow "
            "URIs carry no recorded digest and are not loaded"
        )
    if "@" in body:
        name, alias = body.split("@")
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, version = body.split("/")
    return name, version


def load_registered(name: str, version: str, dst: Path, client=None) -> LoadedModel:
    """Download version `version` of registered model `name` into `dst`, verify it, load it."""
    import mlflow
    from mlflow import MlflowClient

    client = client or MlflowClient()
    tags = client.get_model_version(name, str(version)).tags
    location = client.get_model_version_download_uri(name, str(version)).rstrip("/")
    # only the MLmodel file and the model folder come down (not the logged code)
    mlmodel = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(dst)))
    relative = registered_model_dir(mlmodel.read_text())
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{relative}", dst_path=str(dst)))
    verify_model_dir(model_dir, tags, f"{name} v{version}")
    if is_onnx_dir(model_dir):  # its model.onnx is covered by the folder hash, and checked again on load
        return load_onnx_dir(model_dir)
    fetch_base_weights(model_dir, client)
    return load_model_dir(model_dir)


def blob_run_id(client, sha256: str) -> str | None:
    """The finished run of the blob store that holds the file of digest `sha256`, if any."""
    experiment = client.get_experiment_by_name(BLOB_EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{BLOB_TAG}` = '{sha256}' and attributes.status = 'FINISHED'",
        max_results=1, order_by=["attributes.start_time ASC"],
    )
    return runs[0].info.run_id if runs else None


def fetch_base_weights(model_dir: Path, client=None) -> None:
    """Make every frozen weight file `base_weights.json` references available locally, verified:
    already cached or at its training path, else downloaded from the blob store into the cache
    (`.mmops/blobs/sha256/<digest>.safetensors`) after its sha256 is checked."""
    import mlflow
    import tempfile

    for modality, entry in read_base_weights(model_dir).items():
        sha256, owner = str(entry["sha256"]).lower(), f"{model_dir}/base_weights.json [{modality}]"
        try:
            find_base_weights(sha256, entry.get("source"), owner)
            continue
        except BaseWeightsMissing:
            pass
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient()
        run_id = blob_run_id(client, sha256)
        if run_id is None:
            raise ModelVerificationError(
                f"{owner}: frozen weights sha256 {sha256} are not in the registry's blob store "
                f"(experiment {BLOB_EXPERIMENT!r}) nor available locally; the version cannot be loaded here"
            )
        target = blob_cache_file(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        uri = f"runs:/{run_id}/{BLOB_DIR}/{sha256}/{entry['file']}"
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            actual = file_sha256(got)
            if actual != sha256:
                raise ModelVerificationError(
                    f"{owner}: blob {uri} has sha256 {actual}, expected {sha256}; it was changed in the artifact "
                    "store and is refused"
                )
            os.replace(got, target)
