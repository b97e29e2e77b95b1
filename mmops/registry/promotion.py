"""Moving `champion`: compare-and-set under a lock, and a history of every move kept in the registry.

Each move is one JSON tag `mmops.history.<seq>.<id>` (time, actor, action, alias, from -> to, reason,
the gate's rule results) on the model's history run: one run per registered model in the experiment
`mmops-registry`, so the history lives in the MLflow store and survives restarts and new clients,
while the registered model's page shows one line about it (tag `mmops.history`: how many moves, the
last one, the run). Stores written before that hold the events as tags of the registered model
itself: they are read as well, and moved to the history run by the next move (under the lock).
`champion_int8` follows `champion` to the new champion's int8 variant (or is removed when it has
none), recorded the same way. Every move rewrites the registered model's card (its description,
`mmops.registry.card`) to name the new champion.

Compare-and-set: the champion is re-read under a lock held in the registry itself (so promoters
on different hosts exclude each other) right before the alias moves. If it is
no longer the one the gate compared against, the move does not happen blindly: with a `regate`
callable (the register stage) the gate runs again against the new champion, still under the lock;
without one (`mmops promote --expect-champion`) it is refused with StaleChampionError.

Pins: a human decision holds. `mmops promote` (unless `--no-pin`) and `mmops rollback` pin the
champion: the registered-model tag `mmops.pin` holds JSON {version, actor, time, reason, seq} (seq:
the history event that set it), and that event has `pinned: true`. While a pin exists the
auto-promote path refuses to move `champion` (checked under the lock, inside compare_and_set, so a
race cannot slip past it): the register stage still registers and gates, and the version it would
have promoted gets `gate.decision=held` (`mmops promote N` accepts it without --force).
`mmops release` removes the pin (a history event with action `release`); a later `mmops promote`
pins again, `mmops promote --no-pin` moves without pinning and lifts an existing pin.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel

from mmops.errors import UserError
from mmops.registry.card import write_model_card
from mmops.registry.gate import GateDecision

CHAMPION, CHALLENGER = "champion", "challenger"
CHAMPION_INT8, CHALLENGER_INT8 = "champion_int8", "challenger_int8"
CHAMPION_DISTILLED, CHAMPION_PRUNED = "champion_distilled", "champion_pruned"
HISTORY_PREFIX = "mmops.history."  # one tag per event: on the history run (before: on the registered model)
HISTORY_TAG = "mmops.history"  # registered-model tag: a one-line summary naming the history run
HISTORY_EXPERIMENT = "mmops-registry"  # holds one history run per registered model
HISTORY_OF_TAG = "mmops.history_of"  # on a history run: the registered model it records
_HISTORY_RUN = re.compile(r"\bin run ([0-9A-Za-z-]+)")
INT8_VERSION_TAG = "quantize.int8_version"  # on an fp32 version: the version of its int8 variant
ONNX_VERSION_TAG = "onnx.onnx_version"  # on an fp32 version: the version of its ONNX variant (`serve --backend onnx`)
DISTILLED_VERSION_TAG = "distill.distilled_version"  # on an fp32 version: its distilled student
PRUNED_VERSION_TAG = "prune.pruned_version"  # on an fp32 version: its pruned copy
# the aliases that follow `champion` to its variants: alias -> the fp32 version's tag naming the variant
VARIANT_ALIASES = {CHAMPION_INT8: INT8_VERSION_TAG, CHAMPION_DISTILLED: DISTILLED_VERSION_TAG,
                   CHAMPION_PRUNED: PRUNED_VERSION_TAG}
log = logging.getLogger(__name__)
ANY_CHAMPION = "*"  # `expected` value that skips the compare (the move still happens under the lock)
MAX_TAG_CHARS = 5000  # registered-model tag values are VARCHAR(5000) in MLflow's SQL stores
LOCK_TIMEOUT_S = 300.0
LOCK_LEASE_S = 900.0  # a promotion lock older than this belongs to a killed promoter
LOCK_SUFFIX = ".promotion-lock"
PIN_TAG = "mmops.pin"  # registered-model tag: JSON of Pin while a human decision holds the champion
VARIANT_TAG, VARIANT_OF_TAG = "mmops.variant", "mmops.variant_of"  # on a variant version (int8, ...)

# gate.decision values `promote` accepts without --force (pending: never finished). `held`: passed the
# gate, but automatic promotion was suspended by a pin.
PROMOTABLE = ("promoted", "held")
Action = Literal["auto-promote", "promote", "rollback", "release"]


class PromotionError(UserError, RuntimeError):
    """A promotion or rollback that cannot happen; the message says why and what to do."""


class StaleChampionError(PromotionError):
    """The champion moved between the gate's comparison and the alias move."""


class AliasMove(BaseModel):
    """One alias move, as stored in the registry."""

    seq: int
    time: str
    actor: str
    action: Action
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    rules: dict[str, str] = {}
    forced: bool = False
    regated_against: str | None = None
    undo: bool = False
    pinned: bool = False  # this move pinned the champion (a human decision; see the module docstring)


class Pin(BaseModel):
    """A human decision holding `champion` (the `mmops.pin` tag); automatic promotion waits for `release`."""

    version: str
    actor: str
    time: str
    reason: str
    seq: int

    def describe(self) -> str:
        return f"pinned to v{self.version} by {self.actor} at {_short_time(self.time)}: {self.reason}"


@dataclass
class MoveResult:
    moved: bool
    from_version: str | None
    to_version: str
    events: list[AliasMove] = field(default_factory=list)
    regated_against: str | None = None
    decision: GateDecision | None = None
    held_by: Pin | None = None  # the auto path did not move because of this pin


def actor() -> str:
    """Who moves the alias: the MLflow user the server authenticates (MLFLOW_TRACKING_USERNAME), else
    `MMOPS_ACTOR`, else user@host. With both, the self-declared MMOPS_ACTOR follows in brackets."""
    authenticated, declared = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MMOPS_ACTOR")
    if authenticated:
        return f"{authenticated} ({declared})" if declared and declared != authenticated else authenticated
    if declared:
        return declared
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def lock_model_name(name: str) -> str:
    return f"{name}{LOCK_SUFFIX}"


@contextmanager
def promotion_lock(name: str, timeout: float = LOCK_TIMEOUT_S, lease: float = LOCK_LEASE_S, client=None) -> Iterator[str]:
    """Hold the promotion lock of registered model `name`, shared by every host that uses the registry.

    The lock is a registered model `<name>.promotion-lock`: creating a registered model is atomic
    (its name is unique in the registry's database), so exactly one promoter creates it and the
    others wait. A later promoter breaks the lock of a holder that was killed: at once when the
    holder was a process on the same host, else once its `lease` ran out (a live holder is never
    broken: promotion takes seconds or minutes, not `lease`).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = client or MlflowClient()
    lock, holder = lock_model_name(name), f"{actor()} {uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + timeout
    while True:
        tags = {"mmops.lock.holder": holder, "mmops.lock.expires": f"{time.time() + lease:.3f}",
                "mmops.lock.host": socket.gethostname(), "mmops.lock.pid": str(os.getpid())}
        try:
            client.create_registered_model(lock, tags=tags, description=f"promotion lock of {name}; held by {holder}")
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = _lock_tags(client, lock)
        if held is not None and _abandoned(held):
            log.warning("%s: breaking the abandoned promotion lock of %s", name, held.get("mmops.lock.holder", "?"))
            _delete_quietly(client, lock)
            continue
        if time.monotonic() > deadline:
            who = (held or {}).get("mmops.lock.holder", "?")
            raise PromotionError(
                f"another promotion of {name} ({who}) has held the registry lock {lock!r} for over {timeout:.0f}s; "
                "try again (a lock whose holder died expires by itself)"
            )
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield lock
    finally:
        if (_lock_tags(client, lock) or {}).get("mmops.lock.holder") == holder:
            _delete_quietly(client, lock)


def _abandoned(held: dict[str, str]) -> bool:
    """The lock's lease ran out, or its holder was a process on this host that no longer exists."""
    if float(held.get("mmops.lock.expires", "0")) < time.time():
        return True
    if held.get("mmops.lock.host") != socket.gethostname() or not held.get("mmops.lock.pid", "").isdigit():
        return False
    try:
        os.kill(int(held["mmops.lock.pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lock_tags(client, lock: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(lock).tags)
    except MlflowException:
        return None


def _delete_quietly(client, lock: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(lock)
    except MlflowException:
        pass  # someone else removed it first


def current_version(client, name: str, alias: str = CHAMPION) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def read_pin(client, name: str) -> Pin | None:
    """The pin holding `champion`, or None (no pin, no model, or an unreadable tag: logged, ignored)."""
    from mlflow.exceptions import MlflowException

    try:
        raw = client.get_registered_model(name).tags.get(PIN_TAG)
    except MlflowException:
        return None
    if not raw:
        return None
    try:
        return Pin.model_validate_json(raw)
    except ValueError:
        log.warning("%s: tag %s is not an mmops pin (%r); treated as a pin by an unknown actor", name, PIN_TAG, raw)
        return Pin(version="?", actor="?", time="?", reason=f"unreadable {PIN_TAG} tag", seq=0)


def release_hint(pin: Pin) -> str:
    return f"{pin.describe()}; `mmops release --reason ...` resumes automatic promotion"


def history_run_id(model_tags: dict[str, str]) -> str | None:
    """The history run a registered model's `mmops.history` tag names (None: no move recorded there yet)."""
    found = _HISTORY_RUN.search(model_tags.get(HISTORY_TAG, ""))
    return found.group(1) if found else None


def _event_tags(client, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(events by tag key, from the history run and any legacy registered-model tags; the model's tags)."""
    from mlflow.exceptions import MlflowException

    try:
        model_tags = dict(client.get_registered_model(name).tags)
    except MlflowException:
        return {}, {}
    events = {k: v for k, v in model_tags.items() if k.startswith(HISTORY_PREFIX)}  # legacy stores
    if run_id := history_run_id(model_tags):
        try:
            run_tags = client.get_run(run_id).data.tags
        except MlflowException:
            log.warning("%s: the history run %s named by tag %s is gone; its moves are not shown", name, run_id, HISTORY_TAG)
        else:
            events |= {k: v for k, v in run_tags.items() if k.startswith(HISTORY_PREFIX)}
    return events, model_tags


def read_history(client, name: str) -> list[AliasMove]:
    """Every recorded alias move of `name`, oldest first."""
    return _parse(name, _event_tags(client, name)[0])


def _parse(name: str, tags: dict[str, str]) -> list[AliasMove]:
    events = []
    for key, value in tags.items():
        try:
            events.append(AliasMove.model_validate_json(value))
        except ValueError:
            log.warning("%s: tag %s is not an mmops history event; skipped", name, key)
    return sorted(events, key=lambda e: (e.seq, e.time))


def version_rules(client, name: str, version: str) -> dict[str, str]:
    """The gate's verdicts recorded on a version (`gate.*` tags), rule -> 'pass value=... threshold=...'."""
    tags = client.get_model_version(name, version).tags
    return {k.removeprefix("gate."): v for k, v in sorted(tags.items()) if k.startswith("gate.")}


def decision_rules(decision: GateDecision) -> dict[str, str]:
    return {r.rule: f"{'pass' if r.passed else 'fail'} value={r.value} threshold={r.threshold}" for r in decision.rules}


def _encode(event: AliasMove) -> str:
    """The event as JSON within the tag size limit (rule details, then rules, give way first)."""
    text = event.model_dump_json()
    if len(text) > MAX_TAG_CHARS:
        text = event.model_copy(update={"rules": {k: v.split()[0] for k, v in event.rules.items()}}).model_dump_json()
    if len(text) > MAX_TAG_CHARS:
        text = event.model_copy(update={"rules": {"note": "too many rules; see the version's gate.* tags"}}).model_dump_json()
    return text


def _history_run(client, name: str, model_tags: dict[str, str]) -> str:
    """The model's history run (created on the first move); legacy event tags of the registered model
    are copied to it, then removed (call under the lock; a copy interrupted half-way reads the same)."""
    from mlflow.exceptions import MlflowException

    from mmops.registry.tracking import ensure_experiment

    run_id = history_run_id(model_tags)
    if run_id is not None:
        try:
            alive = client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            alive = False
        run_id = run_id if alive else None  # deleted by hand: start a new one
    if run_id is None:
        run = client.create_run(ensure_experiment(client, HISTORY_EXPERIMENT), run_name=f"alias history: {name}",
                                tags={HISTORY_OF_TAG: name})
        client.set_terminated(run.info.run_id)  # a record, not a job; its tags stay writable
        run_id = run.info.run_id
    for key, value in model_tags.items():
        if key.startswith(HISTORY_PREFIX):
            client.set_tag(run_id, key, value)
            client.delete_registered_model_tag(name, key)
    return run_id


def _record(client, name: str, **fields) -> AliasMove:
    """Append one event to the history run and update the model's summary tag (call under the lock:
    the sequence number is max + 1)."""
    tags, model_tags = _event_tags(client, name)
    recorded = _parse(name, tags)
    seq = max((e.seq for e in recorded), default=0) + 1
    event = AliasMove(seq=seq, time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields)
    run_id = _history_run(client, name, model_tags)
    client.set_tag(run_id, f"{HISTORY_PREFIX}{seq:06d}.{uuid.uuid4().hex[:8]}", _encode(event))
    summary = (f"{len(recorded) + 1} alias moves; last #{seq} {_short_time(event.time)} {event.action} {event.alias} "
               f"{describe_move(event)}; every move in run {run_id} (experiment {HISTORY_EXPERIMENT}): `mmops history`")
    client.set_registered_model_tag(name, HISTORY_TAG, summary)
    return event


def _move_champion(client, name: str, current: str | None, to: str, common: dict, pin: bool | None) -> list[AliasMove]:
    """Point `champion` at `to` and each alias of VARIANT_ALIASES (`champion_int8`, ...) at its variant of
    that kind (or remove it); record every move.

    `pin`: True pins the champion (human decision), False lifts any pin, None leaves pins alone."""
    client.set_registered_model_alias(name, CHAMPION, to)
    champion = _record(client, name, alias=CHAMPION, from_version=current, to_version=to, pinned=bool(pin), **common)
    if pin:
        held = Pin(version=to, actor=champion.actor, time=champion.time, reason=champion.reason, seq=champion.seq)
        client.set_registered_model_tag(name, PIN_TAG, held.model_dump_json())
    elif pin is False and read_pin(client, name) is not None:
        client.delete_registered_model_tag(name, PIN_TAG)
    events = [champion]
    tags, common = client.get_model_version(name, to).tags, {**common, "rules": {}}
    for alias, tag in VARIANT_ALIASES.items():
        variant, current_variant = tags.get(tag), current_version(client, name, alias)
        if variant and variant != current_variant:
            client.set_registered_model_alias(name, alias, variant)
        elif not variant and current_variant:
            client.delete_registered_model_alias(name, alias)
        else:
            continue
        events.append(_record(client, name, alias=alias, from_version=current_variant, to_version=variant, **common))
    return events


def compare_and_set(
    client,
    name: str,
    version: str,
    expected: str | None,
    *,
    action: Action,
    reason: str,
    rules: dict[str, str] | None = None,
    regate: Callable[[str | None], GateDecision] | None = None,
    forced: bool = False,
    undo: bool = False,
    pin: bool | None = None,
) -> MoveResult:
    """Move `champion` to `version` if it still is `expected` (ANY_CHAMPION: whatever it is now).

    Under the lock: the auto path (`action="auto-promote"`) first checks for a pin and does not move
    while one holds (`held_by` of the result). Then re-read the champion; if it changed, re-run the
    gate with `regate(new)` and move only if that passes, or raise StaleChampionError when there is
    no `regate`. `pin`: True pins the new champion, False lifts a pin, None leaves it (the auto path).
    """
    with promotion_lock(name, client=client):
        current = current_version(client, name, CHAMPION)
        if action == "auto-promote":
            held = read_pin(client, name)
            if held is not None and current != version:
                return MoveResult(False, current, version, held_by=held)
        decision, regated = None, None
        if expected != ANY_CHAMPION and current != expected:
            if regate is None:
                now, wanted = (f"v{v}" if v else "unset" for v in (current, expected))
                if action == "promote":  # the caller's expectation, not a race: nothing was compared
                    raise StaleChampionError(
                        f"{name}: the champion is {now}, not {wanted} as --expect-champion said; nothing changed."
                    )
                raise StaleChampionError(
                    f"{name}: champion is {now}, not {wanted} as expected; it moved since the comparison. "
                    "Nothing changed; check the new champion and run again."
                )
            decision, regated = regate(current), current
            rules = decision_rules(decision)
            if not decision.promote:
                return MoveResult(False, current, version, regated_against=regated, decision=decision)
        if current == version:
            return MoveResult(False, current, version, regated_against=regated, decision=decision)
        common = dict(actor=actor(), action=action, reason=reason, rules=rules or {}, forced=forced,
                      regated_against=regated, undo=undo)
        events = _move_champion(client, name, current, version, common, pin)
        write_model_card(client, name, version)
        return MoveResult(True, current, version, events, regated, decision)


def _require_version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        known = sorted((v.version for v in client.search_model_versions(f"name='{name}'")), key=int)
        raise PromotionError(f"{name} has no version {version}; versions: {', '.join(map(str, known)) or 'none'}") from None


def refuse_variant(mv, name: str, verb: str) -> None:
    """A variant (int8, or any version tagged `mmops.variant`) is never a `champion` target: it follows
    its fp32 source as `champion_int8`. Shared by promote and rollback."""
    variant = mv.tags.get(VARIANT_TAG)
    if variant:
        source = mv.tags.get(VARIANT_OF_TAG, "?")
        alias = f"{CHAMPION}_{variant}"
        follows = f"its variant follows as {alias}" if alias in VARIANT_ALIASES else "its variants follow it"
        raise PromotionError(
            f"{name} v{mv.version} is the {variant} variant of v{source}, not a champion candidate; "
            f"{verb} v{source} instead ({follows})"
        )


def promote(client, name: str, version: str, reason: str, expect: str | None = ANY_CHAMPION,
            force: bool = False, pin: bool = True) -> MoveResult:
    """Make `version` the champion by hand. A version the gate rejected needs `force`.

    `pin` (default): the move pins the champion, suspending automatic promotion until `release`;
    `pin=False` (`--no-pin`) moves without pinning and lifts an existing pin."""
    mv = _require_version(client, name, version)
    refuse_variant(mv, name, "promote")
    decision = mv.tags.get("gate.decision")
    if decision == "rejected" and not force:
        failed = [k.removeprefix("gate.") for k, v in mv.tags.items() if k.startswith("gate.") and v.startswith("fail")]
        raise PromotionError(
            f"{name} v{version} was rejected by the gate (failed: {', '.join(sorted(failed))}); "
            "pass --force to promote it anyway (recorded in the history)"
        )
    if decision not in PROMOTABLE and not force:
        why = "its registration never finished (the gate did not run)" if decision == "pending" else "it was never gated by mmops"
        raise PromotionError(
            f"{name} v{version} has gate.decision={decision or 'unset'}: {why}. Register the model again, "
            "or pass --force to promote it anyway (recorded in the history)"
        )
    if current_version(client, name) == str(version):
        raise PromotionError(f"{name} v{version} is already the champion")
    return compare_and_set(client, name, str(version), expect, action="promote", reason=reason,
                           rules=version_rules(client, name, str(version)), forced=force, pin=pin)


def _champion_moves(events: list[AliasMove]) -> list[AliasMove]:
    """The moves of `champion` (release events record no move)."""
    return [e for e in events if e.alias == CHAMPION and e.action != "release"]


def previous_champion(events: list[AliasMove]) -> str | None:
    """The champion before the current one: promotions push, rollbacks without --to pop (undo)."""
    stack: list[str | None] = []
    for e in _champion_moves(events):
        if e.undo:
            if stack:
                stack.pop()
        else:
            stack.append(e.from_version)
    return stack[-1] if stack else None


def rollback(client, name: str, reason: str, to: str | None = None) -> MoveResult:
    """Point `champion` back at `to`, or (no `to`) at the champion before the current one; pins it."""
    current = current_version(client, name)
    if current is None:
        raise PromotionError(f"{name} has no champion to roll back")
    undo = to is None
    if undo:
        events = _champion_moves(read_history(client, name))
        if not events or events[-1].to_version != current:
            last = f"v{events[-1].to_version}" if events else "nothing"
            raise PromotionError(
                f"{name}: champion v{current} was not set through mmops (history ends at {last}); "
                "name the version with --to"
            )
        to = previous_champion(events)
        if to is None:
            raise PromotionError(f"{name}: no champion before v{current} in the history; name one with --to")
    refuse_variant(_require_version(client, name, to), name, "roll back to")
    if str(to) == current:
        raise PromotionError(f"{name} v{to} is already the champion")
    return compare_and_set(client, name, str(to), current, action="rollback", reason=reason,
                           rules=version_rules(client, name, str(to)), undo=undo, pin=True)


def release(client, name: str, reason: str) -> AliasMove:
    """Remove the pin: automatic promotion resumes with the next registration. Recorded as a
    `release` event (alias `champion`, from = to = the champion: nothing moves)."""
    with promotion_lock(name, client=client):
        held = read_pin(client, name)
        if held is None:
            raise PromotionError(f"{name}: the champion is not pinned; automatic promotion is already on")
        current = current_version(client, name)
        client.delete_registered_model_tag(name, PIN_TAG)
        return _record(client, name, actor=actor(), action="release", alias=CHAMPION, from_version=current,
                       to_version=current, reason=f"{reason} (released: {held.describe()})"[:2000])


def _rules_summary(rules: dict[str, str]) -> str:
    failed = [k for k, v in rules.items() if v.startswith("fail")]
    passed = sum(1 for v in rules.values() if v.startswith("pass"))
    if failed:
        return f"{passed} pass; FAIL: {', '.join(failed)}"
    return f"{passed} pass" if passed else ""


def _short_time(iso: str) -> str:
    """`2026-11-30T14:55:22.123+00:00` -> `2026-11-30 14:55:22` (UTC, as recorded)."""
    return iso.replace("T", " ").replace("+00:00", "")[:19]


def version_label(version: str | None, missing: str = "(unset)") -> str:
    return f"v{version}" if version else missing


def describe_move(e: AliasMove) -> str:
    """`v2 → v1`, `(unset) → v4`, `v4 → (removed)`; `v5 (pin released)` for a release."""
    if e.action == "release":
        return f"{version_label(e.from_version)} (pin released)"
    return f"{version_label(e.from_version)} → {version_label(e.to_version, '(removed)')}"


def history_table(name: str, events: list[AliasMove], pin: Pin | None = None):
    """The history, oldest first, as a stacked layout that reads at 80 columns: per event one line
    with #, time, action, alias and from → to (never truncated: folded if the terminal is narrower
    still), then the actor, reason, rules and notes on indented lines that wrap on words."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    heads = [(f"#{e.seq}", _short_time(e.time), e.action, e.alias, describe_move(e)) for e in events]
    widths = [max((len(h[i]) for h in heads), default=0) for i in range(5)]
    title = f"{name}: alias history ({len(events)} moves)"
    parts: list = [Text(title, style="bold", overflow="fold")]
    parts.append(Text(release_hint(pin) if pin else "not pinned: automatic promotion is on", overflow="fold"))
    for e, head in zip(events, heads):
        line = Text(overflow="fold", no_wrap=False)
        for i, (value, width) in enumerate(zip(head, widths)):
            style = "bold" if i == 2 else None
            line.append(value.ljust(width) if i < 4 else value, style=style)
            line.append("  ")
        if e.pinned:
            line.append("[pinned]", style="yellow")
        notes = [n for n, on in (("forced", e.forced), (f"re-gated vs v{e.regated_against}", e.regated_against),
                                 ("undo", e.undo)) if on]
        detail = f"by {e.actor}: {e.reason}"
        rules = _rules_summary(e.rules) if e.action != "release" else ""
        extra = "; ".join(x for x in (f"rules: {rules}" if rules else "", ", ".join(notes)) if x)
        parts.append(line)
        parts.append(Padding(Text(detail + (f" ({extra})" if extra else ""), overflow="fold"), (0, 0, 0, 4)))
    return Group(*parts)
