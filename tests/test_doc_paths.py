"""Every repository path the docs, README and code comments name exists (a renamed file must not leave a pointer
to nothing behind)."""
from __future__ import annotations

import re

from tests.conftest import ROOT

#: a path inside this repository, as docs and comments write it (`server/mattebox/x.py`, `bench/results/y.md`)
PATH = re.compile(r"(?<![\w/.-])((?:plugin|server|nodes|installers|tests|bench|docs|configs)/[\w./-]+"
                  r"\.(?:py|md|json|png|sh|toml))")
#: files a command writes when it runs (named as its output), not files of the repository
WRITTEN_BY_A_RUN = {"bench/results/device_session.json"}
SOURCES = ["README.md", "docs/**/*.md", "plugin/**/*.py", "server/**/*.py", "nodes/**/*.py", "installers/**/*.py",
           "bench/**/*.py"]


def test_every_named_repository_path_exists():
    named = {}
    for pattern in SOURCES:
        for path in ROOT.glob(pattern):
            for match in PATH.findall(path.read_text(errors="replace")):
                named.setdefault(match.rstrip("."), str(path.relative_to(ROOT)))
    assert "server/mattebox/server.py" in named  # the scan itself works
    missing = {p: where for p, where in named.items()
               if p not in WRITTEN_BY_A_RUN and "NAME" not in p and not (ROOT / p).exists()}  # NAME: a placeholder
    assert not missing, f"paths named but not in the repository (path: where): {missing}"
