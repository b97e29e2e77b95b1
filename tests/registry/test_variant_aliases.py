"""The distilled and pruned variants follow `champion` like the int8 one (`champion_distilled`,
`champion_pruned`), are never champion targets themselves, and a refused comparison registers nothing
but is recorded on the fp32 version."""

from __future__ import annotations

import mlflow
import pytest

from mmops.compress.variant import VariantReport
from mmops.registry.promotion import (
    CHAMPION,
    CHAMPION_DISTILLED,
    CHAMPION_INT8,
    CHAMPION_PRUNED,
    DISTILLED_VERSION_TAG,
    PRUNED_VERSION_TAG,
    PromotionError,
    current_version,
    promote,
    read_history,
    rollback,
)
from mmops.registry.register import recorded_variant, register_variant


@pytest.fixture
def variants(model):
    """v1, v2 fp32 (v4: v2's int8); v5 = v2's distilled student, v6 = v2's pruned copy."""
    client, name = model
    for v, kind in (("5", "distilled"), ("6", "pruned")):
        client.create_model_version(name, source=f"/nowhere/v{v}", run_id=None)
        client.set_model_version_tag(name, v, "mmops.variant", kind)
        client.set_model_version_tag(name, v, "mmops.variant_of", "2")
    client.set_model_version_tag(name, "2", DISTILLED_VERSION_TAG, "5")
    client.set_model_version_tag(name, "2", PRUNED_VERSION_TAG, "6")
    return client, name


def test_variant_aliases_follow_the_champion_and_are_removed_with_it(variants):
    client, name = variants
    promote(client, name, "1", "first")
    assert [current_version(client, name, a) for a in (CHAMPION_DISTILLED, CHAMPION_PRUNED)] == [None, None]
    promote(client, name, "2", "second")
    assert current_version(client, name, CHAMPION) == "2"
    assert [current_version(client, name, a) for a in (CHAMPION_INT8, CHAMPION_DISTILLED, CHAMPION_PRUNED)] == ["4", "5", "6"]
    rollback(client, name, "back to v1")
    assert [current_version(client, name, a) for a in (CHAMPION_INT8, CHAMPION_DISTILLED, CHAMPION_PRUNED)] == [None] * 3
    moves = [(e.alias, e.from_version, e.to_version) for e in read_history(client, name) if e.alias == CHAMPION_DISTILLED]
    assert moves == [(CHAMPION_DISTILLED, None, "5"), (CHAMPION_DISTILLED, "5", None)]


def test_a_variant_is_not_a_champion_target(variants):
    client, name = variants
    with pytest.raises(PromotionError, match="v5 is the distilled variant of v2.*follows as champion_distilled"):
        promote(client, name, "5", "smaller")


def _report(accepted: bool) -> VariantReport:
    numbers = dict(n_test=10, accuracy_fp32=0.9, accuracy_variant=0.8, accuracy_drop=0.1, macro_f1_fp32=0.9,
                   macro_f1_variant=0.8, max_accuracy_drop=-1.0, size_fp32_bytes=100, size_variant_bytes=40,
                   size_ratio=0.4, folder_fp32_bytes=10, folder_variant_bytes=20, folder_ratio=2.0,
                   gzip_fp32_bytes=9, gzip_variant_bytes=18, gzip_ratio=2.0, latency_fp32_p50_ms=2.0,
                   latency_variant_p50_ms=0.5, latency_ratio=0.25, latency_batch=8, latency_fp32_batch_ms=1.0,
                   latency_variant_batch_ms=0.5, latency_batch_ratio=0.5, torch_threads=2)
    return VariantReport(variant="distilled", title="Distilled student", accepted=accepted, **numbers)


def test_a_refused_variant_is_recorded_on_the_fp32_version_and_not_registered(model, tmp_path):
    client, name = model
    versions = len(client.search_model_versions(f"name='{name}'"))
    built = []
    with mlflow.start_run():
        report, version = register_variant(
            client, name, "1", {"model_hash": "abc"}, "distilled", "distill",
            lambda out: built.append(out) or _report(accepted=False),
            lambda r: {"accuracy_drop": r.accuracy_drop, "latency_ratio": r.latency_ratio})
    assert version is None and built and built[0].name == "model_distilled"
    assert len(client.search_model_versions(f"name='{name}'")) == versions
    tags = client.get_model_version(name, "1").tags
    assert tags["distill.decision"] == "rejected" and tags["distill.accuracy_drop"] == "0.1"
    assert DISTILLED_VERSION_TAG not in tags
    recorded = recorded_variant(tags, "distill", DISTILLED_VERSION_TAG)
    assert recorded["accepted"] is False and recorded["latency_ratio"] == 0.25 and recorded["version"] is None
