"""The ready configs describe their fusion as it is built (the header is what a user reads first)."""

from __future__ import annotations

from pathlib import Path

from mmops.models.fusion import CrossAttentionConfig
from mmops.params_file import load_params

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
POOLS = ("cls", "mean", "concat")


def _header(path: Path) -> str:
    """The leading comment block of a config file."""
    lines = path.read_text().splitlines()
    return "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])


def test_every_cross_attention_config_header_names_the_pooling_it_builds():
    checked = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        fusion = load_params(path, []).model.fusion
        if fusion.name != "cross_attention":
            continue
        pool = CrossAttentionConfig.model_validate(fusion.options).pool  # the default when options omit it
        header = _header(path)
        assert f"pool: {pool}" in header, f"{path.name}: the header does not say `pool: {pool}`:\n{header}"
        wrong = [p for p in POOLS if p != pool and (f"{p} pool" in header.lower() or f"pool: {p}" in header)]
        assert not wrong, f"{path.name}: the header names pooling {wrong}, the config builds {pool}:\n{header}"
        checked.append(path.name)
    assert "cross_attention_fusion.yaml" in checked
