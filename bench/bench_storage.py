"""Benchmark the storage a registered version costs: `python bench/bench_storage.py`.

Builds the model params.yaml describes (real all-MiniLM-L6-v2, frozen, plus the small CNNs; no
training: sizes do not depend on the weights' values), and registers it in a temp project's
embedded MLflow store (mmops.registry.register.log_pyfunc, the register stage's code) two ways:
  - before: the model folder as training wrote it until now: `checkpoint.pt` with every tensor
    (frozen MiniLM included) and the resume state `last.pt` (state + AdamW moments);
  - after: the lean folder training writes now: frozen MiniLM referenced by sha256
    (`base_weights.json`), no resume state; the MiniLM file goes to the blob store once.
Figures: bytes per version before and after (the version's own artifacts), their ratio (goal
<= 0.3), and the one-time blob.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402
from mmops.env import configure_tool_env  # noqa: E402

configure_tool_env()
BENCH = "storage"


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def model_folders(root: Path) -> tuple[Path, Path]:
    """(before, after): the same untrained params.yaml model as a full and as a lean model folder."""
    import torch

    from mmops.catalog import CHECKPOINT, HISTORY_JSON, RESUME_STATE
    from mmops.inference.model_dir import (
        export_audio_backbone, export_text_backbone, lean_checkpoint, write_base_weights,
    )
    from mmops.models import MultimodalClassifier
    from mmops.params_file import load_params

    params = load_params(REPO / "params.yaml", None)
    torch.manual_seed(0)
    model = MultimodalClassifier(params.model, len(params.classes), features=params.features).eval()
    full = model.state_dict()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # AdamW moments exist, as in a real resume state
    before, after = root / "before", root / "after"
    for folder in (before, after):
        folder.mkdir(parents=True)
        export_text_backbone(model, params, folder)
        export_audio_backbone(model, folder)
        (folder / HISTORY_JSON).write_text('{"summary": {}, "epochs": []}')
    ckpt = {"params": params.dump(), "classes": params.classes, "epoch": 1, "val": {}}
    torch.save(ckpt | {"state_dict": full}, before / CHECKPOINT)
    torch.save({"state_dict": full, "optimizer": optimizer.state_dict(), "epoch": 1}, before / RESUME_STATE)
    state, bases = lean_checkpoint(model, full)
    torch.save(ckpt | {"state_dict": state}, after / CHECKPOINT)
    write_base_weights(after, bases)
    return before, after


def main() -> None:
    import mlflow
    from mlflow import MlflowClient

    from mmops.registry.register import log_pyfunc
    from mmops.registry.tracking import setup_mlflow

    with tempfile.TemporaryDirectory(prefix="mmops-bench-storage-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "params.yaml").write_text("{}\n")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ["MMOPS_PROJECT_ROOT"] = str(project)
        before, after = model_folders(Path(tmp) / "folders")
        setup_mlflow("bench-storage")
        client = MlflowClient()
        sizes = {}
        for label, folder in (("before", before), ("after", after)):
            with mlflow.start_run():
                version = log_pyfunc(client, folder, f"storage-{label}", "model", {"lineage.data_hash": label})
            location = mlflow.artifacts.download_artifacts(client.get_model_version_download_uri(f"storage-{label}", version))
            sizes[label] = tree_bytes(Path(location))
        blobs = list((project / ".mmops" / "mlartifacts").rglob("blobs/sha256/*/*"))
        blob = sum(p.stat().st_size for p in blobs)
        assert not (project / "mlruns").exists() and not Path("mlruns").joinpath("bench").exists()
    ratio = sizes["after"] / sizes["before"]
    detail = (f"params.yaml model (frozen all-MiniLM-L6-v2 + small CNNs); before: checkpoint.pt with every tensor + "
              f"last.pt; after: lean folder, MiniLM stored once as a blob ({blob} bytes, {len(blobs)} file)")
    record(BENCH, "bytes per version, before", sizes["before"], "bytes", "", detail)
    record(BENCH, "bytes per version, after", sizes["after"], "bytes", "", "the version's own artifacts")
    record(BENCH, "bytes per version, after / before", ratio, "ratio", "<= 0.3", detail)
    record(BENCH, "frozen-weights blob, once per content hash", blob, "bytes", "", "shared by every version")
    for n in (1, 10):
        amortised = (n * sizes["after"] + blob) / (n * sizes["before"])
        record(BENCH, f"{n} versions incl. the blob, after / before", amortised, "ratio", "", "")


if __name__ == "__main__":
    main()
