"""`make bench`: run every benchmark script in bench/ (each writes bench/results/NAME.json and NAME.md), then
print the markdown tables. A failing benchmark is reported and the others still run."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: scripts in bench/ that are not benchmarks: this runner, the GPU session (one device call, then `land`), and
#: investigations that print their findings (docs/classical.md quotes them) instead of writing bench/results
NOT_BENCHMARKS = {"run_all", "device_session", "matte_stages", "multigrid_trial", "solve_levels"}


def benchmark_scripts(wanted=()) -> list:
    """The benchmark scripts in bench/, all or those named in ``wanted`` (stems)."""
    return [p for p in sorted(HERE.glob("*.py")) if p.stem not in NOT_BENCHMARKS and (not wanted or p.stem in wanted)]


def main(argv) -> int:
    scripts = benchmark_scripts(set(argv))
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        print(f"== {script.stem}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(script.stem)
    for script in scripts:
        table = HERE / "results" / f"{script.stem}.md"
        if table.exists():
            print(f"\n{table.read_text()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
