"""Mattebox GUI entry (menu.py runs only when Nuke's GUI is up): Nodes toolbar > Mattebox > Mattebox."""
import nuke

import mattebox_nuke

_toolbar = nuke.toolbar("Nodes")
_menu = _toolbar.addMenu(name="Mattebox")  # the reference documents addMenu(**kwargs) only
_menu.addCommand("Mattebox", mattebox_nuke.create)
nuke.menu("Nuke").addCommand("Mattebox/Matte selected", "import mattebox_nuke.node as m; "
                             "[m.matte(n) for n in nuke.selectedNodes() if m.is_mattebox(n)]")
