"""`mattebox serve`: run the server until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import logging
import signal

from mattebox_plugin import protocol
from mattebox_plugin.config import DEFAULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=DEFAULTS["endpoint"],
                        help="ZeroMQ endpoint to bind (tcp://HOST:PORT, port 0 = random; ipc://PATH). Only loopback "
                             "unless CURVE keys are given. Default: %(default)s")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--workers", type=int, default=1, help="worker threads (one per device is usual)")
    parser.add_argument("--max-message-bytes", type=int, default=protocol.DEFAULT_LIMITS["max_message_bytes"],
                        help="most bytes of pixel buffers in one message, counted as frames arrive (default: "
                             "%(default)s)")
    parser.add_argument("--max-header-bytes", type=int, default=protocol.DEFAULT_LIMITS["max_header_bytes"],
                        help="most bytes of a message's msgpack header, refused before decoding (default: "
                             "%(default)s)")
    parser.add_argument("--max-pixels", type=int, default=protocol.DEFAULT_LIMITS["max_pixels"])
    parser.add_argument("--max-side", type=int, default=protocol.DEFAULT_LIMITS["max_side"])
    parser.add_argument("--max-queued-jobs", type=int,
                        default=protocol.DEFAULT_LIMITS["max_queued_jobs_per_client"],
                        help="maximum unfinished jobs per client (per owner: CURVE key, owner_key or connection)")
    parser.add_argument("--max-bytes-per-client", type=int, default=protocol.DEFAULT_LIMITS["max_bytes_per_client"],
                        help="maximum input bytes of one owner's unfinished jobs (default: %(default)s)")
    parser.add_argument("--max-queued-jobs-total", type=int, default=protocol.DEFAULT_LIMITS["max_queued_jobs"],
                        help="maximum unfinished jobs of all clients (default: %(default)s)")
    parser.add_argument("--max-bytes-in-flight", type=int, default=protocol.DEFAULT_LIMITS["max_bytes_in_flight"],
                        help="maximum input bytes of all unfinished jobs (default: %(default)s)")
    parser.add_argument("--max-result-bytes", type=int, default=protocol.DEFAULT_LIMITS["max_result_bytes"],
                        help="memory-only servers (--state-dir none): bytes of finished, unfetched results kept; "
                             "past it the oldest are evicted and a late fetch gets result_evicted (default: "
                             "%(default)s)")
    parser.add_argument("--shot-timeout", type=int, default=protocol.DEFAULT_LIMITS["shot_timeout_s"],
                        help="seconds a shot job waits for a frame it asked for, with no word from its client, "
                             "before it fails with frame_timeout and frees its memory (default %(default)s)")
    parser.add_argument("--shot-max-wait", type=int, default=protocol.DEFAULT_LIMITS["shot_max_wait_s"],
                        help="seconds one shot job may spend waiting for its client's frames in all (pings do not "
                             "extend it), before it fails with frame_timeout (default %(default)s)")
    parser.add_argument("--max-running-shots", type=int, default=protocol.DEFAULT_LIMITS["max_running_shots"],
                        help="shot jobs solved at once, on workers of their own so single frames never wait for "
                             "them; further shots queue, fairly between owners (default %(default)s)")
    parser.add_argument("--result-ttl", type=float, default=86400.0,
                        help="seconds a finished, unfetched result is kept, in memory or on disk (default: "
                             "%(default)s = 24 h)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where jobs are kept so they survive a restart (SQLite records, spooled inputs, "
                             "stored results); 'none' keeps them in memory only. A new or empty folder (or one a "
                             "server already marked as its own); one holding other files is refused. Default: "
                             "$MATTEBOX_STATE, else $XDG_STATE_HOME/mattebox (~/.local/state/mattebox)")
    parser.add_argument("--curve-secret-key", metavar="FILE",
                        help="server key pair (from `mattebox keys`); required for a non-loopback endpoint")
    parser.add_argument("--curve-clients", metavar="DIR",
                        help="folder of allowed client public keys (required on a non-loopback endpoint unless "
                             "--allow-any-client)")
    parser.add_argument("--allow-any-client", action="store_true",
                        help="with CURVE on a non-loopback endpoint and no --curve-clients: serve every client that "
                             "knows the server's public key (encryption without authentication; refused otherwise)")
    parser.add_argument("--cluster", action="store_true",
                        help="run jobs on Ray Serve replicas (one per GPU; needs the 'cluster' extra: ray[serve])")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --cluster: join this Ray cluster (e.g. HEAD:6379 or 'auto') instead of starting one")
    parser.add_argument("--replicas", type=int, help="with --cluster: replica count (default: one per GPU, else 2)")
    parser.add_argument("--ready-file", metavar="PATH", help="write the bound endpoint here once listening")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    from .. import logs
    from ..server import BindRefused, Server, ServerConfig
    from ..sysinfo import resolve_device

    logs.setup(args.log_level, args.log_format)
    limits = {"max_message_bytes": args.max_message_bytes, "max_header_bytes": args.max_header_bytes,
              "max_pixels": args.max_pixels, "max_side": args.max_side,
              "max_queued_jobs_per_client": args.max_queued_jobs, "max_bytes_per_client": args.max_bytes_per_client,
              "max_queued_jobs": args.max_queued_jobs_total, "max_bytes_in_flight": args.max_bytes_in_flight,
              "max_result_bytes": args.max_result_bytes, "shot_timeout_s": args.shot_timeout,
              "shot_max_wait_s": args.shot_max_wait, "max_running_shots": args.max_running_shots}
    config = ServerConfig(endpoint=args.endpoint, device=resolve_device(args.device), workers=args.workers,
                          limits=limits, result_ttl=args.result_ttl, curve_secret_key_file=args.curve_secret_key,
                          curve_clients_dir=args.curve_clients, allow_any_client=args.allow_any_client,
                          state_dir=_state_dir(args.state_dir))
    if args.cluster:
        try:
            from ..cluster import ClusterBackend
            import ray  # noqa: F401
        except ImportError:
            logging.getLogger("mattebox.server").error("--cluster needs Ray Serve: pip install 'mattebox[cluster]' "
                                                       "(ray[serve])")
            return 2
        config.backend = ClusterBackend(address=args.ray_address, replicas=args.replicas, device=args.device)
        config.backend.start()
    server = Server(config)
    try:
        endpoint = server.bind()
    except BindRefused as exc:
        logging.getLogger("mattebox.server").error(str(exc))
        return 2
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as fh:
            fh.write(endpoint)
        import os

        os.replace(args.ready_file + ".tmp", args.ready_file)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    server.serve_forever()
    return 0


def _state_dir(value):
    """--state-dir: a folder, 'none' (memory only), or unset (paths.state_dir())."""
    from ..paths import state_dir

    if value is None:
        return str(state_dir())
    return None if value.strip().lower() == "none" else value
