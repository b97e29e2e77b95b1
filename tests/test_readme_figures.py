"""The README's measured figures are generated: each `<!-- NAME:begin -->` section equals what
its committed source (`bench/results.json`, `bench/byod.md`, `bench/demo.json`) renders."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import readme  # noqa: E402


def test_generated_sections_match_their_sources():
    drifted = readme.check()
    assert not drifted, (f"README sections {drifted} differ from their sources in bench/; "
                         "run `make bench` / `make demo` (or `python -c 'from bench.readme import update; update()'`)")


def test_demo_section_exists_and_is_rendered_from_demo_json():
    assert readme.DEMO.exists(), "bench/demo.json is missing: run `make demo`"
    text = readme.README.read_text()
    assert "<!-- demo:begin" in text and "<!-- demo:end -->" in text


def test_a_typed_edit_inside_a_section_is_caught(tmp_path):
    copy = tmp_path / "README.md"
    text = readme.README.read_text()
    copy.write_text(text)
    assert readme.check(copy) == []
    name = next(iter(readme.sections()))
    head, marker, body, tail = readme._split(text, name)
    copy.write_text(f"{head}{marker}\n{body.replace('|', '| 0.999 |', 1)}{tail}")
    assert readme.check(copy) == [name]


def test_a_partial_rerun_keeps_the_other_benchmarks_figures_days_and_machines():
    from bench.__main__ import merge

    fig = lambda bench, value: {"bench": bench, "figure": "f", "value": value, "unit": "ratio", "goal": "", "detail": ""}  # noqa: E731
    old = {"cpu": "Old CPU", "cores": 3, "memory_gib": 1.0, "gpu": None, "python": "3", "torch": "t"}
    new = old | {"cpu": "New CPU", "cores": 5}
    first = merge(None, [fig("serve", 1.0), fig("train", 2.0)], {"serve", "train"}, "2031-01-02T00:00:00+00:00", old, [])
    on_old = {"when": "2031-01-02T00:00:00+00:00", "cpu": "Old CPU", "cores": 3}
    assert first["measured"] == {"serve": on_old, "train": on_old}
    legacy = {k: v for k, v in first.items() if k != "measured"}  # a file from before per-benchmark records
    for previous in (first, legacy):
        second = merge(previous, [fig("train", 3.0)], {"train"}, "2031-02-03T00:00:00+00:00", new, ["x"])
        assert [(r["bench"], r["value"]) for r in second["figures"]] == [("serve", 1.0), ("train", 3.0)]
        assert second["measured"] == {"serve": on_old, "train": {"when": "2031-02-03T00:00:00+00:00", "cpu": "New CPU", "cores": 5}}
        assert second["machine"] == new and second["failed"] == ["x"]
    table = readme.bench_markdown(second)
    assert "the last run 2031-02-03 on New CPU, 5 cores" in table
    assert "| serve | 2031-01-02, Old CPU | f |" in table and "| train | 2031-02-03, New CPU | f |" in table
