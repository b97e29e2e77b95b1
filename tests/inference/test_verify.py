"""Verified loading: a model folder is compared with the digests recorded at registration."""

from __future__ import annotations

import re
import shutil

import pytest

from mmops.inference.verify import (
    MODEL_FILES_TAG,
    MODEL_HASH_TAG,
    SIGNATURE_TAG,
    SIGNING_KEY_ENV,
    ModelVerificationError,
    model_record,
    registered_model_dir,
    resolve_models_uri,
    verify_model_dir,
)


@pytest.fixture
def folder(tmp_path):
    """A model-folder stand-in of another shape than ours: nested files, one of them binary."""
    root = tmp_path / "model"
    (root / "text_backbone").mkdir(parents=True)
    (root / "checkpoint.pt").write_bytes(bytes(range(256)) * 64)
    (root / "text_backbone" / "config.json").write_text('{"hidden": 8}')
    (root / "text_backbone" / "vocab.txt").write_text("a\nb\n")
    return root


def test_untouched_folder_verifies(folder):
    verify_model_dir(folder, model_record(folder), "m v1")


@pytest.mark.parametrize(("change", "named"), [
    (lambda f: f.joinpath("checkpoint.pt").write_bytes(b"\x01" + f.joinpath("checkpoint.pt").read_bytes()[1:]),
     "checkpoint.pt (changed)"),
    (lambda f: f.joinpath("text_backbone", "vocab.txt").unlink(), "text_backbone/vocab.txt (missing)"),
    (lambda f: f.joinpath("text_backbone", "extra.py").write_text("import os"), "text_backbone/extra.py (not registered)"),
])
def test_any_change_is_refused_and_named(folder, change, named):
    record = model_record(folder)
    change(folder)
    with pytest.raises(ModelVerificationError, match=rf"m v1: the model files do not match.*{re.escape(named)}"):
        verify_model_dir(folder, record, "m v1")


def test_without_per_file_digests_the_hash_still_refuses(folder):
    record = model_record(folder)
    record.pop(MODEL_FILES_TAG)
    shutil.rmtree(folder / "text_backbone")
    with pytest.raises(ModelVerificationError, match="per-file digests were not recorded"):
        verify_model_dir(folder, record, "m v1")


def test_a_version_without_a_recorded_hash_is_not_loaded(folder):
    with pytest.raises(ModelVerificationError, match=f"no recorded {MODEL_HASH_TAG}"):
        verify_model_dir(folder, {}, "m v7")


def test_signing_key_makes_the_signature_required(folder, monkeypatch):
    unsigned = model_record(folder)
    monkeypatch.setenv(SIGNING_KEY_ENV, "k" * 32)
    signed = model_record(folder)
    assert SIGNATURE_TAG in signed and SIGNATURE_TAG not in unsigned
    verify_model_dir(folder, signed, "m v1")
    with pytest.raises(ModelVerificationError, match="signature is missing or does not match"):
        verify_model_dir(folder, unsigned, "m v1")
    monkeypatch.setenv(SIGNING_KEY_ENV, "another key, not the registering one")
    with pytest.raises(ModelVerificationError, match="signature is missing or does not match"):
        verify_model_dir(folder, signed, "m v1")


def test_model_dir_is_found_through_mlmodel_and_may_not_escape():
    mlmodel = "flavors:\n  python_function:\n    artifacts:\n      model_dir:\n        path: {}\n"
    assert registered_model_dir(mlmodel.format("artifacts/model_dir")) == "artifacts/model_dir"
    for bad in ("../../etc", "/etc", "''"):
        with pytest.raises(ModelVerificationError, match="no valid `model_dir`"):
            registered_model_dir(mlmodel.format(bad))


def test_only_registered_model_uris_are_accepted():
    class Client:
        def get_model_version_by_alias(self, name, alias):
            return type("MV", (), {"version": 5})()

    assert resolve_models_uri("models:/m/3", Client()) == ("m", "3")
    assert resolve_models_uri("models:/m@champion", Client()) == ("m", "5")
    for uri in ("runs:/abc/model", "models:/m", "s3://bucket/model", "models:/m/3/extra"):
        with pytest.raises(ModelVerificationError, match="models:/<name>/<version>"):
            resolve_models_uri(uri, Client())
