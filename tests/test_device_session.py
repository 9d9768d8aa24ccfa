"""bench/device_session.py: the one prepared GPU call must work the first time a session is lent a GPU, so its
whole path (bench rows, budgeted training, packing within the device's return limits, landing here) runs on the
CPU with the tiny Parallax config, with pyzmq and msgpack made unimportable as on the device machine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import device_session  # noqa: E402

DEVICE_LIKE = ("import runpy, sys; sys.modules['zmq'] = None; sys.modules['msgpack'] = None; "
               "sys.argv = ['bench/device_session.py'] + sys.argv[1:]; "
               "runpy.run_path('bench/device_session.py', run_name='__main__')")


def run_script(*args, timeout=300):
    env = {"PYTHONPATH": f"{ROOT / 'plugin'}:{ROOT / 'server'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", DEVICE_LIKE, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_steady_rate_skips_the_first_record(tmp_path):
    log = tmp_path / "log.jsonl"
    records = [{"step": 10, "time": 100.0}, {"step": 20, "time": 150.0}, {"step": 30, "time": 155.0},
               {"step": 40, "time": 160.0}]
    log.write_text("\n".join(json.dumps(r) for r in records))
    assert device_session.steady_rate(log) == pytest.approx(30 / 60)
    log.write_text(json.dumps(records[0]))
    with pytest.raises(RuntimeError, match="probe-steps"):
        device_session.steady_rate(log)


def test_session_trains_packs_and_lands(tmp_path):
    out = tmp_path / "out"
    done = run_script("run", "--out", str(out), "--config", "configs/parallax-tiny-cpu.json", "--budget", "120",
                      "--probe-steps", "4", "--max-steps", "6", "--set", "eval_heldout=2", "--reserve", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    parts = sorted(p.name for p in out.glob("session.tar.*"))
    assert parts and len(parts) + 1 <= device_session.MAX_FILES
    assert all((out / p).stat().st_size <= device_session.PART_BYTES for p in parts)
    summary = json.loads((out / "session.json").read_text())
    training = summary["training"]
    assert training["finished"] and training["steps_done"] == training["steps_planned"] == 6
    assert training["config"]["warmup_steps"] == 1 and "sad" in training["evaluation"]["heldout"]

    results = tmp_path / "results"
    results.mkdir()
    (results / "models.json").write_text((ROOT / "bench" / "results" / "models.json").read_text())
    runs = tmp_path / "runs"
    landed = subprocess.run([sys.executable, "bench/device_session.py", "land", str(out), "--runs", str(runs),
                             "--results", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert landed.returncode == 0, landed.stderr[-3000:]
    run_dir = runs / "parallax-tiny-cpu"
    assert {"final.safetensors", "final.json", "log.jsonl", "eval.jsonl"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "final.json").read_text())["config"]["model"] == "parallax"

    import torch

    from mattebox.models import registry
    from mattebox.models.weights import load_weights, read_state_dict

    state = read_state_dict(run_dir / "final.safetensors")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    model = registry.build("parallax", tiny=True)
    load_weights(model, run_dir / "final.safetensors")  # strict: every key of the tiny net
    assert json.loads((results / "device_session.json").read_text())["training"]["landed"].endswith(
        "final.safetensors")
    assert "not measured" in (results / "models.md").read_text()  # no CUDA here: the rows say so


def test_land_merges_measured_gpu_rows(tmp_path):
    stage, out, results = tmp_path / "stage", tmp_path / "out", tmp_path / "results"
    for folder in (stage, out, results):
        folder.mkdir()
    row = {"model": "parallax", "frame": "1920x1080", "gpu": "NVIDIA H200", "autocast": "torch.bfloat16",
           "tile": 448, "batch": 16, "seconds": 0.42, "peak_gib": 3.1, "bytes_per_pixel_measured": 5123,
           "bytes_per_pixel_assumed": 6000.0}
    (stage / "models_gpu.json").write_text(json.dumps([row]))
    (stage / "session.json").write_text(json.dumps({"facts": {"gpu": "NVIDIA H200", "date": "2026-12-03",
                                                              "torch": "2.11.0"}}))
    assert device_session.pack(stage, out) == ["session.tar.000"]
    (results / "models.json").write_text((ROOT / "bench" / "results" / "models.json").read_text())
    assert device_session.main(["land", str(out), "--runs", str(tmp_path / "runs"),
                                "--results", str(results)]) == 0
    report = json.loads((results / "models.json").read_text())
    assert report["gpu"] == [row] and report["cpu"]  # CPU rows measured here are kept
    table = (results / "models.md").read_text()
    assert "| parallax | 1920x1080 | NVIDIA H200 | torch.bfloat16 | 448 × 16 | 0.42 | 3.1 | 5123 (6000) |" in table
    assert "GPU (bench/device_session.py on NVIDIA H200, 2026-12-03, torch 2.11.0):" in table


def test_make_bench_does_not_run_the_device_session():
    import run_all

    names = [p.stem for p in run_all.benchmark_scripts()]
    assert "device_session" not in names and "run_all" not in names
    assert {"models", "twoframe", "classical"} <= set(names)


def test_a_failed_training_still_returns_the_session(tmp_path):
    """A training that breaks (here: a config key that does not exist) must not lose the rest of the call: the
    session comes back, small, with the error named."""
    out = tmp_path / "out"
    done = run_script("run", "--out", str(out), "--config", "configs/parallax-tiny-cpu.json", "--budget", "60",
                      "--set", "no_such_key=1", "--skip-bench")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "session.json").read_text())
    assert "no_such_key" in summary["training_error"] and "training" not in summary
    assert [p.name for p in out.glob("session.tar.*")] == ["session.tar.000"]
