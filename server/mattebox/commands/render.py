"""`mattebox render`: matte a frame range headless, for farms (Flamenco, Deadline, OpenCue).

Input and output names are patterns with a frame number: ``####`` (zero-padded to the number of #) or printf
``%04d``. Frame by frame, the range runs through the hosts' ``mattebox_plugin.run.FrameRun`` (progress, Ctrl-C
cancel, error text, the content cache); every frame's outputs are recorded in a sidecar ``<alpha file>.json``
with FrameRun's content key (:class:`FrameFiles` says why that key), so a re-run skips frames whose outputs
exist and match (resumable), and ``--chunk K/N`` renders only the K-th of N equal slices of the range so a farm
can split it across machines. ``--shot`` runs the range as one shot in this process (commands/shot.py).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Optional, Sequence

from mattebox_plugin import frames as frames_grammar
from mattebox_plugin.frames import FrameSet
from mattebox_plugin.protocol import MATTE_PARAMS, param_choices

from . import shot
from .frames import frame_path, record_path, up_to_date, write_outputs, write_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="plate pattern, e.g. plates/shot.####.exr or shot.%%04d.png")
    parser.add_argument("--frames", required=True,
                        help=f"frames, {frames_grammar.EXAMPLES} (at most {MAX_FRAMES:,} frames; --shot: one "
                             f"range with one step)")
    parser.add_argument("--chunk", help="K/N: render only the K-th (1-based) of N equal slices of the range")
    parser.add_argument("--second-offset", type=int,
                        help="use frame F+OFFSET of the plate sequence as the parallax partner")
    guide = parser.add_mutually_exclusive_group()
    guide.add_argument("--mask", help="mask pattern")
    guide.add_argument("--trimap", help="trimap pattern")
    parser.add_argument("--alpha", required=True, help="output alpha pattern (.exr float or .png)")
    parser.add_argument("--foreground", help="output foreground pattern (.exr linear straight, or .png)")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--quality", default=MATTE_PARAMS["quality"]["default"], choices=param_choices("quality"))
    parser.add_argument("--band-width", type=float, default=0)
    parser.add_argument("--endpoint", help="server (default: the configured one if it answers, else a local one)")
    parser.add_argument("--local", action="store_true", help="always use a local in-process server")
    parser.add_argument("--force", action="store_true", help="re-render frames whose outputs are up to date")
    parser.add_argument("--timeout", type=float, default=120.0)
    shot.add_arguments(parser)


#: most frames one `mattebox render` takes (over 11 hours at 24 fps): a typo such as 1-300000000 is refused
MAX_FRAMES = frames_grammar.MAX_FRAMES


def parse_frames(spec: str) -> FrameSet:
    """``--frames`` (mattebox_plugin.frames' grammar) -> the frames, held as ranges, at most :data:`MAX_FRAMES`."""
    try:
        return frames_grammar.parse_frames(spec, max_frames=MAX_FRAMES)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None


def chunk_of(frames: Sequence[int], chunk: Optional[str]) -> Sequence[int]:
    """The K-th of N contiguous, near-equal slices (K is 1-based)."""
    if not chunk:
        return frames
    match = re.fullmatch(r"(\d+)/(\d+)", chunk)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--chunk {chunk!r}: expected K/N with 1 <= K <= N")
    k, n = int(match.group(1)), int(match.group(2))
    return frames[(k - 1) * len(frames) // n:k * len(frames) // n]


def run(args: argparse.Namespace) -> int:
    try:
        whole = parse_frames(args.frames)
        frames = chunk_of(whole, args.chunk)
    except ValueError as exc:
        print(f"mattebox render: {exc}", file=sys.stderr)
        return 2
    if shot.wanted(args):
        if whole.step is None:
            print(f"mattebox render: --frames {args.frames!r}: a shot is one range with one step (e.g. 1001-1100 "
                  f"or 1001-1100x2)", file=sys.stderr)
            return 2
        return shot.run(args, whole, frames)
    return render_frames(args, frames)


def render_frames(args: argparse.Namespace, frames: Sequence[int]) -> int:
    """Matte the frames one by one through the hosts' FrameRun (mattebox_plugin.run): files in, files and sidecar
    records out, a frame line each, Ctrl-C cancels on the server. Exit 0 done, 1 the server failed, 2 an input or
    output failed, 130 cancelled; on failure the re-run resumes at the frame named."""
    from mattebox_plugin.errors import JobFailed, ServerUnavailable
    from mattebox_plugin.run import CANCELLED, FINISHED, FrameRun

    from ..embedded import server_connection

    if not frames:  # a chunk of a range shorter than its count of chunks: nothing to do is success
        print("rendered 0, up to date 0, of 0 frames")
        return 0
    files = FrameFiles(args)
    # a server named with --endpoint that does not answer: frames whose sidecars are up to date still count as
    # done (FrameRun serves them offline) and the first frame that needs the server stops the run
    with server_connection(args.endpoint, args.local, args.timeout) as connect:
        frame_run = FrameRun(frames, connect, files.read, files.write, cache=files, outputs=files.outputs)
        try:
            state = follow(frame_run)
        except KeyboardInterrupt:  # a second Ctrl-C while the server confirms the first
            state = CANCELLED
    if frame_run.offline is not None:  # the server went away: unchanged frames came from the sidecars
        print(f"mattebox render: {frame_run.offline_note()}", file=sys.stderr)
    if state == FINISHED:
        print(f"rendered {len(frame_run.computed)}, up to date {len(frame_run.reused)}, of {len(frames)} frames")
        return 0
    print(f"mattebox render: {frame_run.error or state}", file=sys.stderr)
    print(f"mattebox render: stopped at frame {frame_run.current_frame} ({len(frame_run.computed)} rendered and "
          f"{len(frame_run.reused)} up to date before it); run the same command again to resume there",
          file=sys.stderr)
    if state == CANCELLED:
        return 130
    return 1 if isinstance(frame_run.exception, (JobFailed, ServerUnavailable)) else 2


#: seconds between progress lines while one frame is being matted
PROGRESS_EVERY = 5.0


def follow(frame_run, out=None) -> str:
    """Run ``frame_run`` to its end on this thread, printing a line per finished frame ("frame 7: classical
    0.42 s", "frame 8: up to date") and, while a frame takes long, its progress every :data:`PROGRESS_EVERY` s.
    The first Ctrl-C cancels the run (the server is told; the run ends once it confirms). Returns the final
    state."""
    out = out or sys.stdout
    printed, last_line = 0, time.monotonic()

    def on_step(run) -> None:
        nonlocal printed, last_line
        for outcome in run.outcomes[printed:]:
            info = outcome.info
            line = "up to date" if outcome.cached else f"{info.get('engine')} {info.get('seconds', 0):.2f} s"
            print(f"frame {outcome.frame}: {line}", file=out, flush=True)
            last_line = time.monotonic()
        printed = len(run.outcomes)
        if run.last_event is not None and time.monotonic() - last_line > PROGRESS_EVERY:
            print(run.status_text(), file=out, flush=True)
            last_line = time.monotonic()

    try:
        return frame_run.wait(on_step=on_step)
    except KeyboardInterrupt:
        print("mattebox render: cancelling (the server is told)", file=sys.stderr, flush=True)
        frame_run.cancel()
        return frame_run.wait(on_step=on_step)


class FrameFiles:
    """`mattebox render`'s files for a FrameRun: ``read`` (a frame's files -> a submit request), ``write`` (the
    results -> output files) and the cache over the sidecar records (``reuse``, ``record``, ``made_under``).

    The sidecar's key is FrameRun's content key (the decoded pixels, the settings, the server's version and the
    engine's hello row), not a hash of the files: a farm re-run after a server restart (same version) reuses
    every unchanged frame, a server upgrade or a newly installed engine re-mattes, and adding an output
    (``--foreground``) re-mattes because the request changes."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.outputs = ["alpha", "foreground"] if args.foreground else ["alpha"]
        self.params = {"engine": args.engine, "quality": args.quality, "band_width": args.band_width}

    def read(self, frame: int) -> dict:
        """The frame's plate (and parallax partner, mask or trimap) decoded into ``Client.submit`` arguments;
        ImageReadError names a missing or unreadable file."""
        from ..imageio import check_image_file, read_gray, read_image

        args = self.args
        image_path = frame_path(args.image, frame)
        second_path = frame_path(args.image, frame + args.second_offset) if args.second_offset else None
        guide_path = frame_path(args.mask or args.trimap, frame) if (args.mask or args.trimap) else None
        for path in (image_path, second_path, guide_path):
            if path is not None:
                check_image_file(path)
        image, colorspace = read_image(image_path)
        request = {"image": image, "colorspace": colorspace, "params": dict(self.params)}
        if second_path:
            request["second"] = read_image(second_path)[0]
        if guide_path:
            request["mask" if args.mask else "trimap"] = read_gray(guide_path)
        return request

    def write(self, work, result) -> None:
        """Write a finished frame's outputs (imageio.OutputError for a symbolic link at an output path)."""
        write_outputs(self.args, work.frame, result.alpha, result.foreground, work.request["colorspace"])

    def reuse(self, frame: int, key: str, outputs) -> bool:
        """The frame's outputs are there and were made from this key (never with ``--force``)."""
        return not self.args.force and up_to_date(self.args, frame, key)

    def record(self, frame: int, key: Optional[str], info: dict, hello: Optional[dict] = None) -> None:
        """After the outputs are written: the sidecar with the key and the hello it was made under."""
        write_record(self.args, frame, info, key, made_under=hello)

    def made_under(self, frame: int) -> Optional[dict]:
        """The hello the frame's recorded outputs were made under (None if unknown): with no server, a frame
        whose inputs did not change is still found."""
        try:
            hello = json.loads(record_path(self.args, frame).read_text()).get("made_under")
        except (OSError, ValueError, AttributeError):
            return None
        return hello if isinstance(hello, dict) else None
