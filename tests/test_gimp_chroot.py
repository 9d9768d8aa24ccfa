"""The GIMP chroot helper's decisions, without building anything (tests/hosts/gimp_chroot.py)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.hosts import gimp_chroot


def test_non_root_gets_a_clear_skip_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(gimp_chroot.os, "geteuid", lambda: 1000)
    assert gimp_chroot.unavailable_reason(tmp_path) == "the GIMP chroot needs root (chroot, mount and debootstrap)"
    with pytest.raises(gimp_chroot.ChrootUnavailable, match="needs root"):
        gimp_chroot.ensure_chroot(tmp_path)


def test_stamp_decides_readiness(tmp_path):
    assert not gimp_chroot.is_ready(tmp_path)
    (tmp_path / gimp_chroot.STAMP_NAME).write_text(json.dumps(dict(gimp_chroot.STAMP, layout=0)))
    assert not gimp_chroot.is_ready(tmp_path)  # an older layout is rebuilt
    (tmp_path / gimp_chroot.STAMP_NAME).write_text(json.dumps(gimp_chroot.STAMP))
    assert gimp_chroot.is_ready(tmp_path)


def test_default_root_is_in_the_cache_outside_the_clone(monkeypatch, tmp_path):
    monkeypatch.delenv("MATTEBOX_GIMP_CHROOT", raising=False)
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "cache"))
    assert gimp_chroot.default_root() == tmp_path / "cache" / "gimp-trixie"
    monkeypatch.setenv("MATTEBOX_GIMP_CHROOT", str(tmp_path / "elsewhere"))
    assert gimp_chroot.default_root() == tmp_path / "elsewhere"


def test_mirror_comes_from_the_hosts_apt_sources(monkeypatch, tmp_path):
    monkeypatch.delenv("MATTEBOX_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert gimp_chroot.debian_mirror(tmp_path) == "http://mirror.example/debian"
    assert gimp_chroot.debian_mirror(tmp_path / "none") == gimp_chroot.DEFAULT_MIRROR
    monkeypatch.setenv("MATTEBOX_DEBIAN_MIRROR", "http://local/debian")
    assert gimp_chroot.debian_mirror(tmp_path) == "http://local/debian"


def test_refuses_to_delete_a_root_with_mounts_inside(monkeypatch, tmp_path):
    monkeypatch.setattr(gimp_chroot, "_mounts_under", lambda path: [str(path / "proc")])
    (tmp_path / "root").mkdir()
    with pytest.raises(gimp_chroot.ChrootUnavailable, match="still mounted"):
        gimp_chroot._remove_tree(tmp_path / "root")
    assert (tmp_path / "root").is_dir()


def test_shell_quoting_survives_awkward_paths():
    text = "/tmp/it's a \"root\" $HOME"
    out = subprocess.run(["sh", "-c", f"printf %s {gimp_chroot._sh_quote(text)}"], capture_output=True, text=True)
    assert out.stdout == text
