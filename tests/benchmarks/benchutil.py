"""Helpers of the benchmark tests (imported by them; also puts benchmarks/ on sys.path): run a script of benchmarks/ in its own process and read its HEADLINE line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import _harness as H

__all__ = ["H", "assert_sees_slowdown", "run_bench"]


def run_bench(script: str, *args: str, slowdown: float = 1.0, timeout: float = 600) -> tuple[dict, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}"
           f"{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--inject-slowdown", str(slowdown)],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEADLINE ")]
    assert lines, f"{script} printed no HEADLINE:\n{proc.stdout[-3000:]}"
    assert "load average before" in proc.stdout and "load average after" in proc.stdout
    return json.loads(lines[-1].removeprefix("HEADLINE ")), proc.stdout


def assert_sees_slowdown(script: str, *args: str, attempts: int = 2) -> tuple[dict, dict]:
    """The headline with --inject-slowdown 2 moves the wrong way by more than the plain run's min–max spread.

    A second attempt absorbs one burst of load from elsewhere on a shared machine; a benchmark that cannot see the
    slowdown fails both."""
    for attempt in range(attempts):
        base, _ = run_bench(script, *args)
        slow, _ = run_bench(script, *args, slowdown=2.0)
        assert base["n"] >= 3 and slow["n"] >= 3, (base, slow)
        moved = slow["median"] - base["median"] if base["better"] == "lower" else base["median"] - slow["median"]
        spread = base["max"] - base["min"]
        if moved > spread:
            break
        print(f"{script}: attempt {attempt + 1}: moved {moved:.4g}, spread {spread:.4g}")
    assert moved > spread, (f"{script}: '{base['name']}' {base['median']:.4g} [{base['min']:.4g}–{base['max']:.4g}] "
                            f"-> x2 slowdown {slow['median']:.4g} [{slow['min']:.4g}–{slow['max']:.4g}]: moved "
                            f"{moved:.4g}, spread {spread:.4g}")
    print(f"{script}: {base['name']} {base['median']:.4g} [{base['min']:.4g}–{base['max']:.4g}] -> "
          f"{slow['median']:.4g} [{slow['min']:.4g}–{slow['max']:.4g}] with --inject-slowdown 2")
    return base, slow
