"""Engines for testing the server's mechanics (loaded with MATTEBOX_ENGINES or engines.register)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List

import numpy as np

from mattebox.contract import Engine, MatteResult

#: the ``$MATTEBOX_ENGINES`` entry that makes a server load :class:`SlowEngine` as ``test-slow``
SLOW_ENGINE = "test-slow=mattebox.testing.engines:SlowEngine"


class SlowEngine(Engine):
    """Alpha = mean of the image's channels; runs MATTEBOX_TEST_STEPS steps of MATTEBOX_TEST_STEP_S seconds,
    reporting progress at each, so tests can cancel or kill mid-job. MATTEBOX_TEST_STEP_S is read at each step: a
    test with the server in its own process gives a job many steps (so it is surely still running when the test
    looks, however loaded the machine), then sets it to 0 to let the job finish at once. With MATTEBOX_TEST_RUN_LOG
    set, each run appends "start MEAN" to that file when it starts and "end MEAN" when it completes (MEAN: the
    image's mean), so tests can count how often the engine really ran and whether a cancelled run stopped. With
    MATTEBOX_TEST_HOLD naming a file, a run that has done its steps waits while that file exists: a job that
    cannot end before a test's cancel, whose server (a cluster's replica, say) the test cannot speed up."""

    name = "test-slow"
    description = "test engine: slow, deterministic"

    def matte(self, request, progress):
        key = f"{float(request.image.mean()):.6f}"
        _log_run("start", key)
        steps = int(os.environ.get("MATTEBOX_TEST_STEPS", "20"))
        for step in range(steps):
            progress("work", step, steps)
            time.sleep(float(os.environ.get("MATTEBOX_TEST_STEP_S", "0.05")))
        while os.environ.get("MATTEBOX_TEST_HOLD") and os.path.exists(os.environ["MATTEBOX_TEST_HOLD"]):
            progress("hold", steps, steps)  # where a cancel lands
            time.sleep(0.05)
        _log_run("end", key)
        alpha = request.image.mean(axis=2).astype(np.float32)
        return MatteResult(alpha=alpha, foreground=request.image.copy(), trimap=np.full(alpha.shape, 0.5, np.float32),
                           info={"guidance": "test"})


def _log_run(event: str, key: str) -> None:
    if os.environ.get("MATTEBOX_TEST_RUN_LOG"):
        with open(os.environ["MATTEBOX_TEST_RUN_LOG"], "a") as fh:
            fh.write(f"{event} {key}\n")


def run_events_once_idle(endpoint: str, run_log: Path) -> List[str]:
    """The events ("start", "end") in SlowEngine's run log ``run_log`` once the server at ``endpoint`` runs and
    queues no job: how a test shows that a cancelled job's engine stopped before its end ("start" without "end")
    without timing the cancel, which a loaded machine can make as slow as the whole job."""
    from mattebox_plugin.client import Client
    from tests.support.wait import wait_for

    def idle(status: dict) -> bool:
        return not status["running"] and not status["running_other"] and not status["queue"]

    with Client(endpoint, timeout=30) as client:
        wait_for(lambda: idle(client.status()), what=f"the server at {endpoint} to finish its jobs")
    return [line.split()[0] for line in run_log.read_text().splitlines()] if run_log.exists() else []


class FailingEngine(Engine):
    name = "test-fail"
    description = "test engine: always raises"

    def matte(self, request, progress):
        raise RuntimeError("deliberate failure")
