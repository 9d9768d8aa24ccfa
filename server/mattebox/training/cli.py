"""`mattebox train CONFIG`: train a model from a JSON config (see docs/training.md).

Imports only numpy, OpenCV and torch (never pyzmq or msgpack), so it runs on a bare GPU machine from the source
tree: ``PYTHONPATH=plugin:server python -m mattebox train configs/parallax-gpu.json``.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config (JSON, e.g. configs/tiny-cpu.json)")
    parser.add_argument("--output", help="run folder (overrides the config's 'output')")
    parser.add_argument("--steps", type=int, help="total optimiser steps (overrides the config)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides the config)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (overrides the config)")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="stop cleanly after this long (checkpoint saved; the same command resumes)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch even if OUTPUT/last.* exist")
    parser.add_argument("--install", action="store_true",
                        help="after training (or for a finished run), export OUTPUT/final.safetensors as the "
                             "registry model's installed weights (<models dir>/<model>.safetensors + .sha256)")
    parser.add_argument("--evaluate", action="store_true",
                        help="only evaluate the run's last checkpoint (or the initial weights) and print JSON")


def run(args: argparse.Namespace) -> int:
    from .trainer import TrainConfig, Trainer

    try:
        config = TrainConfig.load(args.config)
        overrides = {k: getattr(args, k) for k in ("output", "steps", "device", "workers")
                     if getattr(args, k) is not None}
        if overrides:
            config = TrainConfig.from_dict({**config.to_dict(), **overrides})
        trainer = Trainer(config, log=lambda message: print(message, file=sys.stderr))
    except (ValueError, KeyError, ImportError) as exc:
        print(f"mattebox train: {exc}", file=sys.stderr)
        return 2
    if args.evaluate:
        trainer.resume()
        print(json.dumps({"step": trainer.step, **trainer.evaluate()}, indent=2))
        return 0
    result = trainer.train(resume=not args.no_resume, time_limit=args.time_limit)
    if args.install:
        if result["step"] < config.steps:
            print("mattebox train: not installing: the run stopped before its last step", file=sys.stderr)
            return 1
        result["installed"] = str(trainer.install())
    print(json.dumps(result, indent=2))
    return 0
