"""The RAPO benchmark times RAPO with its parts acting: one quick pass of its core (1 run per arm, 3 steps, G = 2)
must show replay insertions, an Eq. 6 factor > 1 and Eq. 5 pruning of the always-solved prompt, and none of them in
the plain-GRPO arm."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_rapo.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_rapo", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_core_quick_parts_act(tmp_path):
    bench = _bench()
    lines: list[str] = []
    res = bench.bench_core(runs=1, steps=3, group_size=2, workdir=tmp_path, log=lines.append)
    assert all(res["checks"].values()), res["checks"]
    [rapo], [grpo] = res["rapo"], res["grpo"]
    assert rapo["replay_insertions"] > 0 and max(rapo["adv_scale"]) > 1.0
    assert rapo["pruned_ids"] == ["easy-0"] and rapo["epochs_ended"] == 1
    assert grpo["replay_insertions"] == 0 and set(grpo["adv_scale"]) == {1.0} and grpo["pruned_ids"] == []
    # same work per step in both arms (scripted rollouts of one shape), CPU seconds measured per step
    assert rapo["response_tokens"] == grpo["response_tokens"]
    assert len(rapo["cpu"]) == len(grpo["cpu"]) == 3 and all(t > 0 for t in rapo["cpu"] + grpo["cpu"])
    assert len(res["ratios"]) == 1 and res["ratios"][0] > 0
    assert bench.report(res, log=lines.append)
    assert any(line.startswith("CHECK PASS: replay insertions") for line in lines)


def test_checks_fail_when_a_part_cannot_act():
    bench = _bench()
    rec = {"replay_insertions": 0, "adv_scale": [1.0, 1.0], "pruned": [0.0, 0.0], "pruned_ids": [],
           "epochs_ended": 0, "steps": 2, "cpu": [1.0, 1.0]}
    checks = bench.rapo_checks([rec], [rec])
    assert not checks["replay insertions > 0 in every RAPO run"]
    assert not checks["Eq. 6 advantage scale > 1 on some step of every RAPO run"]
    assert not checks["Eq. 5 pruned > 0 after an epoch end in every RAPO run"]
    assert not bench.report({"grpo": [dict(rec, cpu_per_step=1.0, response_tokens=[1])],
                             "rapo": [dict(rec, cpu_per_step=1.0, response_tokens=[1], replayed=[0], zero_spread=[1],
                                           epoch=[0], replay_buffer=0)],
                             "ratios": [1.0], "checks": checks, "steps": 2, "runs": 1, "G": 2}, log=lambda s: None)
