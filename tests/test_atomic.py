"""lqs_core.atomic: a failed write keeps the old file and leaves no temporary file; suffix and permissions."""

import os
import stat

import pytest

from lqs_core import atomic


def test_failed_write_keeps_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_temporary_name_keeps_the_suffix_and_the_file_gets_usual_permissions(tmp_path):
    seen = []
    for name in ("m.keras", "w.weights.h5", "fig.png", "noext"):
        with atomic.atomic_path(tmp_path / "sub" / name) as tmp:
            seen.append(os.path.basename(tmp))
            open(tmp, "wb").close()
    assert seen[0].startswith(".tmp-m.keras.") and seen[0].endswith(".keras")
    assert seen[1].endswith(".weights.h5") and seen[2].endswith(".png")
    mask = os.umask(0)
    os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "sub" / "m.keras").stat().st_mode)
    assert mode == 0o666 & ~mask
    assert atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01", fsync=True) == str(tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
