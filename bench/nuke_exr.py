"""The Nuke node's file path: our pure-Python EXR reader/writer on a 1920x1080 RGBA float32 frame, with numpy and
without (Nuke builds may lack it), as ratios to OpenCV's OpenEXR (C++) on the same file in the same run; plus the
whole per-frame cost of the node (render inputs, read, hash, server round trip with the passthrough engine, write
and load the result) uncached and cached, through the fake nuke and a real server process.

Writes bench/results/nuke_exr.json and bench/results/nuke_exr.md.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import ROOT, median_seconds, write_results  # noqa: E402  (and the checkout's packages on sys.path)

sys.path[:0] = [str(ROOT / "nodes" / "nuke"), str(ROOT / "tests" / "fakes")]  # the adapter; the Nuke double
from mattebox_plugin import exr  # noqa: E402

H, W = 1080, 1920
REPEATS = 5


def exr_rows(folder: Path):
    rng = np.random.default_rng(0)
    planes = {c: rng.random((H, W), dtype=np.float32) for c in "RGBA"}
    bgra = np.stack([planes[c] for c in "BGRA"], -1)
    return [exr_row(folder, planes, bgra, "none", 0), exr_row(folder, planes, bgra, "zips", 2)]


def exr_row(folder: Path, planes, bgra, compression: str, cv_code: int):
    path = str(folder / f"ours-{compression}.exr")
    cv_path = str(folder / f"cv-{compression}.exr")
    cv_params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT, cv2.IMWRITE_EXR_COMPRESSION, cv_code]
    row = {"compression": compression,
           "cv2_write_s": median_seconds(lambda: cv2.imwrite(cv_path, bgra, cv_params), REPEATS),
           "cv2_read_s": median_seconds(lambda: cv2.imread(cv_path, cv2.IMREAD_UNCHANGED), REPEATS),
           "numpy_write_s": median_seconds(lambda: exr.write(path, W, H, planes, compression), REPEATS),
           "numpy_read_s": median_seconds(lambda: exr.read(cv_path), REPEATS)}
    if compression == "none":  # without numpy: what the node's internal Writes produce
        saved = exr.np
        exr.np = None
        try:
            arrays = {c: exr._plane_from_bytes(p.tobytes(), H, W) for c, p in planes.items()}
            row["pure_write_s"] = median_seconds(lambda: exr.write(path, W, H, arrays, compression), 3)
            row["pure_read_s"] = median_seconds(lambda: exr.read(cv_path), 3)
            image = exr.read(cv_path)
            row["pure_interleave_s"] = median_seconds(lambda: exr.interleave([image.planes[c] for c in "RGB"], H, W), 3)
        finally:
            exr.np = saved
    return row


def node_rows(folder: Path):
    from mattebox.testing.servers import ServerProcess

    import mattebox_nuke
    import mattebox_nuke.node
    import nuke

    server = ServerProcess(folder, state_dir=folder / "state")
    try:
        nuke.fake.reset()
        os.environ["MATTEBOX_CONFIG"] = str(folder / "client.json")
        rng = np.random.default_rng(1)
        pixels = {f"rgba.{c}": rng.random((H, W), dtype=np.float32) for c in ("red", "green", "blue")}
        pixels["rgba.alpha"] = np.ones((H, W), np.float32)
        mask = (rng.random((H, W)) > 0.5).astype(np.float32)
        plate = nuke.nodes.FakeSource(frames=lambda f: pixels, first=1, last=100)
        guide = nuke.nodes.FakeSource(frames=lambda f: {"rgba.alpha": mask}, first=1, last=100)
        group = mattebox_nuke.node.build(nuke.nodes.Group(name="Mattebox1"))
        group.setInput(0, plate)  # a Group's input pipes exist once build has made its Input nodes
        group.setInput(2, guide)
        group["endpoint"].setValue(server.endpoint)
        group["engine"].setValues(["auto", "passthrough"])
        group["engine"].setValue("passthrough")
        group["cache_dir"].setValue(mattebox_nuke.node.tcl_escape(str(folder / "cache")))
        frame = iter(range(1, 1000))
        uncached = median_seconds(lambda: (group["band_width"].setValue(next(frame)),  # new inputs: a new key
                                           mattebox_nuke.matte(group, [1])), 3)
        cached = median_seconds(lambda: mattebox_nuke.matte(group, [1]), 3)
        read_back = median_seconds(lambda: (group.node("Read_result")._cache.clear(), group._render(1)), 3)
        return [{"frame": f"{W}x{H}", "uncached_s": uncached, "cached_s": cached, "read_result_s": read_back}]
    finally:
        server.stop()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exr_table = exr_rows(folder)
        node_table = node_rows(folder)
    lines = [f"### Nuke node file path ({W}x{H} float32, median of {REPEATS}; ratio = ours / OpenCV)", "",
             "| compression | cv2 write | ours write (numpy) | ratio | cv2 read | ours read (numpy) | ratio | "
             "ours read (no numpy) | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in exr_table:
        pure = r.get("pure_read_s")
        lines.append(f"| {r['compression']} | {r['cv2_write_s'] * 1e3:.0f} ms | {r['numpy_write_s'] * 1e3:.0f} ms | "
                     f"{r['numpy_write_s'] / r['cv2_write_s']:.2f}x | {r['cv2_read_s'] * 1e3:.0f} ms | "
                     f"{r['numpy_read_s'] * 1e3:.0f} ms | {r['numpy_read_s'] / r['cv2_read_s']:.2f}x | "
                     + (f"{pure * 1e3:.0f} ms | {pure / r['cv2_read_s']:.2f}x |" if pure else "– | – |"))
    n = node_table[0]
    lines += ["", "| node, one frame (fake nuke, passthrough engine) | uncached | cached (same inputs) | "
              "Read of the result |", "|---|---|---|---|",
              f"| {n['frame']} | {n['uncached_s'] * 1e3:.0f} ms | {n['cached_s'] * 1e3:.0f} ms | "
              f"{n['read_result_s'] * 1e3:.0f} ms |"]
    write_results("nuke_exr", {"size": [W, H], "exr": exr_table, "node": node_table}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
