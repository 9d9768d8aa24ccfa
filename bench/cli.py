"""What a user feels: `mattebox matte` on one image, start to finish, wall time and peak RSS of the whole process,
against a peer doing the same job in the same run (a pymatting script: closed-form alpha + ML foreground).

Writes bench/results/cli.json and bench/results/cli.md. Also records the import cost of `mattebox --help` and
whether torch was imported on the classical path (it must not be).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import ROOT, write_results  # noqa: E402  (and the checkout's packages on sys.path)

PEER = """
import sys, cv2, numpy as np
from pymatting import estimate_alpha_cf, estimate_foreground_ml
image = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB).astype(np.float64) / 255
trimap = cv2.imread(sys.argv[2], cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255
alpha = estimate_alpha_cf(image, trimap)
fg = estimate_foreground_ml(image, alpha)
cv2.imwrite(sys.argv[3] + "/alpha.png", (alpha * 255).astype(np.uint8))
cv2.imwrite(sys.argv[3] + "/fg.png", (fg[:, :, ::-1] * 255).clip(0, 255).astype(np.uint8))
"""

MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - t
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, code)
"""


def measure(argv, env) -> dict:
    """Wall seconds and peak RSS (bytes) of one process run, from a fresh parent so RUSAGE_CHILDREN is its alone."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], env=env, capture_output=True, text=True, check=True)
    wall, rss, code = out.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{argv} exited with {code}")
    return {"seconds": float(wall), "peak_rss": int(rss)}


def best_of(argv, env, repeats=3) -> dict:
    runs = [measure(argv, env) for _ in range(repeats)]
    return {"seconds": min(r["seconds"] for r in runs), "seconds_median": statistics.median(r["seconds"] for r in runs),
            "peak_rss": max(r["peak_rss"] for r in runs)}


def main() -> int:
    from mattebox.paths import alphamatting_dir

    data = alphamatting_dir()
    if data is None:
        print("bench/cli.py: alphamatting-dev not found; skipped")
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "plugin"), str(ROOT / "server")]))
    image, trimap = data / "image" / "GT04.png", data / "trimap1" / "GT04.png"
    out = Path(tempfile.mkdtemp(prefix="mattebox-bench-cli-"))
    rows = {
        "mattebox --help": best_of([sys.executable, "-m", "mattebox", "--help"], env),
        "mattebox matte (trimap, local server)": best_of(
            [sys.executable, "-m", "mattebox", "matte", str(image), "--trimap", str(trimap), "--local", "--quiet",
             "--out", str(out)], env),
        "pymatting cf + ml foreground (peer)": best_of([sys.executable, "-c", PEER, str(image), str(trimap), str(out)],
                                                       env, repeats=1),
    }
    check = subprocess.run([sys.executable, "-c", "import sys; from mattebox.cli import main; "
                            f"main(['matte', {str(image)!r}, '--trimap', {str(trimap)!r}, '--local', '--quiet', "
                            f"'--out', {str(out)!r}]); print('torch' in sys.modules)"],
                           env=env, capture_output=True, text=True, check=True)
    mine, peer = rows["mattebox matte (trimap, local server)"], rows["pymatting cf + ml foreground (peer)"]
    result = {"image": "alphamatting-dev GT04 (800x563), trimap1", "runs": rows,
              "ratio_seconds_vs_peer": round(mine["seconds"] / peer["seconds"], 3),
              "ratio_peak_rss_vs_peer": round(mine["peak_rss"] / peer["peak_rss"], 3),
              "torch_imported_on_classical_path": check.stdout.strip().splitlines()[-1] == "True"}
    lines = ["| run | seconds (best) | peak RSS MiB |", "|---|---|---|"]
    lines += [f"| {name} | {r['seconds']:.2f} | {r['peak_rss'] / 2**20:.0f} |" for name, r in rows.items()]
    lines += ["", f"mattebox / peer: time {result['ratio_seconds_vs_peer']}x, peak RSS "
              f"{result['ratio_peak_rss_vs_peer']}x; torch imported on the classical path: "
              f"{result['torch_imported_on_classical_path']}"]
    write_results("cli", result, "# `mattebox matte`, whole process\n\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
