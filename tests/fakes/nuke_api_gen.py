"""Generate tests/fakes/nuke_api.json: the whitelist of Nuke's Python API that the fake ``nuke`` enforces.

Source: Foundry's Python API reference, learn.foundry.com/nuke/developers/<ver>/pythondevguide/_autosummary/
(nuke.<function>.html for module functions, nuke.<Class>.html for a class's method table), read through the
``search`` tool of the sessions that wrote this (docs corpus) on 2026-12-05; where no page of 13.2-16.0 prints a
signature, Foundry's own code or guide that calls it (nukescripts sources, the developer guide). Nuke cannot be
installed here and the pages are not fetched at run time, so what was read is transcribed below, one signature a
line, exactly as the page prints it (names and parameter lists only, no prose), then parsed into JSON by
:func:`build`. To check or extend it, open the page named in the ``# <url>`` comment above a block.

Line grammar::

    # ref:132/nuke.createNode              the page the following lines were read from (kept in the JSON):
                                           ref:<ver>/<page> is .../developers/<ver>/pythondevguide/_autosummary/
                                           <page>.html, epydoc:<ver>/<page> .../<ver>/pythonreference/<page>.html,
                                           src:<ver>/<module> .../<ver>/pythondevguide/_modules/<module>.html,
                                           guide:<ver>/<page> .../<ver>/pythondevguide/<page>.html
    # CALL <where>                         no page prints the signature; Foundry's code or guide named there
                                           calls it in this shape (evidence "call" in the JSON)
    # UNVERIFIED <what>: searched "..."    neither found; the note lists the searches tried (evidence
                                           "unverified"); any other note is a signature page (evidence "page")
    nuke.name(a, b, [c], [d=1])            a module function; [x] marks an optional parameter
    Class.method(a, [b])                   a method of nuke.Class (self not written)
    Class < Base                           nuke.Class inherits Base's methods ("Bases:" on the page)
    attr nuke.NAME                         a module attribute that is not a function (constants, env)
    ... @13.2 @14.0                        only in these versions (default: all of VERSIONS)
    a line with an open '('                continues on the next line

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
# ref:131/nuke.selectedNode, ref:160/nuke.selectedNode
nuke.selectedNode()
# ref:150/nuke.frame
nuke.frame([f])
# CALL src:160/nukescripts/stereo and epydoc:120/nukescripts.stereo-pysrc: Foundry's nukescripts calls nuke.root()
# and len(nuke.views()) with no arguments; epydoc:111/nuke.Root-class lists the Root class. No page of its own:
# searched "nuke.root() Node Get the DAG's root node", "nuke python api root() Root node", "nuke.views() List of
# all views in the script", "_nukemodule views"
nuke.root()
nuke.views()
# CALL guide:160/custom_panels and guide:130/callbacks call nuke.thisNode() and nuke.thisKnob() with no arguments,
# as does src:160/nukescripts/panels (nuke.thisKnob()). Searched "nuke.thisNode() Return the current context Node"
nuke.thisNode()
nuke.thisKnob()
# CALL epydoc:113/nukescripts.viewsettingsprefs-pysrc and epydoc:122/nukescripts.viewsettingsprefs-pysrc: Foundry's
# nukescripts calls nuke.toNode('preferences'). No page in 13.2-16.0: searched "nuke.toNode(s) Node", "nuke.toNode
# Search for a node in the DAG by name", "learn.foundry.com nuke developers 15.1 pythonreference nuke.toNode"
nuke.toNode(s)
# UNVERIFIED nuke.delete, thisGroup, scriptName: searched "nuke.delete(n) The named node is deleted" and "Source code
# for nukescripts nuke.toNode( nuke.delete(" (both find nuke.nodeDelete only), "nuke.thisGroup() Returns the current
# context Group node", "nuke.scriptName() Return the current script's file name"; no vendored stubs either
# (find_repos "nuke-stubs", "nuke_stubs", "types-nuke"; find_string "def toNode(", "def views(")
nuke.delete(n)
nuke.thisGroup()
nuke.scriptName()
# ref:130/nuke.render (execute's text)
nuke.execute(nameOrNode, [start], [end], [incr], [views], [continueOnError=False])
# ref:132/nuke.executeMultiple ("views - Optional list of views. Default is None. Execute for all.")
nuke.executeMultiple(nodes, [ranges], [views], [continueOnError=False])
# src:140/nuke_internal/executeInMain (cited in docs/hosts/nuke.md)
nuke.executeInMainThread(call, [args=()], [kwargs={}])
nuke.executeInMainThreadWithResult(call, [args=()], [kwargs={}])
# ref:131/nuke.message, ref:132/nuke.message
nuke.message(prompt)
# ref:131/nuke.critical, ref:132/nuke.critical
nuke.critical(message)
# CALL guide:130/callbacks passes nuke.tprint positional values and a 'sep' keyword; searched "nuke.tprint"
nuke.tprint(*value, [sep], [end], [file])
# ref:150/nuke.scriptSaveAs
nuke.scriptSaveAs([filename=None], [overwrite=-1])
# ref:131/nuke.scriptSave
nuke.scriptSave([filename=None])
# UNVERIFIED nuke.scriptOpen: searched "nuke.scriptOpen(filename) Opens a new script containing the contents of the
# named file", "Source code for nukescripts.script script_open nuke.scriptOpen", "Nuke as a Python Module
# nuke.scriptOpen example" (only third-party scripts call it, with one path)
nuke.scriptOpen(filename)
# ref:140/nuke.scriptClear
nuke.scriptClear([resetToCompiledDefaults=False], [clearUserKnobs=False])
# ref:131/nuke.Menu, ref:140/nuke.Menu (the page at that address prints nuke.menu(name))
nuke.menu(name)
# ref:130/nuke.ToolBar (the page at that address prints nuke.toolbar(name, create=True))
nuke.toolbar(name, [create=True])
# ref:130/nuke.pluginAddPath
nuke.pluginAddPath(args, [addToSysPath=True])
# ref:131/nuke.pluginPath, ref:132/nuke.pluginPath
nuke.pluginPath()
# CALL guide:latest/startup names nuke.pluginAppendPath beside pluginAddPath, whose form it is given here
nuke.pluginAppendPath(args, [addToSysPath=True])
# src:160/nuke_internal/callbacks (the module defining the nuke.add... callbacks with (call, args, kwargs,
# nodeClass)); guide:130/callbacks ("All the nuke.add...() functions take the same arguments")
nuke.addBeforeFrameRender(call, [args=()], [kwargs={}], [nodeClass='Write'])
nuke.addOnScriptLoad(call, [args=()], [kwargs={}], [nodeClass='Root'])
attr nuke.env
attr nuke.nodes
attr nuke.INVISIBLE
attr nuke.STARTLINE
attr nuke.DISABLED
attr nuke.CancelledError

# ref:132/nuke.Node (names; parameters: epydoc:113/nuke.Node-class, the 13.2-16.0 pages print the method table
# without parameters; searched "nuke.Node setInput(i, node) bool", "nuke.Node setName(name, uncollide=True,
# updateExpressions=False)")
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
# ref:160/nuke.Root.Class (names); addView's parameters: epydoc:111/nuke.Root-class
Root < Group
Root.addView(name, color)
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
# CALL epydoc:122/toc-nuke-module lists ChannelMask_Knob, Disable_Knob and Format_Knob; ref:140/nuke.KnobType has
# their type constants (eChannelMaskKnob, eDisableKnob, eFormatKnob); actualValue: epydoc:70/nuke.Format_Knob-class.
# No 13.2-16.0 class page: searched "nuke.Int_Knob class Bases: Array_Knob", "nuke.Format_Knob actualValue"
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
# CALL src:160/nukescripts/framerangepanel and epydoc:122/nukescripts.framerangepanel-pysrc: Foundry's
# nukescripts calls nuke.Int_Knob("fromFrame", "from:")
Int_Knob.__init__(name, [label])
# UNVERIFIED the other knob constructors (their pages print no constructor; only third-party panels call them with
# name, label): searched "nuke.Int_Knob constructor name label Custom Panels", "nuke.String_Knob( nuke.File_Knob(
# nuke.Boolean_Knob( nuke.Text_Knob( addKnob example pythondevguide", "Source code nukescripts nuke.File_Knob(
# nuke.Tab_Knob( nuke.Double_Knob( PythonPanel addKnob"
String_Knob.__init__(name, [label], [text])
File_Knob.__init__(name, [label])
Text_Knob.__init__(name, [label], [text])
Tab_Knob.__init__(name, [label])
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
Menu.addMenu(**kwargs)
Menu.findItem(name)
Menu.items()
# ref:150/nuke.MenuBar, ref:17.1/nuke.Menu (addCommand's parameters)
Menu.addCommand(name, [command], [shortcut], [icon], [tooltip], [index], [readonly], [shortcutContext], [tag],
    [tagTarget], [node]) @15.1 @16.0
# CALL src:140/nukescripts/toolbars and epydoc:120/nukescripts.toolbars-pysrc pass shortcutContext by keyword; no
# 13.2/14.0 page lists addCommand's parameters (searched "nuke.Menu addCommand")
Menu.addCommand(name, [command], [shortcut], [icon], [tooltip], [index], [readonly], [shortcutContext]) @13.2 @14.0
# ref:160/nuke.Menu
ToolBar < Menu
"""

_LINE = re.compile(r"^(?:(?P<attr>attr\s+nuke\.(?P<attr_name>\w+))|(?P<cls>\w+)\s*<\s*(?P<base>\w+)|"
                   r"(?P<owner>nuke|\w+)\.(?P<name>\w+)\((?P<params>.*)\))\s*(?P<tags>(?:@[\d.]+\s*)*)$")


_BASE = "https://learn.foundry.com/nuke/developers/"
_SHORT = {"ref": "pythondevguide/_autosummary/{}.html", "epydoc": "pythonreference/{}.html",
          "src": "pythondevguide/_modules/{}.html", "guide": "pythondevguide/{}.html"}
#: a note's first word -> the entry's evidence; any other note names a page that prints the signature
_EVIDENCE = {"CALL": "call", "UNVERIFIED": "unverified"}


def _expand(comment: str) -> str:
    """'ref:140/nuke.Format (note)' -> the page's full address, note kept."""
    return re.sub(r"\b(ref|epydoc|src|guide):([\w.]+)/([\w./-]+)",
                  lambda m: _BASE + m.group(2) + "/" + _SHORT[m.group(1)].format(m.group(3)), comment)


def _evidence(note: str) -> str:
    """'page', 'call' or 'unverified' (see the line grammar); an unverified note must list its searches."""
    evidence = _EVIDENCE.get(note.split(" ", 1)[0], "page")
    if evidence == "unverified" and "searched" not in note:
        raise ValueError(f"an UNVERIFIED note lists the searches tried: {note!r}")
    return evidence


def _logical_lines(text: str):
    """(number, line) with a signature whose '(' is still open joined to the lines that close it."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending:
            pending = f"{pending} {line}"
        elif line and not line.startswith("#"):
            pending, start = line, number
        else:
            yield number, line
            continue
        if pending.count("(") <= pending.count(")"):
            yield start, pending
            pending = ""
    if pending:
        raise ValueError(f"line {start}: unclosed '(' in {pending!r}")


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


def _new_class(source: str, evidence: str) -> Dict[str, object]:
    return {"bases": [], "methods": {}, "source": source, "evidence": evidence}


def weak_entries(api: Dict[str, object]) -> Dict[str, str]:
    """'nuke.toNode' / 'Int_Knob.__init__' / 'Format_Knob' -> 'call' or 'unverified' (with the versions when not
    all four): every entry whose signature no reference page prints, as docs/hosts/nuke.md lists them."""
    seen: Dict[str, Dict[str, List[str]]] = {}
    for version, entry in api["versions"].items():
        weak = {f"nuke.{name}": fn["evidence"] for name, fn in entry["functions"].items() if fn["evidence"] != "page"}
        for name, cls in entry["classes"].items():
            if cls["evidence"] != "page" and cls["source"] != "named as a base":
                weak[name] = cls["evidence"]
            weak.update({f"{name}.{method}": note["evidence"]
                         for method, note in cls.get("method_evidence", {}).items()})
        for name, evidence in weak.items():
            seen.setdefault(name, {}).setdefault(evidence, []).append(version)
    return {name: ", ".join(evidence if len(versions) == len(VERSIONS) else f"{evidence} ({' '.join(versions)})"
                            for evidence, versions in by.items())
            for name, by in sorted(seen.items())}


def build(text: str = SIGNATURES) -> Dict[str, object]:
    api: Dict[str, Dict[str, object]] = {
        v: {"functions": {}, "attributes": [], "classes": {}} for v in VERSIONS}
    source, in_comment = "", False
    for number, line in _logical_lines(text):
        if not line:
            continue
        if line.startswith("#"):  # consecutive comment lines make one source note
            note = _expand(line.lstrip("# ").strip())
            source, in_comment = (f"{source} {note}" if in_comment else note), True
            continue
        in_comment = False
        evidence = _evidence(source)
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
                cls = entry["classes"].setdefault(match["cls"], _new_class(source, evidence))
                cls["bases"].append(match["base"])
            elif match["owner"] == "nuke":
                entry["functions"][match["name"]] = {"params": parse_params(match["params"]), "source": source,
                                                     "evidence": evidence}
            else:
                cls = entry["classes"].setdefault(match["owner"], _new_class(source, evidence))
                cls["methods"][match["name"]] = parse_params(match["params"])
                if evidence != "page":  # a method read from weaker evidence than its class's page
                    cls.setdefault("method_evidence", {})[match["name"]] = {"evidence": evidence,
                                                                            "source": source}
    for entry in api.values():  # every class named as a base is a class too
        for cls in list(entry["classes"].values()):
            for base in cls["bases"]:
                entry["classes"].setdefault(base, _new_class("named as a base", "call"))
        entry["attributes"] = sorted(set(entry["attributes"]))
    return {"generated_by": "tests/fakes/nuke_api_gen.py", "versions": api}


def main() -> int:
    target = Path(__file__).with_name("nuke_api.json")
    api = build()
    target.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    for name, evidence in weak_entries(api).items():
        print(f"  {evidence:10} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
