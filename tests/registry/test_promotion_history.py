"""Where the alias history lives: one history run per registered model, one summary tag on the model
(not a JSON blob per move), and stores written by earlier mmops (one tag per move on the model) still
read, then moved to the history run by the next move."""

from __future__ import annotations

import uuid

from mmops.registry.promotion import (
    CHAMPION,
    HISTORY_EXPERIMENT,
    HISTORY_OF_TAG,
    HISTORY_PREFIX,
    HISTORY_TAG,
    AliasMove,
    history_run_id,
    history_table,
    promote,
    read_history,
    rollback,
)


def _legacy_move(client, name: str, seq: int, from_version: str | None, to: str) -> None:
    """One move as mmops wrote it before: a JSON tag `mmops.history.<seq>.<id>` on the registered model."""
    client.set_registered_model_alias(name, CHAMPION, to)
    event = AliasMove(seq=seq, time=f"2026-11-0{seq}T10:00:00.000+00:00", actor="old@host", action="promote",
                      alias=CHAMPION, from_version=from_version, to_version=to, reason=f"legacy move {seq}")
    client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{seq:06d}.{uuid.uuid4().hex[:8]}", event.model_dump_json())


def _blob_tags(client, name: str) -> list[str]:
    return [k for k, v in client.get_registered_model(name).tags.items() if v.lstrip().startswith("{\"seq\"")]


def test_moves_go_to_the_history_run_and_the_model_keeps_one_summary_tag(model):
    client, name = model
    promote(client, name, "1", "first", pin=False)
    promote(client, name, "2", "second", pin=False)
    tags = client.get_registered_model(name).tags
    assert not [k for k in tags if k.startswith(HISTORY_PREFIX)] and not _blob_tags(client, name)
    run = client.get_run(history_run_id(tags))
    assert run.data.tags[HISTORY_OF_TAG] == name
    assert client.get_experiment(run.info.experiment_id).name == HISTORY_EXPERIMENT
    assert len([k for k in run.data.tags if k.startswith(HISTORY_PREFIX)]) == 3  # champion, champion, champion_int8
    assert tags[HISTORY_TAG].startswith("3 alias moves; last #3 ") and "champion_int8 (unset) → v4" in tags[HISTORY_TAG]
    assert [e.seq for e in read_history(client, name)] == [1, 2, 3]


def test_a_store_with_the_old_per_move_tags_is_read_then_migrated(model):
    client, name = model
    _legacy_move(client, name, 1, None, "1")
    _legacy_move(client, name, 2, "1", "3")
    old = read_history(client, name)
    assert [(e.seq, e.to_version, e.actor) for e in old] == [(1, "1", "old@host"), (2, "3", "old@host")]
    assert "legacy move 2" in str(_render(history_table(name, old)))

    rollback(client, name, "v3 was a mistake")  # the undo stack comes from the legacy moves
    events = read_history(client, name)
    assert [(e.seq, e.from_version, e.to_version, e.undo) for e in events] == [
        (1, None, "1", False), (2, "1", "3", False), (3, "3", "1", True)]
    assert events[:2] == old  # moved, not rewritten
    tags = client.get_registered_model(name).tags
    assert not [k for k in tags if k.startswith(HISTORY_PREFIX)] and not _blob_tags(client, name)
    assert tags[HISTORY_TAG].startswith("3 alias moves; last #3 ")


def _render(renderable) -> str:
    from rich.console import Console

    console = Console(width=80, record=True)
    console.print(renderable)
    return console.export_text()
