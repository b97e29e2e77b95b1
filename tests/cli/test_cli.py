"""The `mmops` command: help everywhere, errors a person can act on, non-zero exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmops.catalog import VALIDATION_JSON

MMOPS = [str(Path(sys.executable).parent / "mmops")]
COMMANDS = [
    "demo-data", "validate", "preprocess", "train", "evaluate", "register", "promote", "rollback", "release", "history", "gc", "env", "ui",
    "ablate", "run", "schedule", "serve", "predict", "profile", "cv", "tune", "monitor",
]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MMOPS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_stage():
    out = run("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "Usage" in out.stdout


def test_bad_override_names_the_key(tmp_path):
    out = run("train", "--set", "train.lr=-1", cwd=tmp_path)
    assert out.returncode == 2
    assert "train.lr" in out.stderr and "Traceback" not in out.stderr


def test_validate_passes_good_data_without_loading_torch(small_dataset, tmp_path):
    """`mmops validate` builds no model, so it never imports torch (params skip the component check)."""
    script = (
        "import sys; from mmops.cli import app; app(sys.argv[1:], standalone_mode=False); "
        "assert 'torch' not in sys.modules, 'mmops validate imported torch'"
    )
    argv = [sys.executable, "-c", script, "validate", str(small_dataset), "--set", f"paths.reports={tmp_path}"]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / VALIDATION_JSON).exists()


def test_validate_fails_bad_data_naming_sample_and_rule(mislabeled_dataset, tmp_path):
    broken, bad_id = mislabeled_dataset
    out = run("validate", str(broken), "--set", f"paths.reports={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1
    assert bad_id in out.stderr and "label" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_names_labels_outside_pinned_classes_and_the_fix(mislabeled_dataset, tmp_path):
    broken, bad_id = mislabeled_dataset
    pinned = "classes=[" + ",".join(str(d) for d in range(10)) + "]"
    out = run("validate", str(broken), "--set", pinned, "--set", f"paths.reports={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 1
    text = " ".join(out.stderr.split())
    assert bad_id in text and "label_in_classes" in text and "'eleven'" in text and "classes: auto" in text


def test_profile_writes_a_card_and_a_params_file_with_auto_pinned(tmp_path, tiny_text_model):
    import yaml

    from datagen.unlike_demo import make_dataset
    from mmops.params_file import load_params

    data = make_dataset(tmp_path / "data", n_per_class=6, variant="no_audio")
    out = run("profile", str(data), "--out", str(tmp_path / "card"), "--write", str(tmp_path / "mine.yaml"),
              "--set", f"model.text.options.pretrained={tiny_text_model}", "--set", "model.text.options.sha256=null",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "auto: modalities" in out.stdout and "text, image" in out.stdout
    card = (tmp_path / "card" / "profile.md").read_text()
    assert "## Images" in card and "What `auto` picks" in card
    written = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    assert written["classes"] == ["negative", "neutral", "positive"] and written["model"]["modalities"] == ["text", "image"]
    assert load_params(tmp_path / "mine.yaml").paths.data == data  # a params file the pipeline takes as is


def test_validate_of_another_folder_leaves_the_pipeline_report_alone(small_dataset, tmp_path):
    """`mmops validate DIR` on a folder that is not `paths.data` writes DIR.validation beside it (or --out),
    so the pipeline's reports/validation.* (a dvc output) stay as the pipeline wrote them."""
    import shutil

    data = shutil.copytree(small_dataset, tmp_path / "theirs")
    out = run("validate", str(data), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "theirs.validation" / VALIDATION_JSON).exists()
    assert not (tmp_path / "reports").exists()
    assert "theirs.validation" in " ".join(out.stderr.split())
    out = run("validate", str(data), "--out", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "elsewhere" / VALIDATION_JSON).exists()
