"""A shot rendered through the server (docs/protocol.md, *Shots*): the server's memory over a long shot, and the
time per frame against the same shot solved in this process (docs/shots.md, "Through the server").

A synthetic shot (held-out seed, alphamatting-dev layer when present) with a key trimap every 12 frames goes to a
real `mattebox serve` process through ``Client.matte_shot``; the server's resident memory (VmRSS) is read after
every returned frame. Flat memory means the peak after frame 60 is not above the peak after frame 10 by more than
noise: the server holds matte_shot's window and the keys around it, never the shot.

    python bench/shot_server.py [--length 60] [--size 240x320] [--key-every 12]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugin"), str(ROOT / "server"), str(ROOT)]

from mattebox.synth.shots import HELD_OUT_SHOT_SEEDS, make_shot  # noqa: E402
from mattebox_plugin.client import Client  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--size", default="240x320", help="HxW")
    parser.add_argument("--key-every", type=int, default=12)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    shot = make_shot(HELD_OUT_SHOT_SEEDS[1], size=(height, width), length=args.length)
    frames = list(range(1001, 1001 + args.length))
    keys = frames[::args.key_every]

    def read_frame(frame):
        index = frame - frames[0]
        inputs = {"image": shot.frames[index]}
        return dict(inputs, trimap=shot.trimap(index)) if frame in keys else inputs

    server = ServerProcess.temporary(state_dir="none")
    try:
        rss, peak = {}, {}
        started = time.perf_counter()
        with Client(server.endpoint) as client:
            for count, _ in enumerate(client.matte_shot(frames, read_frame, keys=keys), start=1):
                rss[count], peak[count] = server.rss_mb(), server.peak_rss_mb()
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    marks = sorted({m for m in (1, 10, 24, 36, args.length // 2, args.length) if m in rss})
    report = {"command": "python bench/shot_server.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "length": args.length, "size": [height, width], "keys": len(keys), "source": shot.source,
              "seconds_per_frame": round(seconds / args.length, 3),
              "rss_mib": {m: round(rss[m], 1) for m in marks}, "peak_rss_mib": {m: round(peak[m], 1) for m in marks},
              "peak_growth_10_to_end_mib": round(peak[args.length] - peak[min(10, args.length)], 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shot_server.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"`{report['command']}`: {args.length} frames of {width}×{height} ({shot.source}), a key trimap every "
             f"{args.key_every} frames, through a `mattebox serve` process; {report['seconds_per_frame']} s/frame.",
             "", "| after frame | " + " | ".join(map(str, marks)) + " |", "|---|" + "---|" * len(marks),
             "| server RSS (MiB) | " + " | ".join(f"{report['rss_mib'][m]}" for m in marks) + " |",
             "| server peak RSS (MiB) | " + " | ".join(f"{report['peak_rss_mib'][m]}" for m in marks) + " |", "",
             f"Peak growth from frame 10 to frame {args.length}: {report['peak_growth_10_to_end_mib']} MiB."]
    (RESULTS / "shot_server.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
