"""Cost of the GIMP plug-in around the server: plug-in-mattebox on a 1920x1080 float image in real GIMP 3.0 (the
trixie chroot of tests/hosts/gimp_chroot.py), against a direct client round trip of the same pixels to the same
server in the same run. Engine: passthrough (alpha = mask, foreground = image), so both numbers are transport and
host I/O, not matting. The plug-in's time includes starting its Python process, reading the layer and the selection
from GEGL, the round trip, interleaving RGBA and writing two layers with an undo group. Stage times measured once
with temporary prints (1080p): plug-in process start ~80 ms, GEGL reads ~75 ms, round trip ~60-200 ms, RGBA
interleave ~100 ms (mostly importing numpy; ~150 ms with the array fallback), two layer writes ~80-130 ms.

Needs root (the chroot). Writes bench/results/gimp_plugin.json and bench/results/gimp_plugin.md.
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import write_results  # noqa: E402  (and the checkout's packages on sys.path)
REPEATS = 5
SIZES = [(1920, 1080)]


def time_client(endpoint: str, image: np.ndarray, mask: np.ndarray) -> list:
    from mattebox_plugin.client import Client

    seconds = []
    with Client(endpoint, timeout=60) as client:
        client.hello()
        for _ in range(REPEATS):
            started = time.perf_counter()
            client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=120)
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    from tests.hosts import gimp_chroot
    from tests.hosts.gimp_runner import new_profile, run_gimp
    from mattebox.testing.servers import ServerProcess

    reason = gimp_chroot.unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    root = gimp_chroot.ensure_chroot()
    profile = new_profile(root)
    server = ServerProcess.temporary("--log-level", "warning", device=None)
    endpoint = server.endpoint
    rows = []
    try:
        for width, height in SIZES:
            rng = np.random.default_rng(0)
            image = rng.random((height, width, 3), dtype=np.float32)
            select = [width // 4, height // 4, width // 2, height // 2]
            mask = np.zeros((height, width), np.float32)
            mask[select[1]:select[1] + select[3], select[0]:select[0] + select[2]] = 1
            spec = {"width": width, "height": height, "base": "RGB", "precision": "FLOAT_LINEAR",
                    "image_format": "RGB float", "result_format": "RGBA float", "select_rectangle": select,
                    "repeat": REPEATS, "args": {"engine": "passthrough", "mask-source": "selection"}}
            out, pixels = run_gimp(root, profile, endpoint, spec, timeout=600, image=image)
            if out["status"] != "success":
                raise RuntimeError(f"plug-in failed: {out.get('error')}")
            assert np.array_equal(pixels["matte"], mask) and np.array_equal(pixels["foreground"][..., :3], image)
            plugin_s = out["all_seconds"]
            client_s = time_client(endpoint, image, mask)
            rows.append({"size": f"{width}x{height}", "plugin_median_s": statistics.median(plugin_s),
                         "client_median_s": statistics.median(client_s),
                         "ratio": statistics.median(plugin_s) / statistics.median(client_s),
                         "plugin_s": plugin_s, "client_s": client_s})
    finally:
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    result = {"bench": "gimp_plugin", "engine": "passthrough", "repeats": REPEATS, "gimp": "3.0.4 (Debian trixie)",
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    lines = ["# GIMP plug-in overhead (passthrough engine, float32 RGB + selection)", "",
             "| size | plug-in call, median s | direct client, median s | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['plugin_median_s']:.3f} | {r['client_median_s']:.3f} | {r['ratio']:.2f}x |"
              for r in rows]
    lines += ["", "Plug-in call: `procedure.run(config)` in gimp-console (plug-in process start, GEGL read of layer",
              "and selection, round trip, RGBA interleave (numpy when present), two new layers in an undo group).",
              "Direct client: `Client.submit(...).result()` from the host's Python with numpy arrays.", ""]
    write_results("gimp_plugin", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
