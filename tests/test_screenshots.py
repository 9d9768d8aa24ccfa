"""`make screenshots` without a host: which host modules it runs, how it skips one that cannot be built, and the
Nuke knob panel it draws from the node definition (tests/hosts/screenshots*.py)."""
from __future__ import annotations

import struct
import types

import numpy as np

from tests.hosts import screenshots, screenshots_gimp, screenshots_nuke


def test_every_host_module_is_found_by_its_file_name():
    hosts = dict(screenshots.host_modules())
    assert hosts["gimp"] == "tests.hosts.screenshots_gimp" and hosts["nuke"] == "tests.hosts.screenshots_nuke"


def test_a_host_that_cannot_be_built_is_skipped_with_its_reason(monkeypatch, tmp_path, capsys):
    fake = types.SimpleNamespace(unavailable_reason=lambda: "no chroot here",
                                 take=lambda images: (_ for _ in ()).throw(AssertionError("must not run")))
    monkeypatch.setattr(screenshots, "host_modules", lambda: [("fake", "fake_module")])
    monkeypatch.setattr(screenshots.importlib, "import_module", lambda name: fake)
    assert screenshots.main(["--out", str(tmp_path)]) == 0
    assert "fake: skipped: no chroot here" in capsys.readouterr().out


def test_a_picture_over_the_size_limit_fails_the_run(monkeypatch, tmp_path, capsys):
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * (screenshots.MAX_BYTES + 1))
    fake = types.SimpleNamespace(unavailable_reason=lambda: None, take=lambda images: [big])
    monkeypatch.setattr(screenshots, "host_modules", lambda: [("fake", "fake_module")])
    monkeypatch.setattr(screenshots.importlib, "import_module", lambda name: fake)
    assert screenshots.main(["--out", str(tmp_path)]) == 1
    assert "over the 300 KB limit" in capsys.readouterr().out


def test_nuke_knobs_come_from_build_and_leave_out_hidden_and_node_tab_knobs():
    name, rows = screenshots_nuke.knob_rows()
    names = [row[1] for row in rows]
    assert name == "Mattebox1" and names[0] == "mattebox_tab"
    for knob in ("endpoint", "engine", "band_width", "outputs", "matte", "status"):
        assert knob in names
    assert "name" not in names and "mattebox_version" not in names  # Node tab / INVISIBLE
    engine = rows[names.index("engine")]
    assert engine[0] == "Enumeration_Knob" and engine[3] == "auto"
    picture = np.asarray(screenshots_nuke.draw(name, rows))
    assert picture.shape[1] == screenshots_nuke.WIDTH and picture.shape[0] > 30 * len(rows)


def test_xwd_dumps_are_read_as_rgb(tmp_path):
    """A 2×3 LSB-first 32-bit dump, the layout Xvfb -fbdir writes on x86: BGRX bytes per pixel."""
    width, height = 3, 2
    fields = [100, 7, 2, 24, width, height, 0, 0, 32, 0, 32, 32, 4 * width, 4, 0xFF0000, 0xFF00, 0xFF, 8, 256, 0,
              width, height, 0, 0, 0]
    pixels = np.arange(width * height * 4, dtype=np.uint8).reshape(height, width, 4)
    (tmp_path / "x.xwd").write_bytes(struct.pack(">25I", *fields) + pixels.tobytes())
    rgb = screenshots_gimp.read_xwd(tmp_path / "x.xwd")
    np.testing.assert_array_equal(rgb, pixels[..., [2, 1, 0]])
