"""Every benchmark can see a regression: its quick mode, run again with ``--inject-slowdown 2`` (the code under test
does twice its CPU work), moves its headline figure the wrong way by more than the plain run's min–max spread.
Sizes are cut below --quick to keep CI short; the scripts and flags are the real ones."""

from __future__ import annotations

import shutil

import pytest
from benchutil import assert_sees_slowdown


def test_fuzz_sees_slowdown():  # the fast one (~10 s)
    assert_sees_slowdown("bench_fuzz.py", "--quick", "--outputs", "3000", "--agent-runs", "100",
                         "--skip-extraction")


def test_agent_loop_sees_slowdown():
    assert_sees_slowdown("bench_agent_loop.py", "--quick", "--trajectories", "200", "--sweep", "1,100")


@pytest.mark.slow
def test_index_sees_slowdown():
    assert_sees_slowdown("bench_index.py", "--quick", "--passages", "3000", "--queries", "150",
                         "--rank-bm25-seconds", "0.5")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk; "
                    "scripts/setup.sh tries to)")
def test_tool_server_sees_slowdown():
    assert_sees_slowdown("bench_tool_server.py", "--quick", "--seconds", "1", "--calls", "search")


@pytest.mark.slow
def test_duetqa_sees_slowdown():
    assert_sees_slowdown("bench_duetqa.py", "--quick", "--items", "8", "--dedup", "3000", "--datasketch", "300")


@pytest.mark.slow
def test_eval_sees_slowdown():
    assert_sees_slowdown("bench_eval.py", "--quick", "--grading-only")


@pytest.mark.slow
def test_local_batching_sees_slowdown(embedded_model_dir):
    assert_sees_slowdown("bench_local_batching.py", "--quick", "--requests", "2", "--new-tokens", "4",
                         "--batched-only")


@pytest.mark.slow
@pytest.mark.longest
def test_rapo_sees_slowdown():  # ~2 min per run: 3 rounds x (GRPO, RAPO) x 3 steps on the tiny model
    assert_sees_slowdown("bench_rapo.py", "--quick", "--steps", "3")


@pytest.mark.slow
@pytest.mark.longest
def test_distributed_sees_slowdown():  # torchrun + gloo on CPU, 3 rounds of the headline arm (2 workers), 2 steps
    assert_sees_slowdown("bench_distributed.py", "--quick", "--steps", "2", "--two-only")


@pytest.mark.slow
def test_learning_sees_slowdown(tmp_path, embedded_model_dir):  # a tiny random policy, 3 questions x 3 rounds
    assert_sees_slowdown("bench_learning.py", "--quick", "--n", "3", "--work", str(tmp_path / "work"))
