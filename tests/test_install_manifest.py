"""Installers touch only what their own manifest lists, for every host (issue 17): install records each file it
writes (sha256) and each folder it makes; uninstall removes only unchanged listed files and then the folders it
made once empty; a folder an install did not make is neither written into nor removed; no link is followed."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mattebox_installers import blender, common, gimp, nuke


def _blender_zip(folder: Path) -> Path:
    """A stand-in for a built extension zip (building one fetches wheels)."""
    path = folder / "mattebox_blender-fake.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("blender_manifest.toml", 'id = "mattebox_blender"\n')
        zf.writestr("__init__.py", "")
        zf.writestr("mattebox_plugin/client.py", "")
    return path


class Host:
    """install / uninstall one host into ``tmp_path`` the way `mattebox install HOST --target ...` does."""

    def __init__(self, name: str, tmp_path: Path, monkeypatch):
        self.name, self.tmp = name, tmp_path
        if name == "blender":
            monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path / "blender-user"))
            monkeypatch.setattr(blender, "find_blender", lambda explicit=None: None)
        self.dest = {"gimp": tmp_path / "plug-ins" / gimp.PLUGIN_NAME, "nuke": tmp_path / "studio" / nuke.FOLDER,
                     "blender": tmp_path / "blender-user" / "extensions" / "user_default" / blender.EXTENSION_ID,
                     }[name]
        self.manifest = {"gimp": gimp.MANIFEST, "nuke": nuke.MANIFEST, "blender": blender.MANIFEST}[name]

    def install(self) -> None:
        if self.name == "gimp":
            gimp.install(target=self.tmp / "plug-ins", platform="linux-x64", vendor="never", write_config=False)
        elif self.name == "nuke":
            nuke.install(self.tmp / "studio", vendor=False, write_config=False)
        else:
            blender.install(zip_path=_blender_zip(self.tmp), blender_version="5.0", write_config=False)

    def uninstall(self) -> bool:
        if self.name == "gimp":
            return gimp.uninstall(self.tmp / "plug-ins", "linux-x64")
        if self.name == "nuke":
            return nuke.uninstall(self.tmp / "studio")
        return blender.uninstall(blender_version="5.0")


HOSTS = ["gimp", "nuke", "blender"]


@pytest.fixture(params=HOSTS)
def host(request, tmp_path, monkeypatch) -> Host:
    return Host(request.param, tmp_path, monkeypatch)


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): ("link" if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def test_install_records_every_file_with_its_sha256_and_uninstall_removes_them_all(host):
    host.install()
    manifest = json.loads((host.dest / host.manifest).read_text())
    written = {p.relative_to(host.dest).as_posix() for p in host.dest.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == written - {host.manifest}
    assert all(manifest["files"][rel] == common._sha256(host.dest / rel) for rel in manifest["files"])
    assert "." in manifest["dirs"]
    assert host.uninstall() is True
    assert not host.dest.exists()


def test_uninstall_refuses_a_folder_no_install_made_and_changes_nothing(host):
    """The issue's case: `mattebox uninstall nuke --target DIR` deleted DIR/mattebox whatever it held."""
    host.dest.mkdir(parents=True)
    (host.dest / "precious.exr").write_bytes(b"an artist's render")
    (host.dest / "init.py").write_text("# someone else's plug-in\n")
    before = _tree(host.dest)
    with pytest.raises(common.InstallRefused, match="not removing anything"):
        host.uninstall()
    with pytest.raises(common.InstallRefused, match="not writing into it"):
        host.install()
    assert _tree(host.dest) == before


def test_uninstall_leaves_added_changed_and_linked_files_and_follows_no_link(host, tmp_path):
    host.install()
    manifest = json.loads((host.dest / host.manifest).read_text())
    installed = sorted(manifest["files"])
    folder = next(rel for rel in manifest["dirs"] if rel != ".")
    (host.dest / folder / "notes.txt").write_text("added by the artist")
    (host.dest / installed[0]).write_text("edited by the artist")
    victim = tmp_path / "victim.txt"
    victim.write_text("not mattebox's")
    (host.dest / installed[1]).unlink()
    (host.dest / installed[1]).symlink_to(victim)
    assert host.uninstall() is True
    assert victim.read_text() == "not mattebox's"
    assert (host.dest / folder / "notes.txt").read_text() == "added by the artist"
    assert (host.dest / installed[0]).read_text() == "edited by the artist"
    assert (host.dest / installed[1]).is_symlink()
    left = {p.relative_to(host.dest).as_posix() for p in host.dest.rglob("*") if not p.is_dir()}
    assert left == {f"{folder}/notes.txt", installed[0], installed[1]}  # every other installed file is gone


def test_install_never_writes_through_a_link_in_its_folder(host, tmp_path):
    host.install()
    manifest = json.loads((host.dest / host.manifest).read_text())
    victim = tmp_path / "victim.txt"
    victim.write_text("not mattebox's")
    planted = host.dest / "planted-by-someone"
    planted.symlink_to(victim)
    host.install()  # a reinstall replaces its own files and leaves the link alone
    assert victim.read_text() == "not mattebox's" and planted.is_symlink()
    assert json.loads((host.dest / host.manifest).read_text())["files"] == manifest["files"]


def test_a_gimp_install_from_before_the_digests_is_replaced_by_its_file_list(tmp_path):
    """GIMP's INSTALLED.json listed its files (no sha256, no folders) before: upgrading removes exactly those, and
    the folders it made stay the install's own."""
    dest = gimp.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    manifest = json.loads((dest / gimp.MANIFEST).read_text())
    old = dict(manifest, files=sorted(manifest["files"]))
    del old["dirs"]
    (dest / gimp.MANIFEST).write_text(json.dumps(old))
    (dest / "stale.py").write_text("an older version's module")
    (dest / "notes.txt").write_text("the artist's")
    old["files"].append("stale.py")
    (dest / gimp.MANIFEST).write_text(json.dumps(old))
    gimp.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    assert not (dest / "stale.py").exists() and (dest / "notes.txt").is_file()
    assert json.loads((dest / gimp.MANIFEST).read_text())["dirs"] == manifest["dirs"]
    (dest / "notes.txt").unlink()
    assert gimp.uninstall(tmp_path, "linux-x64") is True and not dest.exists()
