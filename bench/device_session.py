"""The one prepared device call for a session that is lent a GPU, and the step that lands its results here.

A lent GPU comes with 15 minutes of device time for the whole session (machine start, idle and transfers
included) and one command may run 10 minutes, so everything that needs the GPU runs in ONE command budgeted to
end inside it (docs/training.md, "On a GPU machine"):

    run(timeout_s=540,
        command="PYTHONUNBUFFERED=1 PYTHONPATH=plugin:server python3 bench/device_session.py run --out $OUT")

``run`` does, in order, and stops each part in time for the next:

1. facts: device name, torch and CUDA versions;
2. bench/models.py's GPU rows for every registry model: 1920x1080 and 3840x2160 tiled time, peak memory, and the
   measured activation bytes per pixel that the engines' tile sizing assumes (issue #6 item 9);
3. training CONFIG (default configs/parallax-gpu.json) for what is left of ``--budget``: a probe of
   ``--probe-steps`` measures the steady step rate, then the schedule is set to end inside the budget
   (steps = rate × seconds left, 10 % warm-up), so the run reaches its ``final`` checkpoint with a complete
   cosine schedule and its held-out evaluation (issue #7 item 5). A ``--time-limit`` backstop pauses it at
   ``last`` instead if the rate drops;
4. packing: the weights in fp16 (half the transfer), the run's logs and config, the GPU rows and a summary go into
   one tar split into 15 MiB parts in ``--out``, inside the device's return limits (8 files of at most 16 MiB).

Then, here: ``python bench/device_session.py land FILES_AT`` joins and unpacks the parts into runs/<name>/
(weights back in fp32 as ``final.safetensors``, with ``final.json`` and the logs), merges the GPU rows into
bench/results/models.{json,md} and writes bench/results/device_session.json; ``python bench/learned.py`` then
scores the checkpoint against the classical engine.

Imports only torch, numpy, OpenCV and safetensors (the device machine has no pyzmq), like ``mattebox train``.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugin"), str(ROOT / "server"), str(Path(__file__).resolve().parent)]

PART_BYTES = 15 * 2 ** 20  #: one returned file (the device returns files of at most 16 MiB)
MAX_FILES = 8  #: files the device returns from $OUT
PART_PREFIX = "session.tar."


def parse_value(text: str):
    """A ``--set`` value: JSON where it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def device_facts() -> dict:
    import torch

    facts = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                     bf16=torch.cuda.is_bf16_supported())
    else:
        facts["gpu"] = None
    return facts


def bench_gpu(log) -> list:
    import models as model_bench  # bench/models.py

    rows = []
    for name in model_bench.model_names():
        started = time.monotonic()
        try:
            rows.extend(model_bench.gpu_rows(name))
        except Exception as exc:  # one model's failure must not cost the session the others or the training
            traceback.print_exc()
            rows.append({"model": name, "gpu": f"failed: {exc.__class__.__name__}: {exc}"})
        log(f"gpu bench {name}: {time.monotonic() - started:.1f} s")
    return rows


def steady_rate(log_path: Path) -> float:
    """Steps per second between the first and the last record of a run's log.jsonl (the first record absorbs
    worker start-up and CUDA initialisation)."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if len(records) < 2:
        raise RuntimeError(f"{log_path}: the probe logged {len(records)} record(s); raise --probe-steps")
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-6)


def train_in_budget(args, run_dir: Path, deadline: float, log) -> dict:
    """Probe the step rate, size the schedule to the time left, train to ``final`` (see the module docstring)."""
    from mattebox.training.trainer import TrainConfig, Trainer

    base = TrainConfig.load(args.config).to_dict()
    base.update({key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)})
    base.update(output=str(run_dir), **({"device": args.device} if args.device else {}))
    # the probe keeps the config's step count: it sizes the seed range (the held-out seeds lie above it)
    probe = TrainConfig.from_dict({**base, "steps": max(base["steps"], args.probe_steps + 1),
                                   "log_every": max(1, args.probe_steps // 4), "eval_every": 10 ** 9,
                                   "checkpoint_every": 10 ** 9})
    trainer = Trainer(probe, log=log)
    started = time.monotonic()
    trainer.train(resume=False, stop_at=args.probe_steps)
    rate = steady_rate(run_dir / "log.jsonl")
    left = deadline - time.monotonic() - args.reserve
    steps = max(args.probe_steps + 1, args.probe_steps + int(rate * left))
    if args.max_steps:
        steps = min(steps, max(args.max_steps, args.probe_steps + 1))
    final = {**base, "steps": steps, "warmup_steps": max(1, steps // 10), "eval_every": steps,
             "checkpoint_every": steps}
    log(f"probe: {rate:.2f} steps/s over {args.probe_steps} steps; {left:.0f} s left -> {steps} steps")
    trainer.config = TrainConfig.from_dict(final)
    result = trainer.train(resume=True, time_limit=max(1.0, deadline - time.monotonic() - args.reserve / 2))
    return {"config": final, "probe_steps": args.probe_steps, "probe_rate_steps_per_s": round(rate, 3),
            "steps_planned": steps, "steps_done": result["step"], "finished": result["step"] >= steps,
            "wall_s": round(time.monotonic() - started, 1), "evaluation": result["evaluation"],
            "command": "python3 bench/device_session.py " + " ".join(sys.argv[1:])}


def weights_tag(training: dict) -> str:
    """The checkpoint a training summary's weights are: ``final`` when the run finished, else the paused ``last``."""
    return "final" if training["finished"] else "last"


def pack(stage: Path, out: Path) -> list:
    """Tar ``stage`` and split it into PART_BYTES parts in ``out``; returns the part names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(stage)))
    data = buffer.getvalue()
    names = []
    for index, offset in enumerate(range(0, len(data), PART_BYTES)):
        name = f"{PART_PREFIX}{index:03d}"
        (out / name).write_bytes(data[offset:offset + PART_BYTES])
        names.append(name)
    return names


def run(args) -> int:
    deadline = time.monotonic() + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mattebox-session-") as tmp:
        session = stage_session(args, Path(tmp), deadline)
        (out / "session.json").write_text(json.dumps(session, indent=2))
        parts = pack(Path(tmp), out)
    if len(parts) + 1 > MAX_FILES:
        print(f"WARNING: {len(parts)} parts + session.json exceed the {MAX_FILES} files the device returns; "
              "train a smaller model or return the rest in an immediate second call", file=sys.stderr)
    print(json.dumps({**session, "parts": parts}, indent=2))
    return 0


def stage_session(args, stage: Path, deadline: float) -> dict:
    """Steps 1-3 of the module docstring, written into ``stage``; returns the session summary."""
    from mattebox.models.weights import read_state_dict, save_weights

    def log(message):
        print(message, file=sys.stderr, flush=True)

    session = {"facts": device_facts()}
    log(json.dumps(session["facts"]))
    rows = [] if args.skip_bench else bench_gpu(log)
    (stage / "models_gpu.json").write_text(json.dumps(rows, indent=2))
    if args.config:
        run_dir = stage / "run"
        try:
            session["training"] = train_in_budget(args, run_dir, deadline, log)
        except Exception as exc:  # keep what the call has measured so far: it comes back without weights
            traceback.print_exc()
            session["training_error"] = f"{exc.__class__.__name__}: {exc}"
        else:
            tag = weights_tag(session["training"])
            state = read_state_dict(run_dir / f"{tag}.safetensors")
            save_weights({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
                         stage / "weights_fp16.safetensors", metadata={"mattebox.tag": tag})
        for path in run_dir.glob("*"):  # fp32 weights and optimiser state stay behind: too big to return
            if path.suffix in (".safetensors", ".pt"):
                path.unlink()
    session["seconds"] = round(args.budget - (deadline - time.monotonic()), 1)
    (stage / "session.json").write_text(json.dumps(session, indent=2))
    return session


def land(args) -> int:
    """Join the parts from a device call into runs/<name>/ and bench/results (see the module docstring)."""
    import torch

    import models as model_bench  # bench/models.py
    from mattebox.models.weights import read_state_dict, save_weights

    parts = sorted(Path(args.files_at).glob(PART_PREFIX + "*"))
    if not parts:
        print(f"land: no {PART_PREFIX}NNN parts in {args.files_at}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, \
            tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        tar.extractall(tmp, filter="data")
        stage = Path(tmp)
        session = json.loads((stage / "session.json").read_text())
        rows = json.loads((stage / "models_gpu.json").read_text())
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        if rows:
            report = json.loads((results / "models.json").read_text())
            report["gpu"] = rows
            report["gpu_source"] = (f"bench/device_session.py on {session['facts'].get('gpu')}, "
                                    f"{session['facts']['date']}, torch {session['facts']['torch']}")
            model_bench.write_report(report, results)
        training = session.get("training")
        if training:
            run_dir = Path(args.runs) / training["config"]["name"]
            run_dir.mkdir(parents=True, exist_ok=True)
            tag = weights_tag(training)
            state = read_state_dict(stage / "weights_fp16.safetensors")
            save_weights({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                         run_dir / f"{tag}.safetensors", metadata={"mattebox.model": training["config"]["model"]})
            for path in (stage / "run").glob("*"):
                (run_dir / path.name).write_bytes(path.read_bytes())
            session["training"]["landed"] = str(run_dir / f"{tag}.safetensors")
        (results / "device_session.json").write_text(json.dumps(session, indent=2) + "\n")
    print(json.dumps(session, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    go = verbs.add_parser("run", help="on the device machine: bench, train, pack into --out")
    go.add_argument("--out", required=True, help="folder the device returns ($OUT)")
    go.add_argument("--budget", type=float, default=480.0,
                    help="seconds for the whole command; keep it 60 s under timeout_s (default: %(default)s)")
    go.add_argument("--config", default=str(ROOT / "configs" / "parallax-gpu.json"),
                    help="training config; empty to skip training (default: %(default)s)")
    go.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a top-level config key (JSON value), e.g. --set workers=14")
    go.add_argument("--device", help="training device (overrides the config)")
    go.add_argument("--probe-steps", type=int, default=40, help="steps that measure the rate (default: %(default)s)")
    go.add_argument("--max-steps", type=int, default=0, help="cap on the planned steps (0: none)")
    go.add_argument("--reserve", type=float, default=75.0,
                    help="seconds kept for the final evaluation, saving and packing (default: %(default)s)")
    go.add_argument("--skip-bench", action="store_true", help="train only")
    back = verbs.add_parser("land", help="here: unpack a device call's parts into runs/ and bench/results/")
    back.add_argument("files_at", help="the folder the device call's files were copied to")
    back.add_argument("--runs", default=str(ROOT / "runs"), help="training runs folder (default: %(default)s)")
    back.add_argument("--results", default=str(ROOT / "bench" / "results"),
                      help="bench results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    return run(args) if args.verb == "run" else land(args)


if __name__ == "__main__":
    sys.exit(main())
