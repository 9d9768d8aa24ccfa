"""Generate tests/fakes/nuke_api.json: the whitelist of Nuke's Python API that the fake ``nuke`` enforces.

Source: Foundry's Python API reference, learn.foundry.com/nuke/developers/<ver>/pythondevguide/_autosummary/
(nuke.<function>.html for module functions, nuke.<Class>.html for a class's method table), read through the
``search`` tool of the session that wrote this (docs corpus) on 2026-12-05. Nuke cannot be installed here and the
pages are not fetched at run time, so what was read is transcribed below, one signature a line, exactly as the
page prints it (names and parameter lists only, no prose), then parsed into JSON by :func:`build`. To check or
extend it, open the page named in the ``# <url>`` comment above a block.

Line grammar::

    # ref:132/nuke.createNode              the page the following lines were read from (kept in the JSON):
                                           ref:<ver>/<page> is .../developers/<ver>/pythondevguide/_autosummary/
                                           <page>.html, epydoc:<ver>/<page> .../<ver>/pythonreference/<page>.html,
                                           src:<ver>/<module> .../<ver>/pythondevguide/_modules/<module>.html
    nuke.name(a, b, [c], [d=1])            a module function; [x] marks an optional parameter
    Class.method(a, [b])                   a method of nuke.Class (self not written)
    Class < Base                           nuke.Class inherits Base's methods ("Bases:" on the page)
    attr nuke.NAME                         a module attribute that is not a function (constants, env)
    ... @13.2 @14.0                        only in these versions (default: all of VERSIONS)

Where a page was found for only some versions, the line holds for all four unless a version-specific line says
otherwise (the reference pages of 13.2-16.0 share these signatures except where tagged). Run:
``python tests/fakes/nuke_api_gen.py`` (writes the JSON beside this file).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Dict, List

VERSIONS = ("13.2", "14.0", "15.1", "16.0")

SIGNATURES = """
# ref:132/nuke.createNode
nuke.createNode(node, [args], [inpanel]) @13.2 @14.0 @15.1
# ref:160/nuke.createNode
nuke.createNode(node, [knobs], [inpanel]) @16.0
# ref:140/nuke.allNodes
nuke.allNodes([filter], [group], [recurseGroups])
# ref:140/nuke.selectedNodes
nuke.selectedNodes([filter]) @13.2 @14.0
# ref:151/nuke.selectedNodes
nuke.selectedNodes([filter], [recursive]) @15.1 @16.0
# UNVERIFIED (no page returned by the search): nuke.selectedNode, toNode, delete, root, thisNode/Knob/Group, views
# (nuke.frame: ref:150/nuke.frame)
nuke.selectedNode()
nuke.toNode(s)
nuke.delete(n)
nuke.root()
nuke.thisNode()
nuke.thisKnob()
nuke.thisGroup()
nuke.frame([f])
nuke.views()
# ref:130/nuke.render (execute's text)
nuke.execute(nameOrNode, [start], [end], [incr], [views], [continueOnError=False])
# ref:132/nuke.executeMultiple
nuke.executeMultiple(nodes, [ranges], [views], [continueOnError=False])
# src:140/nuke_internal/executeInMain (cited in docs/hosts/nuke.md)
nuke.executeInMainThread(call, [args=()], [kwargs={}])
nuke.executeInMainThreadWithResult(call, [args=()], [kwargs={}])
# UNVERIFIED (no page returned by the search): nuke.message, critical, tprint
nuke.message(prompt)
nuke.critical(prompt)
nuke.tprint(*value, [sep], [end], [file])
# ref:150/nuke.scriptSaveAs
nuke.scriptSaveAs([filename=None], [overwrite=-1])
# ref:131/nuke.scriptSave
nuke.scriptSave([filename=None])
# UNVERIFIED (no page returned by the search): nuke.scriptOpen
nuke.scriptOpen(filename)
# ref:140/nuke.scriptClear (scriptName unverified)
nuke.scriptClear([resetToCompiledDefaults=False], [clearUserKnobs=False])
nuke.scriptName()
# UNVERIFIED (no page returned by the search): nuke.menu, toolbar
nuke.menu(name)
nuke.toolbar(name, [create=True])
# ref:130/nuke.pluginAddPath (pluginAppendPath, pluginPath unverified)
nuke.pluginAddPath(args, [addToSysPath=True])
nuke.pluginAppendPath(args, [addToSysPath=True])
nuke.pluginPath()
# ref:132/nuke.addKnobChanged (same form; these two unverified)
nuke.addBeforeFrameRender(call, [args=()], [kwargs={}], [nodeClass='Write'])
nuke.addOnScriptLoad(call, [args=()], [kwargs={}], [nodeClass='Root'])
attr nuke.env
attr nuke.nodes
attr nuke.INVISIBLE
attr nuke.STARTLINE
attr nuke.DISABLED
attr nuke.CancelledError

# ref:132/nuke.Node (names; parameters: epydoc:113/nuke.Node-class)
Node.Class()
Node.addKnob(k)
Node.removeKnob(k)
Node.allKnobs()
Node.knob(p)
Node.knobs()
Node.name()
Node.fullName()
Node.setName(name, [uncollide=True], [updateExpressions=False])
Node.input(i)
Node.inputs()
Node.setInput(i, node)
Node.maxInputs()
Node.dependent([what], [forceEvaluate])
Node.error()
Node.hasError()
Node.firstFrame()
Node.lastFrame()
Node.channels()
Node.format()
Node.pixelAspect()
Node.width()
Node.height()
Node.sample(c, x, y, [dx], [dy], [frame])
Node.metadata([key], [time], [view])
Node.setSelected(selected)
Node.isSelected()
Node.readKnobs(s)
Node.writeKnobs(i)
# epydoc:113/nuke.Group-class, ref:17.1/nuke.Group
Group < Node
Group.begin()
Group.end()
Group.nodes()
Group.numNodes()
Group.node(s)
Group.output()
Group.run(callable)
Group.selectedNodes()
Group.selectedNode()
# ref:160/nuke.Root.Class
Root < Group
Root.addView(s)
Root.deleteView(s)
# ref:131/nuke.Gizmo
Gizmo < Group

# epydoc:80/nuke.Link_Knob-class (inherited from Knob)
Knob.Class()
Knob.name()
Knob.label()
Knob.setLabel(s)
Knob.node()
Knob.value()
Knob.getValue()
Knob.setValue(val)
Knob.fromScript(s)
Knob.toScript([quote], [context])
Knob.setFlag(f)
Knob.clearFlag(f)
Knob.getFlag(f)
Knob.setEnabled(enabled)
Knob.enabled()
Knob.setVisible(visible)
Knob.visible()
Knob.setTooltip(s)
Knob.tooltip()
# epydoc:122/nuke.String_Knob-class
String_Knob < Knob
String_Knob.getText([oc])
String_Knob.setText(val, [view])
String_Knob.setValue(val, [view])
String_Knob.value([oc])
String_Knob.getValue([oc])
# ref:131/nuke.EvalString_Knob
EvalString_Knob < String_Knob
EvalString_Knob.evaluate()
# ref:151/nuke.File_Knob
File_Knob < EvalString_Knob
File_Knob.fromUserText(s)
File_Knob.getEvaluatedValue([oc])
Multiline_Eval_String_Knob < EvalString_Knob
Text_Knob < Knob
Tab_Knob < Knob
Array_Knob < Knob
Int_Knob < Array_Knob
Double_Knob < Array_Knob
Double_Knob.setRange(minimum, maximum)
Boolean_Knob < Array_Knob
# epydoc:120/nuke.Enumeration_Knob-class
Unsigned_Knob < Array_Knob
Enumeration_Knob < Unsigned_Knob
Enumeration_Knob.enumName(n)
Enumeration_Knob.__init__(name, label, items)
Enumeration_Knob.values()
Enumeration_Knob.setValues(items)
Enumeration_Knob.numValues()
# UNVERIFIED (no page returned by the search): ChannelMask_Knob, Format_Knob (epydoc:70), Script_Knob,
# PyScript_Knob, Disable_Knob
ChannelMask_Knob < Knob
Format_Knob < Knob
Format_Knob.actualValue()
Disable_Knob < Boolean_Knob
# ref:17.1/nuke.Script_Knob (and epydoc:63/nuke.Script_Knob-class)
Script_Knob < String_Knob
Script_Knob.execute()
Script_Knob.command()
# ref:132/nuke.PyScript_Knob
PyScript_Knob < Script_Knob
PyScript_Knob.__init__(name, [label=None], [command=None])
# UNVERIFIED (no page returned by the search): the other knob constructors, as Foundry's 'Custom Panels' guide
# calls them
String_Knob.__init__(name, [label], [text])
File_Knob.__init__(name, [label])
Text_Knob.__init__(name, [label], [text])
Tab_Knob.__init__(name, [label])
Int_Knob.__init__(name, [label])
Double_Knob.__init__(name, [label])
Boolean_Knob.__init__(name, [label], [value])

# ref:140/nuke.Format
Format.width()
Format.height()
Format.name()
Format.pixelAspect()
Format.setPixelAspect(aspectRatio)
# ref:131/nuke.ProgressTask
ProgressTask.isCancelled()
ProgressTask.setMessage(s)
ProgressTask.setProgress(i)
# ref:160/nuke.Menu (MenuItem: 70)
MenuItem.name()
MenuItem.invoke()
MenuItem.script()
Menu < MenuItem
Menu.addCommand(name, [command], [shortcut], [icon], [tooltip], [index], [readonly])
Menu.addMenu(**kwargs)
Menu.findItem(name)
Menu.items()
ToolBar < Menu
"""

_LINE = re.compile(r"^(?:(?P<attr>attr\s+nuke\.(?P<attr_name>\w+))|(?P<cls>\w+)\s*<\s*(?P<base>\w+)|"
                   r"(?P<owner>nuke|\w+)\.(?P<name>\w+)\((?P<params>.*)\))\s*(?P<tags>(?:@[\d.]+\s*)*)$")


_BASE = "https://learn.foundry.com/nuke/developers/"
_SHORT = {"ref": "pythondevguide/_autosummary/{}.html", "epydoc": "pythonreference/{}.html",
          "src": "pythondevguide/_modules/{}.html"}


def _expand(comment: str) -> str:
    """'ref:140/nuke.Format (note)' -> the page's full address, note kept."""
    return re.sub(r"\b(ref|epydoc|src):([\d.]+)/([\w./-]+)",
                  lambda m: _BASE + m.group(2) + "/" + _SHORT[m.group(1)].format(m.group(3)), comment)


def parse_params(text: str) -> List[str]:
    """'a, [b], [c=1], *v' -> ['a', 'b?', 'c?', '*v']: optional parameters end in '?'."""
    out = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        optional = raw.startswith("[") and raw.endswith("]")
        name = raw.strip("[]").split("=")[0].strip()
        out.append(name + ("?" if optional and not name.startswith("*") else ""))
    return out


def build(text: str = SIGNATURES) -> Dict[str, object]:
    api: Dict[str, Dict[str, object]] = {
        v: {"functions": {}, "attributes": [], "classes": {}} for v in VERSIONS}
    source, in_comment = "", False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):  # consecutive comment lines make one source note
            note = _expand(line.lstrip("# ").strip())
            source, in_comment = (f"{source} {note}" if in_comment else note), True
            continue
        in_comment = False
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"line {number}: cannot parse {line!r}")
        tags = re.findall(r"@([\d.]+)", match["tags"] or "") or list(VERSIONS)
        for version in tags:
            if version not in api:
                raise ValueError(f"line {number}: unknown version {version}")
            entry = api[version]
            if match["attr"]:
                entry["attributes"].append(match["attr_name"])
            elif match["cls"]:
                cls = entry["classes"].setdefault(match["cls"], {"bases": [], "methods": {}, "source": source})
                cls["bases"].append(match["base"])
            elif match["owner"] == "nuke":
                entry["functions"][match["name"]] = {"params": parse_params(match["params"]), "source": source}
            else:
                cls = entry["classes"].setdefault(match["owner"], {"bases": [], "methods": {}, "source": source})
                cls["methods"][match["name"]] = parse_params(match["params"])
    for entry in api.values():  # every class named as a base is a class too
        for cls in list(entry["classes"].values()):
            for base in cls["bases"]:
                entry["classes"].setdefault(base, {"bases": [], "methods": {}, "source": "named as a base"})
        entry["attributes"] = sorted(set(entry["attributes"]))
    return {"generated_by": "tests/fakes/nuke_api_gen.py", "versions": api}


def main() -> int:
    target = Path(__file__).with_name("nuke_api.json")
    target.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
