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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import write_results  # noqa: E402  (and the checkout's packages on sys.path)

from mattebox.shots import Key, matte_shot  # noqa: E402
from mattebox.synth.shots import HELD_OUT_SHOT_SEEDS, make_shot  # noqa: E402
from mattebox_plugin.client import Client  # noqa: E402
from mattebox.testing.servers import ServerProcess  # noqa: E402



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
    started = time.perf_counter()  # the same shot in this process, as `mattebox render --shot` runs it
    key_map = {k: Key("trimap", shot.trimap(k - frames[0])) for k in keys}
    for _ in matte_shot(lambda f: shot.frames[f - frames[0]], frames, key_map):
        pass
    in_process = time.perf_counter() - started
    marks = sorted({m for m in (1, 10, 24, 36, args.length // 2, args.length) if m in rss})
    report = {"command": " ".join(["python bench/shot_server.py", *(argv if argv is not None else sys.argv[1:])]),
              "length": args.length, "size": [height, width], "keys": len(keys), "source": shot.source,
              "seconds_per_frame": round(seconds / args.length, 3),
              "seconds_per_frame_in_process": round(in_process / args.length, 3),
              "rss_mib": {m: round(rss[m], 1) for m in marks}, "peak_rss_mib": {m: round(peak[m], 1) for m in marks},
              "peak_growth_10_to_end_mib": round(peak[args.length] - peak[min(10, args.length)], 1),
              "peak_growth_24_to_end_mib": round(peak[args.length] - peak[min(24, args.length)], 1)}
    lines = [f"`{report['command']}`: {args.length} frames of {width}×{height} ({shot.source}), a key trimap every "
             f"{args.key_every} frames, through a `mattebox serve` process: {report['seconds_per_frame']} s/frame "
             f"(matte_shot in the bench's process, same run: {report['seconds_per_frame_in_process']} s/frame).",
             "", "| after frame | " + " | ".join(map(str, marks)) + " |", "|---|" + "---|" * len(marks),
             "| server RSS (MiB) | " + " | ".join(f"{report['rss_mib'][m]}" for m in marks) + " |",
             "| server peak RSS (MiB) | " + " | ".join(f"{report['peak_rss_mib'][m]}" for m in marks) + " |", "",
             f"Peak growth from frame 10 to frame {args.length}: {report['peak_growth_10_to_end_mib']} MiB; from "
             f"frame 24: {report['peak_growth_24_to_end_mib']} MiB."]
    write_results("shot_server", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
