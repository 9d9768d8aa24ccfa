"""Cost of the Blender extension around the server: Mattebox Matte on a 1920x1080 float image in real Blender
(bpy 5.0.1, the cached venv of tests/hosts/blender_env.py), against a direct client round trip of the same pixels
to the same server from the same Blender process in the same run. Engine: passthrough (alpha = mask, foreground
= image), so the numbers are transport and host I/O, not matting.

The operator's time includes reading the plate and mask (``foreach_get``, row flip, linear check), the content
hash, the round trip, writing three 32-bit EXR files and re-pointing the result images and the compositor group.
"Unchanged" is the same operator when the frame's content key is already in the output folder's index.
Writes bench/results/blender_extension.json and bench/results/blender_extension.md.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import write_results  # noqa: E402  (and the checkout's packages on sys.path)
REPEATS = 5
WIDTH, HEIGHT = 1920, 1080

SNIPPET = '''
import statistics
W, H, REPEATS = ARGS["width"], ARGS["height"], ARGS["repeats"]
rng = np.random.default_rng(0)
plate = rng.random((H, W, 4), dtype=np.float32)
mask = (plate[..., 0] > 0.5).astype(np.float32)
helpers.use_server(ARGS["endpoint"], timeout=60)
s = bpy.context.scene.mattebox
s.image, s.mask = helpers.new_image("plate", plate), helpers.new_image("mask", mask, "Non-Color")
s.engine, s.output_dir = "passthrough", os.path.join(os.getcwd(), "out") + os.sep
io = ext.blender_io

def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t

operator, unchanged, read, write, direct = [], [], [], [], []
package = ext.connection.client_package()
client = package.client.Client(ARGS["endpoint"], timeout=60)
for rep in range(REPEATS):
    plate[0, 0, 0] = rep  # new content each repetition: no cache hit
    s.image.pixels.foreach_set(ext.core.to_blender_pixels(plate))
    operator.append(timed(lambda: bpy.ops.mattebox.matte()))
    unchanged.append(timed(lambda: bpy.ops.mattebox.matte()))
    read.append(timed(lambda: io.read_request(s, bpy.context.scene, 1, s.params())))
    request = io.read_request(s, bpy.context.scene, 1, s.params())
    request["params"]["outputs"] = ["alpha", "foreground", "trimap"]
    result = []
    direct.append(timed(lambda: result.append(client.submit(**request).result(timeout=60))))
    write.append(timed(lambda: io.write_results(os.path.join(os.getcwd(), "w"), 1, result[0])))
client.close()
med = lambda xs: round(statistics.median(xs), 4)
RESULT = {"operator_s": med(operator), "unchanged_s": med(unchanged), "read_s": med(read),
          "direct_s": med(direct), "write_exr_s": med(write), "blender": bpy.app.version_string}
'''


def main() -> int:
    from tests.hosts import blender_env
    from tests.hosts.blender_harness import run_blender
    from mattebox.testing.servers import ServerProcess

    try:
        python = blender_env.ensure()
    except blender_env.BlenderEnvUnavailable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 1
    server = ServerProcess.temporary(stop_timeout=30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_blender(python, Path(tmp), SNIPPET, timeout=600, endpoint=server.endpoint, width=WIDTH,
                                 height=HEIGHT, repeats=REPEATS)
    finally:
        server.stop()
    result.update(size=f"{WIDTH}x{HEIGHT}", repeats=REPEATS, machine=platform.machine(), cpus=os.cpu_count(),
                  ratio=round(result["operator_s"] / result["direct_s"], 2))
    row = " | ".join([result["size"], f"{result['operator_s']:.3f}", f"{result['unchanged_s']:.3f}",
                      f"{result['direct_s']:.3f}", f"{result['ratio']:.2f}x"])
    table = f"""# Blender extension overhead (passthrough engine, float32 RGBA + mask, Blender {result['blender']})

| size | operator, median s | unchanged frame (cache), median s | direct client, median s | ratio |
|---|---|---|---|---|
| {row} |

Parts of the operator (median s): reading plate + mask {result['read_s']:.3f}, writing three 32-bit EXRs
{result['write_exr_s']:.3f}. Operator: `bpy.ops.mattebox.matte()` (EXEC, as in background mode); direct client:
`Client.submit(...).result()` with the same arrays from the same Blender process. {REPEATS} repeats,
{result['cpus']} CPUs.
"""
    write_results("blender_extension", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
