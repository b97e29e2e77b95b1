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
