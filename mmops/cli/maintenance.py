"""`mmops gc`: retention of registered model versions and frozen-weight blobs (arguments and
printing only; the rules are in `mmops.registry.gc`). Wired into the main CLI as
`app.command("gc")(gc_command)`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console


def gc_command(
    keep: Annotated[int, typer.Option("--keep", min=1, help="newest fp32 versions to keep (their int8 variants too)")] = 5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be deleted; delete nothing")] = False,
    model_name: Annotated[Optional[str], typer.Option(help="registered model (default: registry.model_name)")] = None,
    params: Annotated[Path, typer.Option(help="params file (for registry.model_name)")] = Path("params.yaml"),
) -> None:
    """Delete old model versions and their artifacts, then frozen-weight blobs no version references.

    Never deleted: the newest --keep versions, any version an alias points at, any version
    `mmops rollback` could go back to, and the int8 variant / fp32 source of a kept version.
    """
    from mlflow import MlflowClient

    from mmops.params_file import load_params
    from mmops.registry.gc import collect_garbage, gc_table
    from mmops.registry.tracking import tracking_uri

    name = model_name or load_params(params if params.exists() else None, None).registry.model_name
    client = MlflowClient(tracking_uri())
    result = collect_garbage(client, name, keep, dry_run=dry_run)
    Console(width=80).print(gc_table(result))
