"""Every MATTEBOX_* environment variable the code reads is documented in docs/environment.md."""
from __future__ import annotations

import re

from tests.conftest import ROOT

#: a variable name; Blender class-name prefixes such as MATTEBOX_OT_matte do not match (lower case follows)
VARIABLE = re.compile(r"\bMATTEBOX_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
#: markers the host harnesses print on stdout, not variables
NOT_VARIABLES = {"MATTEBOX_RESULT"}
SOURCES = ("plugin", "server", "installers", "nodes", "bench", "tests")


def test_every_environment_variable_is_documented():
    documented = set(VARIABLE.findall((ROOT / "docs" / "environment.md").read_text()))
    used = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh") and path.is_file():
                for name in VARIABLE.findall(path.read_text(errors="replace")):
                    used.setdefault(name, path.relative_to(ROOT))
    missing = {name: str(path) for name, path in used.items() if name not in documented | NOT_VARIABLES}
    assert not missing, f"undocumented environment variables (add them to docs/environment.md): {missing}"
    assert "MATTEBOX_ENDPOINT" in used  # the scan itself works
