"""`mattebox doctor`: versions, device, configuration, the job store's state directory and whether the endpoint
answers."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="endpoint to check (default: the configured one)")
    parser.add_argument("--timeout", type=float, default=3.0)


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # report, never crash: this is the diagnostic tool
        return f"missing ({exc.__class__.__name__})"
    return str(getattr(mod, "__version__", getattr(mod, "VERSION", "present")))


def run(args: argparse.Namespace) -> int:
    import zmq

    from mattebox_plugin import config as client_config
    from mattebox_plugin.client import Client, ServerUnavailable

    from .. import __version__
    from ..jobstore import describe_state_dir
    from ..paths import state_dir
    from ..sysinfo import resolve_device

    print(f"mattebox     {__version__}")
    print(f"python       {sys.version.split()[0]} ({platform.platform()})")
    print(f"pyzmq        {zmq.__version__} (libzmq {zmq.zmq_version()}, CURVE {'yes' if zmq.has('curve') else 'no'})")
    for name in ("msgpack", "numpy", "cv2", "torch"):
        print(f"{name:12s} {_version(name)}")
    device = resolve_device("auto")
    if device.startswith("cuda"):
        import torch

        seen = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "driver present, torch sees none"
        device += f" ({seen})"
    print(f"device       {device}")
    from ..matting import aot, compiled

    print(f"kernels      {aot.status()}")  # the classical engine's: ahead-of-time build or numba's JIT
    try:  # how many threads a big frame's kernels run on (MATTEBOX_THREADS, else the CPUs)
        print(f"threads      {compiled.threads()}")
    except ValueError as exc:
        print(f"threads      {exc}")
    cfg = client_config.load()
    endpoint = args.endpoint or cfg["endpoint"]
    print(f"config       {client_config.config_path()}")
    print(f"state dir    {describe_state_dir(state_dir())}")
    client = Client(**dict(client_config.client_kwargs(cfg), endpoint=endpoint, timeout=args.timeout))
    try:
        info = client.hello()
    except ServerUnavailable:
        print(f"endpoint     {endpoint}: no answer (start one with `mattebox serve --endpoint {endpoint}`)")
        return 1
    finally:
        client.close()
    engines = ", ".join(f"{e['name']}{'' if e['available'] else ' (unavailable)'}" for e in info["engines"])
    print(f"endpoint     {endpoint}: mattebox {info['server_version']} on {info['device']}, engines: {engines}")
    return 0
