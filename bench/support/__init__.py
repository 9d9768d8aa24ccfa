"""What the benches share. Importing this package puts the checkout's plugin/, server/ and installers/ first on
``sys.path`` (a bench runs as ``python bench/NAME.py`` from any folder), so a bench starts with::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.support import RESULTS, ROOT, write_results  # noqa: E402

times calls with :func:`median_seconds` and writes what it measured with :func:`write_results`.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

sys.path[:0] = [str(ROOT / folder) for folder in ("plugin", "server", "installers")
                if str(ROOT / folder) not in sys.path]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def write_results(name: str, data, markdown: str, echo: bool = True) -> None:
    """bench/results/NAME.json (``data``) and NAME.md (``markdown``), printing the markdown when ``echo``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    if echo:
        print(markdown)


def median_seconds(fn, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
