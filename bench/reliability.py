"""Hardening, measured (not timed tests): protocol fuzzing, load, faults and memory, against real server processes.

1. fuzz: >= 100,000 seeded malformed messages (random bytes, truncated frames, reordered frames, mutated valid
   headers, huge declared sizes). Pass: the server never crashes and answers every message as docs/protocol.md
   says (an ``error``; a mutation that happens to stay valid may be ``accepted``). Messages are pipelined in
   batches and every answer is counted.
2. load: 8 concurrent client processes x 200 jobs each (passthrough engine, each job's mask unique so a wrong or
   duplicated delivery is caught). Pass: 0 lost, 0 duplicated, 0 wrong; p50/p99 latency reported.
3. faults: kill -9 of a client mid-job (the other clients lose nothing, the server keeps serving); server kill -9
   and restart with jobs queued, and with results finished but not fetched (the server's job store brings them
   back: the client gets every result without resubmitting, and finished jobs do not run again); a cluster replica
   killed mid-job (when ray is installed). Pass: 0 jobs lost.
4. memory: server RSS after 1,000 jobs within 10% of after 100.
5. store: what the job store costs: a 1920x1080 image+mask round trip (passthrough engine) against a server with
   a state directory vs a memory-only one, pixels through shared memory and as frames.
6. attacks: every defect of issue #17 as a scripted attack (bench/support/attacks.py), and the same attacks on shot
   jobs (stalled shots, huge declarations, unasked or oversized frames, pings without frames): held or not, other
   clients' jobs lost, and the peak RSS of each oversized input against 2x its limit.

``python bench/reliability.py [fuzz load faults memory store attacks] [--messages N]`` (``--only PART`` is the
same as naming one part); writes bench/results/reliability.json + .md, keeping the results of parts not run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS  # noqa: E402  (and the checkout's packages on sys.path)

from mattebox_plugin import protocol  # noqa: E402
from mattebox.testing.engines import SLOW_ENGINE  # noqa: E402
from mattebox.testing.servers import LOOPBACK, ServerProcess, tree_env, wait_for_busy_replica  # noqa: E402


def bench_server(*args: str, endpoint: str = LOOPBACK, state_dir=None, **env) -> ServerProcess:
    """``mattebox serve`` in a subprocess, in its own temporary folder removed on stop; its job store lives there
    unless ``state_dir`` is given (a folder shared with the server it replaces, or "none" for memory-only)."""
    return ServerProcess.temporary("--log-level", "warning", *args, endpoint=endpoint, state_dir=state_dir, env=env,
                                   start_timeout=180, stop_timeout=60)


# ------------------------------------------------------------------------------------------------- fuzz
def _valid(rng: random.Random, n: int):
    h, w = rng.randint(1, 6), rng.randint(1, 6)
    header = {"v": 1, "op": "matte", "id": f"f{n}", "client": "fuzzer",
              "params": {"engine": "passthrough", "outputs": ["alpha"]},
              "buffers": [{"name": "image", "shape": [h, w, 3], "dtype": "float32", "colorspace": "linear"}]}
    return header, [bytes(h * w * 3 * 4)]


def _mutate(rng: random.Random, header: dict) -> dict:
    header = json.loads(json.dumps(header))
    junk = [None, -1, 0, 2**63, 1.5, float("nan"), "", "x" * 300, [], {}, [1, 2], {"a": 1}, True, b"\x00\xff"]
    choice = rng.randrange(9)
    if choice == 0:
        header["v"] = rng.choice([0, 2, "1", None, 1.0])
    elif choice == 1:
        header["op"] = rng.choice(["", "MATTE", "shutdown", 7, None, "result", "progress"])
    elif choice == 2:
        header["params"][rng.choice(list(protocol.MATTE_PARAMS) + ["bogus"])] = rng.choice(junk)
    elif choice == 3:
        header["buffers"][0][rng.choice(["name", "shape", "dtype", "colorspace", "premultiplied", "shm"])] = \
            rng.choice(junk)
    elif choice == 4:
        header["buffers"][0]["shape"] = [rng.choice([0, -5, 1 << 20, 2**31, 70000]), rng.randint(1, 1 << 30), 3]
    elif choice == 5:
        header["buffers"] = rng.choice([None, [], {}, "image", [None]])
    elif choice == 6:
        header["id"] = rng.choice([None, "", "a/b", "x" * 200, 5, "ünï"])
    elif choice == 7:
        del header[rng.choice(["v", "op", "id", "buffers"])]
    else:
        header["reply_shm"] = rng.choice(junk + [{"name": "mattebox-1-0000000000000000", "offset": 0, "size": 8}])
    return header


def _fuzz_message(rng: random.Random, n: int):
    """-> (kind, frames). Every kind is malformed except where a mutation leaves the request valid."""
    kind = rng.choice(["random_bytes", "truncated", "reordered", "mutated_header", "huge_size", "garbage_header"])
    header, frames = _valid(rng, n)
    if kind == "random_bytes":
        return kind, [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 4))]
    if kind == "garbage_header":
        return kind, [protocol.MAGIC, rng.randbytes(rng.randint(0, 48)), *frames]
    if kind == "truncated":  # keep the first frames, the last kept one cut short
        message = protocol.encode(header, frames)
        keep = rng.randint(1, len(message))
        last = message[keep - 1]
        return kind, message[:keep - 1] + [last[:rng.randrange(len(last))]]
    if kind == "reordered":  # any order but the right one
        message = protocol.encode(header, frames)
        order = list(range(len(message)))
        while order == sorted(order):
            rng.shuffle(order)
        return kind, [message[i] for i in order]
    if kind == "huge_size":
        header["buffers"][0]["shape"] = rng.choice([[1 << 16, 1 << 16, 3], [16384, 16384, 4], [2**40, 2, 3],
                                                    [100000, 100000, 1]])
        return kind, [protocol.MAGIC, msgpack.packb(header), *frames]
    return kind, [protocol.MAGIC, msgpack.packb(_mutate(rng, header), use_bin_type=True), *frames]


def fuzz(messages: int, seed: int = 1234, batch: int = 200) -> dict:
    import zmq

    server = bench_server()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    rng = random.Random(seed)
    sent = answered = errors = accepted = unanswered = 0
    kinds: dict = {}
    codes: dict = {}
    started = time.perf_counter()
    n = 0
    while n < messages and server.alive():
        count = min(batch, messages - n)
        for _ in range(count):
            kind, frames = _fuzz_message(rng, n)
            kinds[kind] = kinds.get(kind, 0) + 1
            sock.send_multipart(frames)
            n += 1
        sent += count
        want = count
        while want:
            if not sock.poll(10000):
                unanswered += want
                break
            reply = sock.recv_multipart()
            header = msgpack.unpackb(reply[1], raw=False)
            if header["op"] in ("progress", "result"):
                continue  # later messages of a job a mutation left valid
            want -= 1
            answered += 1
            if header["op"] == "error":
                errors += 1
                codes[header["code"]] = codes.get(header["code"], 0) + 1
            elif header["op"] == "accepted":
                accepted += 1
    elapsed = time.perf_counter() - started
    alive = server.alive()
    from mattebox_plugin.client import Client

    with Client(server.endpoint, timeout=10) as client:
        still_serving = client.hello()["protocol"] == 1
    sock.close()
    ctx.term()
    server.stop()
    return {"messages": sent, "seed": seed, "kinds": kinds, "answered": answered, "errors": errors,
            "accepted_still_valid": accepted, "unanswered": unanswered, "error_codes": codes,
            "server_crashes": 0 if alive else 1, "still_serving": still_serving, "seconds": round(elapsed, 1),
            "messages_per_s": round(sent / elapsed), "pass": alive and still_serving and unanswered == 0
            and answered == sent}


# ------------------------------------------------------------------------------------------------- load
def _load_client(args):
    endpoint, index, jobs, window = args
    from mattebox_plugin.client import Client

    latencies, delivered, wrong = [], {}, 0
    with Client(endpoint, timeout=60) as client:
        client.hello()
        pending = {}
        next_job = 0
        while next_job < jobs or pending:
            while next_job < jobs and len(pending) < window:
                value = (index * jobs + next_job) / (8 * jobs)
                job = client.submit(image=np.full((32, 32, 3), 0.5, np.float32),
                                    mask=np.full((32, 32), value, np.float32),
                                    params={"engine": "passthrough", "outputs": ["alpha"]})
                pending[job.id] = (job, value, time.perf_counter())
                next_job += 1
            for job_id, (job, value, t0) in list(pending.items()):
                job.poll(0.002)
                if job.done:
                    result = job.result()
                    latencies.append(time.perf_counter() - t0)
                    delivered[job_id] = delivered.get(job_id, 0) + 1
                    if not np.all(result.alpha == np.float32(value)):
                        wrong += 1
                    del pending[job_id]
    return latencies, delivered, wrong


def load(clients: int = 8, jobs: int = 200, window: int = 4) -> dict:
    server = bench_server()
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_load_client, [(server.endpoint, i, jobs, window) for i in range(clients)])
    elapsed = time.perf_counter() - started
    alive = server.alive()
    server.stop()
    latencies = sorted(seconds for part in parts for seconds in part[0])
    delivered = {}
    for part in parts:
        for job_id, count in part[1].items():
            delivered[job_id] = delivered.get(job_id, 0) + count
    total = clients * jobs
    lost = total - len(delivered)
    duplicated = sum(c - 1 for c in delivered.values() if c > 1)
    wrong = sum(part[2] for part in parts)
    return {"clients": clients, "jobs_per_client": jobs, "in_flight_per_client": window, "jobs": total,
            "delivered": len(delivered), "lost": lost, "duplicated": duplicated, "wrong": wrong,
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
            "jobs_per_s": round(total / elapsed, 1), "seconds": round(elapsed, 1), "server_alive": alive,
            "pass": alive and lost == 0 and duplicated == 0 and wrong == 0}


# ----------------------------------------------------------------------------------------------- faults
KILLED_CLIENT = """
import sys, numpy as np
from mattebox_plugin.client import Client
c = Client(sys.argv[1], timeout=30); c.hello()
jobs = [c.submit(image=np.ones((32, 32, 3), np.float32), params={"engine": "test-slow"}) for _ in range(3)]
print("submitted", flush=True)
for job in jobs: job.result()
"""


def fault_client_killed() -> dict:
    from mattebox_plugin.client import Client

    server = bench_server(MATTEBOX_ENGINES=SLOW_ENGINE, MATTEBOX_TEST_STEPS="10", MATTEBOX_TEST_STEP_S="0.05")
    victim = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.endpoint], env=tree_env(),
                              stdout=subprocess.PIPE, text=True)
    with Client(server.endpoint, timeout=30) as other:
        other.hello()
        images = [np.random.default_rng(i).random((32, 32, 3), dtype=np.float32) for i in range(10)]
        jobs = [other.submit(image=img, params={"engine": "test-slow"}) for img in images]
        assert victim.stdout.readline().strip() == "submitted"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        results = [job.result(timeout=120) for job in jobs]
        ok = sum(np.allclose(r.alpha, img.mean(axis=2), atol=1e-6) for r, img in zip(results, images))
        still = other.hello()["protocol"] == 1
    alive = server.alive()
    server.stop()
    return {"fault": "kill -9 of a client mid-job", "other_jobs": len(jobs), "delivered": ok,
            "lost": len(jobs) - ok, "server_alive": alive and still, "pass": ok == len(jobs) and alive and still}


def _restart_env(state: Path, steps: str) -> dict:
    return dict(MATTEBOX_ENGINES=SLOW_ENGINE, MATTEBOX_TEST_STEPS=steps, MATTEBOX_TEST_STEP_S="0.05",
                MATTEBOX_TEST_RUN_LOG=str(state / "runs.log"))


def _runs(state: Path) -> int:
    log = state / "runs.log"
    return sum(line.startswith("start ") for line in log.read_text().splitlines()) if log.exists() else 0


def _wait_accepted(jobs, timeout: float = 60.0) -> None:
    """Until every job's ``accepted`` arrived: with a job store that means it is on disk (``submit`` returns on
    a job's first progress too, which can come first)."""
    deadline = time.monotonic() + timeout
    while not all(job.accepted or job.done for job in jobs) and time.monotonic() < deadline:
        for job in jobs:
            job.poll(0.01)


def _kill_and_restart(first, state: Path, env: dict):
    """kill -9 ``first``, then start its successor on the same port and state directory."""
    port = first.endpoint.rsplit(":", 1)[1]
    first.stop(signal.SIGKILL)
    return bench_server(endpoint=f"tcp://127.0.0.1:{port}", state_dir=state, **env)


def _delivered(jobs, images, label: str) -> int:
    """How many jobs returned their right result (the test engine's alpha is the image's channel mean); a failure
    is counted as lost and printed."""
    ok = 0
    for job, img in zip(jobs, images):
        try:
            ok += bool(np.allclose(job.result(timeout=180).alpha, img.mean(axis=2), atol=1e-6))
        except Exception as exc:
            print(f"{label}: job {job.id} failed: {exc}", flush=True)
    return ok


def _restart_fault(steps: str, seed: int, label: str, before_kill: Callable) -> dict:
    """Ten test-slow jobs on a server with a job store; ``before_kill(client, jobs)`` sets the scene and returns
    what it measured; then kill -9 and a restart on the same state directory, and the client only attaches
    (no resubmission). -> counts of delivered, lost and resubmitted jobs and engine runs, plus the measurements."""
    from mattebox_plugin.client import Client

    state = Path(tempfile.mkdtemp(prefix="mattebox-bench-state-"))
    env = _restart_env(state, steps)
    first = bench_server(state_dir=state, **env)
    with Client(first.endpoint, timeout=3, heartbeat=0.3, resubmit=False) as client:
        client.hello()
        images = [np.random.default_rng(seed + i).random((32, 32, 3), dtype=np.float32) for i in range(10)]
        jobs = [client.submit(image=img, params={"engine": "test-slow"}) for img in images]
        measured = before_kill(client, jobs)
        second = _kill_and_restart(first, state, env)
        try:
            ok = _delivered(jobs, images, label)
        finally:
            second.stop()
    resubmitted = sum(job._resubmitted for job in jobs)
    runs = _runs(state)
    shutil.rmtree(state, ignore_errors=True)
    return {"jobs": len(jobs), **measured, "delivered": ok, "lost": len(jobs) - ok, "resubmitted": resubmitted,
            "engine_runs": runs}


def fault_server_restart() -> dict:
    """kill -9 with jobs queued; the restarted server (same state directory) reruns them, the client only attaches."""
    def queued(client, jobs) -> dict:
        _wait_accepted(jobs)
        return {"queued_at_kill": client.status()["queue"]}

    row = _restart_fault("5", 100, "restart fault", queued)
    return {"fault": "server kill -9 and restart with jobs queued (no resubmission)", **row,
            "pass": row["delivered"] == row["jobs"] and row["resubmitted"] == 0}


def fault_server_kill_unfetched() -> dict:
    """kill -9 while finished results wait for a client that is not listening; after the restart the client's
    attach gets every result from disk, and no job runs a second time."""
    def unfetched(client, jobs) -> dict:
        client._reconnect()  # the results now go to a connection that is gone: nobody fetches them
        deadline = time.monotonic() + 120
        on_disk = 0
        while on_disk < len(jobs) and time.monotonic() < deadline:
            on_disk = client.status()["store"]["results_on_disk"]
            time.sleep(0.1)
        return {"results_on_disk_at_kill": on_disk}

    row = _restart_fault("2", 300, "unfetched fault", unfetched)
    return {"fault": "server kill -9 with finished-but-unfetched results", **row,
            "pass": row["delivered"] == row["jobs"] and row["resubmitted"] == 0 and row["engine_runs"] == row["jobs"]}


def fault_replica_killed() -> dict:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return {"fault": "cluster replica kill -9 mid-job", "skipped": "ray[serve] is not installed", "pass": None}
    from mattebox_plugin.client import Client

    server = bench_server("--cluster", "--replicas", "2", MATTEBOX_ENGINES=SLOW_ENGINE,
                        MATTEBOX_TEST_STEPS="20", MATTEBOX_TEST_STEP_S="0.1")
    try:
        with Client(server.endpoint, timeout=60) as client:
            client.hello()
            images = [np.random.default_rng(200 + i).random((32, 32, 3), dtype=np.float32) for i in range(6)]
            jobs = [client.submit(image=img, params={"engine": "test-slow"}) for img in images]
            victim = wait_for_busy_replica(client, timeout=60)
            if victim is None:
                raise RuntimeError("no cluster replica picked up a job within 60 s")
            os.kill(victim["pid"], signal.SIGKILL)
            results = [job.result(timeout=300) for job in jobs]
            ok = sum(np.allclose(r.alpha, img.mean(axis=2), atol=1e-6) for r, img in zip(results, images))
            retried = client.status()["cluster"]["retried_jobs"]
    finally:
        server.stop()
    return {"fault": "cluster replica kill -9 mid-job", "jobs": len(jobs), "delivered": ok, "lost": len(jobs) - ok,
            "retried": retried, "pass": ok == len(jobs) and retried >= 1}


def faults() -> list:
    return [fault_client_killed(), fault_server_restart(), fault_server_kill_unfetched(), fault_replica_killed()]


# ----------------------------------------------------------------------------------------------- memory
def memory(first: int = 100, total: int = 1000, side: int = 1024) -> list:
    """Server RSS (highest over the 20 jobs before each point) after ``first`` and ``total`` jobs, pixels as
    frames and through shared memory."""
    from mattebox_plugin.client import Client

    rng = np.random.default_rng(0)
    image = rng.random((side, side, 3), dtype=np.float32)
    mask = rng.random((side, side), dtype=np.float32)
    rows = []
    for shared in (False, True):
        server = bench_server()
        rss = {}
        with Client(server.endpoint, timeout=60, shared_memory=shared) as client:
            client.hello()
            window: list = []
            for n in range(1, total + 1):
                client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=60)
                window = (window + [server.rss_mb()])[-20:]
                if n in (first, total):
                    # the allocator returns big blocks to the OS at moments of its choosing, so one reading can
                    # land in a dip: compare the highest RSS over the last 20 jobs before each point
                    rss[n] = max(window)
            assert client.shared_memory == shared
        server.stop()
        growth = rss[total] / rss[first] - 1
        rows.append({"frame": f"{side}x{side}", "pixels": "shared memory" if shared else "frames",
                     f"rss_mb_after_{first}": round(rss[first], 1), f"rss_mb_after_{total}": round(rss[total], 1),
                     "growth_pct": round(100 * growth, 1), "pass": growth <= 0.10})
    return rows


# ------------------------------------------------------------------------------------------------ store
def store_overhead(jobs: int = 25, warmup: int = 3) -> list:
    """Median 1920x1080 round trip (submit -> result, image float32 RGB + mask, alpha + foreground back) against
    a server with a job store (state directory on this machine's disk) vs a memory-only one, pixels through shared
    memory and as frames. Two engines: passthrough (a few ms: the job usually ends before the store's writer gets
    to its inputs, so they are not spooled, and the client releases the result before it is written) and the test
    engine taking 0.1 s (inputs are spooled while it runs and the result is written after it is sent: the store's
    full cost, on the 2 cores the server, its writer and the client share)."""
    from mattebox_plugin.client import Client

    rng = np.random.default_rng(0)
    image = rng.random((1080, 1920, 3), dtype=np.float32)
    mask = rng.random((1080, 1920), dtype=np.float32)
    env = dict(MATTEBOX_ENGINES=SLOW_ENGINE, MATTEBOX_TEST_STEPS="2", MATTEBOX_TEST_STEP_S="0.05")
    rows = []
    for engine in ("passthrough", "test-slow"):
        for shared in (True, False):
            times, written = {}, 0.0
            for label, state in (("memory-only", "none"), ("job store", None)):
                server = bench_server(state_dir=state, **env)
                samples = []
                with Client(server.endpoint, timeout=60, shared_memory=shared) as client:
                    client.hello()
                    for n in range(warmup + jobs):
                        started = time.perf_counter()
                        client.submit(image=image, mask=mask, params={"engine": engine}).result(timeout=60)
                        if n >= warmup:
                            samples.append(time.perf_counter() - started)
                    time.sleep(0.5)  # let the writer finish before reading its counters
                    store = client.status()["store"]
                server.stop()
                times[label] = statistics.median(samples)
                if label == "job store":
                    written = store.get("bytes_written", 0) / (warmup + jobs)
            rows.append({"frame": "1920x1080", "engine": engine if engine == "passthrough" else "test-slow 0.1 s",
                         "pixels": "shared memory" if shared else "frames", "jobs": jobs,
                         "memory_only_ms": round(1000 * times["memory-only"], 1),
                         "store_ms": round(1000 * times["job store"], 1),
                         "overhead_ms": round(1000 * (times["job store"] - times["memory-only"]), 1),
                         "ratio": round(times["job store"] / times["memory-only"], 2),
                         "mb_written_per_job": round(written / 1e6, 1)})
    return rows


# -------------------------------------------------------------------------------------------------- main
def _table(result: dict) -> str:
    lines = ["# Reliability (bench/reliability.py)", ""]
    if "fuzz" in result:
        f = result["fuzz"]
        lines += ["## Protocol fuzzer", "", "| messages | answered | errors | accepted (mutation stayed valid) | "
                  "unanswered | server crashes | msgs/s | pass |", "|---|---|---|---|---|---|---|---|",
                  f"| {f['messages']} | {f['answered']} | {f['errors']} | {f['accepted_still_valid']} | "
                  f"{f['unanswered']} | {f['server_crashes']} | {f['messages_per_s']} | {f['pass']} |", "",
                  "Kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(f["kinds"].items())), "",
                  "Error codes: " + ", ".join(f"{k} {v}" for k, v in sorted(f["error_codes"].items())), ""]
    if "load" in result:
        g = result["load"]
        lines += ["## Load", "", "| clients x jobs | delivered | lost | duplicated | wrong | p50 ms | p99 ms | jobs/s "
                  "| pass |", "|---|---|---|---|---|---|---|---|---|",
                  f"| {g['clients']} x {g['jobs_per_client']} | {g['delivered']} | {g['lost']} | {g['duplicated']} | "
                  f"{g['wrong']} | {g['p50_ms']} | {g['p99_ms']} | {g['jobs_per_s']} | {g['pass']} |", ""]
    if "faults" in result:
        lines += ["## Faults", "", "| fault | jobs | delivered | lost | resubmitted | engine runs | pass |",
                  "|---|---|---|---|---|---|---|"]
        for f in result["faults"]:
            if "skipped" in f:
                lines.append(f"| {f['fault']} | - | - | - | - | - | skipped: {f['skipped']} |")
            else:
                jobs = f.get("jobs", f.get("other_jobs"))
                lines.append(f"| {f['fault']} | {jobs} | {f['delivered']} | {f['lost']} | {f.get('resubmitted', '-')} "
                             f"| {f.get('engine_runs', '-')} | {f['pass']} |")
        lines.append("")
    if "memory" in result:
        keys = [k for k in result["memory"][0] if k.startswith("rss_mb_after_")]
        lines += ["## Server memory (RSS, MiB)", "", f"| frame | pixels | {' | '.join(keys)} | growth | pass |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['frame']} | {m['pixels']} | {' | '.join(str(m[k]) for k in keys)} | {m['growth_pct']}% | "
                  f"{m['pass']} |" for m in result["memory"]]
        lines.append("")
    if "store" in result:
        lines += ["## Job store cost (1920x1080 round trip, median)", "",
                  "| frame | engine | pixels | jobs | memory-only ms | job store ms | overhead ms | ratio | "
                  "MB written per job |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['frame']} | {r['engine']} | {r['pixels']} | {r['jobs']} | {r['memory_only_ms']} | "
                  f"{r['store_ms']} | {r['overhead_ms']} | {r['ratio']}x | {r['mb_written_per_job']} |"
                  for r in result["store"]]
        lines.append("")
    if "attacks" in result:
        from bench.support import attacks

        lines += attacks.table(result["attacks"])
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = ["fuzz", "load", "faults", "memory", "store", "attacks"]
    parser.add_argument("parts", nargs="*", default=every, help=f"any of: {', '.join(every)} (default: all)")
    parser.add_argument("--only", choices=every, help="run only this part (the others' results are kept)")
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.only:
        args.parts = [args.only]
    unknown = sorted(set(args.parts) - set(every))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(every)}")
    path = RESULTS / "reliability.json"
    result = json.loads(path.read_text()) if path.exists() and set(args.parts) != set(every) else {}
    for part in args.parts:
        started = time.perf_counter()
        if part == "fuzz":
            result["fuzz"] = fuzz(args.messages)
        elif part == "load":
            result["load"] = load()
        elif part == "faults":
            result["faults"] = faults()
        elif part == "memory":
            result["memory"] = memory()
        elif part == "store":
            result["store"] = store_overhead()
        elif part == "attacks":
            from bench.support import attacks

            result["attacks"] = attacks.run_all()
        print(f"{part}: {time.perf_counter() - started:.0f} s", json.dumps(result[part])[:600], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    table = _table(result)
    (RESULTS / "reliability.md").write_text(table + "\n")
    print(table)
    parts = [result[k] for k in ("fuzz", "load") if k in result] + result.get("faults", []) + result.get("memory", [])
    held = all(a["held"] in (True, None) for a in result.get("attacks", []))
    return 0 if held and all(p.get("pass") in (True, None) for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
