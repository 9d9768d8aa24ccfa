"""Headless matting for farms: ``nuke -t <path>/mattebox_nuke/farm.py --frames 1-100 [--write] comp.nk``.

Mattes every Mattebox node of the script over the frames (synchronously, failing with exit code 1 on any error),
then with ``--write`` executes the script's own Write nodes over the same frames — one farm task that does what
``nuke -x comp.nk 1-100`` would, with the mattes made first. Without ``--write`` it is a pre-pass; run
``nuke -x`` afterwards.

The frame range is an option value, not the last argument, because ``nuke -t`` strips a trailing frame range
from ``sys.argv`` (Nuke Python dev guide, 'Using the Command-line').
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="farm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", required=True, help="frames to matte, e.g. 1-100, 1-100x2, 1,5,9-12")
    parser.add_argument("--node", action="append", default=[], help="only these Mattebox nodes (repeatable)")
    parser.add_argument("--write", action="store_true", help="then execute the script's Write nodes")
    parser.add_argument("script", help="the comp script to open")
    args = parser.parse_args(argv)

    import nuke

    from mattebox_nuke import node as mattebox_node
    from mattebox_plugin.errors import describe_error
    from mattebox_plugin.frames import contiguous_spans, parse_frames

    try:
        frames = parse_frames(args.frames)
    except ValueError as exc:
        print(f"[mattebox] --frames: {exc}", file=sys.stderr)
        return 1
    nuke.scriptOpen(os.path.abspath(args.script))
    nodes = mattebox_node.mattebox_nodes()
    if args.node:
        missing = set(args.node) - {n.fullName() for n in nodes}
        if missing:
            print(f"[mattebox] no Mattebox node named {sorted(missing)} in {args.script}", file=sys.stderr)
            return 1
        nodes = [n for n in nodes if n.fullName() in args.node]
    for group in nodes:
        try:
            mattebox_node.matte(group, frames, background=False)
        except Exception as exc:
            print(f"[mattebox] {group.fullName()} failed: {describe_error(exc)}", file=sys.stderr)
            return 1
    if args.write:
        inside = {n.fullName() for n in nodes}
        writes = [w for w in nuke.allNodes("Write", recurseGroups=True)
                  if not w["disable"].value() and not any(w.fullName().startswith(g + ".") for g in inside)]
        for write in writes:
            for first, last, step in contiguous_spans(frames):
                nuke.execute(write, first, last, step)
    print(f"[mattebox] matted {len(nodes)} node(s) over {len(frames)} frame(s)")
    return 0


if __name__ == "__main__":
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if here not in sys.path:  # run by path (nuke -t .../farm.py): make the package importable
        sys.path.insert(0, here)
    sys.exit(main())
