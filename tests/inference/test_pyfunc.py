"""The MLflow pyfunc reads media as bytes or base64; file paths only inside MMOPS_MEDIA_ROOT."""

from __future__ import annotations

import base64
import os

import pytest

from mmops.errors import UserError
from mmops.inference.pyfunc import PYFUNC_CODE, media_cell


def test_bytes_and_base64_are_accepted_and_empty_is_missing(tmp_path):
    assert media_cell(b"RIFF", 0, "audio", None) == b"RIFF"
    assert media_cell(base64.b64encode(b"\x89PNG").decode(), 0, "image", None) == b"\x89PNG"
    assert media_cell("", 0, "image", None) is None and media_cell(None, 0, "image", None) is None


def test_paths_are_refused_without_a_media_root(tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    with pytest.raises(UserError, match=r"row 3, column 'audio': not base64.*MMOPS_MEDIA_ROOT is unset"):
        media_cell(str(secret), 3, "audio", None)


def test_paths_inside_the_root_are_read_and_escapes_refused(tmp_path):
    root = (tmp_path / "media").resolve()
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(b"png")
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0")
    os.symlink(outside, root / "link.png")
    assert media_cell("cats/a.png", 0, "image", root) == str(root / "cats" / "a.png")
    assert media_cell(str(root / "cats" / "a.png"), 0, "image", root) == str(root / "cats" / "a.png")
    for escape in ("../passwd", str(outside), "link.png", "/etc/passwd"):
        with pytest.raises(UserError, match="readable only inside"):
            media_cell(escape, 1, "image", root)


def test_the_logged_model_is_code_not_a_pickle():
    source = PYFUNC_CODE.read_text()
    assert "set_model(MultimodalPyfunc())" in source and "pickle" not in source
