"""promote / rollback / history on a real SQLite MLflow store (versions without model files)."""

from __future__ import annotations

import pytest

from mmops.registry.gate import GateDecision, RuleResult
from mmops.registry.promotion import (
    CHAMPION,
    CHAMPION_INT8,
    HISTORY_PREFIX,
    MAX_TAG_CHARS,
    PromotionError,
    StaleChampionError,
    actor,
    compare_and_set,
    current_version,
    history_run_id,
    lock_model_name,
    previous_champion,
    promote,
    promotion_lock,
    read_history,
    rollback,
)


def _moves(client, name, alias=CHAMPION):
    return [(e.from_version, e.to_version, e.action) for e in read_history(client, name) if e.alias == alias]


def test_promote_records_history_and_int8_follows(model, monkeypatch):
    client, name = model
    monkeypatch.setenv("MMOPS_ACTOR", "alice@ci")
    promote(client, name, "1", "first release")
    result = promote(client, name, "2", "better on audio")
    assert result.moved and result.from_version == "1"
    assert current_version(client, name) == "2" and current_version(client, name, CHAMPION_INT8) == "4"
    events = read_history(client, name)
    assert [(e.seq, e.alias, e.from_version, e.to_version) for e in events] == [
        (1, CHAMPION, None, "1"), (2, CHAMPION, "1", "2"), (3, CHAMPION_INT8, None, "4")
    ]
    assert {e.actor for e in events} == {"alice@ci"} and events[1].reason == "better on audio"
    assert events[1].rules["floor.accuracy"] == "pass value=0.9 threshold=0.8"
    assert events[0].time < events[1].time


def test_rollback_without_to_undoes_like_a_stack(model):
    client, name = model
    promote(client, name, "1", "r1")
    promote(client, name, "2", "r2")
    back = rollback(client, name, "v2 misbehaves in production")
    assert back.moved and (back.from_version, back.to_version) == ("2", "1")
    assert current_version(client, name) == "1"
    assert current_version(client, name, CHAMPION_INT8) is None  # v1 has no int8 variant: alias removed
    with pytest.raises(PromotionError, match="no champion before v1"):
        rollback(client, name, "again")
    assert _moves(client, name) == [(None, "1", "promote"), ("1", "2", "promote"), ("2", "1", "rollback")]
    assert _moves(client, name, CHAMPION_INT8) == [(None, "4", "promote"), ("4", None, "rollback")]
    assert read_history(client, name)[-2].undo


def test_previous_champion_walks_history():
    from mmops.registry.promotion import AliasMove

    def ev(seq, frm, to, undo=False):
        return AliasMove(seq=seq, time="t", actor="a", action="rollback" if undo else "promote", alias=CHAMPION,
                         from_version=frm, to_version=to, reason="r", undo=undo)

    assert previous_champion([ev(1, None, "1"), ev(2, "1", "2"), ev(3, "2", "3")]) == "2"
    assert previous_champion([ev(1, None, "1"), ev(2, "1", "2"), ev(3, "2", "3"), ev(4, "3", "2", True)]) == "1"
    assert previous_champion([ev(1, None, "1"), ev(2, "1", "2"), ev(3, "2", "1", True)]) is None


def test_rollback_to_a_named_version(model):
    client, name = model
    for v in ("1", "2"):
        promote(client, name, v, "r")
    result = rollback(client, name, "pin the first release", to="1")
    assert result.moved and current_version(client, name) == "1"
    last = [e for e in read_history(client, name) if e.alias == CHAMPION][-1]
    assert (last.action, last.undo, last.from_version, last.to_version) == ("rollback", False, "2", "1")


def test_rollback_refuses_when_champion_was_moved_outside_mmops(model):
    client, name = model
    promote(client, name, "1", "r")
    client.set_registered_model_alias(name, CHAMPION, "2")  # by hand, no history
    with pytest.raises(PromotionError, match="champion v2 was not set through mmops.*--to"):
        rollback(client, name, "r")
    assert rollback(client, name, "explicit", to="1").moved


def test_rejected_version_needs_force_and_is_marked(model):
    client, name = model
    with pytest.raises(PromotionError, match=r"v3 was rejected by the gate \(failed: floor.accuracy\).*--force"):
        promote(client, name, "3", "hotfix")
    assert current_version(client, name) is None and read_history(client, name) == []
    promote(client, name, "3", "hotfix, accepted risk", force=True)
    assert read_history(client, name)[-1].forced


def test_int8_variant_and_unknown_versions_are_refused(model):
    client, name = model
    with pytest.raises(PromotionError, match="v4 is the int8 variant of v2, .*; promote v2 instead"):
        promote(client, name, "4", "r")
    with pytest.raises(PromotionError, match="has no version 9; versions: 1, 2, 3, 4"):
        promote(client, name, "9", "r")
    with pytest.raises(PromotionError, match="no champion to roll back"):
        rollback(client, name, "r")


def test_compare_and_set_refuses_a_stale_expectation(model):
    client, name = model
    promote(client, name, "1", "r")
    with pytest.raises(StaleChampionError, match="champion is v1, not v2"):
        promote(client, name, "3", "r", expect="2", force=True)
    assert current_version(client, name) == "1" and len(read_history(client, name)) == 1


def _decision(promote_: bool, champion: str | None) -> GateDecision:
    rule = RuleResult(rule="regression.macro_f1", value=0.0 if promote_ else 0.1, threshold=0.02, passed=promote_)
    return GateDecision(promote=promote_, rules=[rule], champion_version=champion)


def test_compare_and_set_regates_against_a_changed_champion(model):
    client, name = model
    promote(client, name, "1", "r", pin=False)  # unpinned: automatic promotion may follow
    seen = []

    def regate(champion):
        seen.append(champion)
        return _decision(False, champion)

    result = compare_and_set(client, name, "2", None, action="auto-promote", reason="r", regate=regate)
    assert seen == ["1"] and not result.moved and result.regated_against == "1"
    assert current_version(client, name) == "1"

    result = compare_and_set(client, name, "2", None, action="auto-promote", reason="r",
                             regate=lambda c: _decision(True, c))
    assert result.moved and result.regated_against == "1"
    last = [e for e in read_history(client, name) if e.alias == CHAMPION][-1]
    assert (last.from_version, last.to_version, last.regated_against) == ("1", "2", "1")
    assert last.rules == {"regression.macro_f1": "pass value=0.0 threshold=0.02"}


def test_history_tag_stays_within_the_store_limit(model):
    client, name = model
    rules = {f"floor.metric_{i:03d}": "pass value=0.123456 threshold=0.1 " + "x" * 40 for i in range(120)}
    compare_and_set(client, name, "1", None, action="promote", reason="many rules", rules=rules)
    tags = client.get_run(history_run_id(client.get_registered_model(name).tags)).data.tags
    values = [v for k, v in tags.items() if k.startswith(HISTORY_PREFIX)]
    assert len(values) == 1 and len(values[0]) <= MAX_TAG_CHARS
    assert set(read_history(client, name)[0].rules.values()) == {"pass"}


def test_actor_defaults_to_user_at_host(monkeypatch):
    monkeypatch.delenv("MMOPS_ACTOR", raising=False)
    assert "@" in actor()
    monkeypatch.setenv("MMOPS_ACTOR", "bot")
    assert actor() == "bot"


@pytest.mark.parametrize("decision", ["pending", None])
def test_unfinished_or_ungated_version_needs_force(model, decision):
    client, name = model
    if decision is None:
        client.delete_model_version_tag(name, "2", "gate.decision")
    else:
        client.set_model_version_tag(name, "2", "gate.decision", decision)
    with pytest.raises(PromotionError, match=f"gate.decision={decision or 'unset'}.*--force"):
        promote(client, name, "2", "looks fine")
    assert current_version(client, name) is None
    assert promote(client, name, "2", "checked by hand", force=True).moved
    assert read_history(client, name)[0].forced


def test_promotion_lock_lives_in_the_registry_and_excludes_others(model):
    client, name = model
    with promotion_lock(name, client=client) as lock:
        assert lock == lock_model_name(name) and client.get_registered_model(lock).tags["mmops.lock.holder"]
        with pytest.raises(PromotionError, match="another promotion .* held the registry lock"):
            with promotion_lock(name, timeout=0.5, client=client):
                pass
    assert not client.search_registered_models(f"name='{lock_model_name(name)}'")  # released


def test_an_expired_lock_of_a_killed_promoter_is_broken(model):
    client, name = model
    client.create_registered_model(lock_model_name(name), tags={"mmops.lock.holder": "dead@host 1",
                                                                "mmops.lock.expires": "0"})
    assert promote(client, name, "1", "after a crash").moved
    assert not client.search_registered_models(f"name='{lock_model_name(name)}'")


def test_the_lock_of_a_dead_process_on_this_host_is_broken_at_once(model):
    import socket
    import subprocess

    client, name = model
    dead = subprocess.Popen(["true"])
    dead.wait()
    client.create_registered_model(lock_model_name(name), tags={
        "mmops.lock.holder": "killed", "mmops.lock.expires": "9e18", "mmops.lock.host": socket.gethostname(),
        "mmops.lock.pid": str(dead.pid)})
    assert promote(client, name, "1", "after a kill").moved
