"""Where the files the installers put into hosts come from: the tree this package itself runs from.

Two layouts, told apart by what lies beside this package:

* a source checkout (or an editable install): ``nodes/<host>/`` and ``plugin/mattebox_plugin/`` at the project
  root, two folders above this file;
* an installed wheel: pyproject.toml maps ``nodes/`` into this package, so a host's files are
  ``mattebox_installers/nodes/<host>/``, and the client package ``mattebox_plugin`` is this package's sibling in
  site-packages.

The installed layout is looked for first: it is never present in a checkout. Standard library only, and the client
package is located, not imported (installers run before anything else is installed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: the hosts whose files ship in nodes/
HOSTS = ("blender", "gimp", "nuke")
_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parents[1]


class PayloadMissing(FileNotFoundError):
    """Neither layout holds the files: a wheel built without them, or a partial copy of a checkout."""


def host_dir(host: str) -> Path:
    """The folder of one host's files: ``nodes/<host>`` in a checkout, ``mattebox_installers/nodes/<host>``
    installed (Blender: ``mattebox_blender/``; GIMP: ``mattebox/``; Nuke: ``init.py``, ``menu.py``,
    ``mattebox_nuke/``)."""
    if host not in HOSTS:
        raise ValueError(f"host: expected one of {', '.join(HOSTS)}, got {host!r}")
    return _first_folder(f"the {host} node files", [_PACKAGE / "nodes" / host, _CHECKOUT / "nodes" / host])


def plugin_package() -> Path:
    """The folder of the host-neutral client package ``mattebox_plugin``, which installers copy into every host."""
    return _first_folder("the client package mattebox_plugin",
                         [_PACKAGE.parent / "mattebox_plugin", _CHECKOUT / "plugin" / "mattebox_plugin"])


def _first_folder(what: str, candidates: Sequence[Path]) -> Path:
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise PayloadMissing(f"cannot find {what} (looked in {' and '.join(str(c) for c in candidates)}): this "
                         f"mattebox is incomplete; reinstall it, or run it from a full source checkout")
