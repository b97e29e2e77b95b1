"""Content hashes: one helper for a file, one for a folder."""

from mmops.data.hashing import tree_sha256


def test_folder_hash_is_content_and_location_independent(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "checkpoint.pt").write_bytes(b"weights")
        (d / "sub" / "config.json").write_text("{}")
    assert tree_sha256(a) == tree_sha256(b)
    (b / "sub" / "config.json").write_text('{"x": 1}')
    assert tree_sha256(a) != tree_sha256(b)
    assert tree_sha256(a / "checkpoint.pt") != tree_sha256(a) and tree_sha256(tmp_path / "nothing") == "absent"
