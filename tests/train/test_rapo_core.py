"""RAPO pieces with worked examples: Eq. 3 advantages, Eq. 6 scaling (with cap), Eq. 5 pruning, the replay plan,
the buffer, and the pruning schedule."""

import math
import random

import pytest

from fathom.rl import rapo


def test_group_advantages_population_std():
    # group 1: [1, 0] → μ = 0.5, σ_pop = 0.5 → ±1 ; group 2 all equal → 0
    adv = rapo.group_advantages([1.0, 0.0, 0.1, 0.1], 2, eps=0.0)
    assert adv == pytest.approx([1.0, -1.0, 0.0, 0.0])
    adv_u = rapo.group_advantages([1.0, 0.0, 0.1, 0.1], 2, std="unbiased", eps=0.0)
    assert adv_u[0] == pytest.approx(0.5 / math.sqrt(0.5))
    assert rapo.group_advantages([1.0, 0.0], 2, std="none") == pytest.approx([0.5, -0.5])


def test_all_success_and_all_fail_groups_have_zero_advantage():
    assert rapo.group_advantages([1.0] * 5 + [0.1] * 5, 5) == [0.0] * 10
    assert rapo.group_spread([1.0] * 5 + [0.1] * 5, 5) == [False, False]
    with pytest.raises(ValueError):
        rapo.group_advantages([1.0, 0.0, 1.0], 2)


def test_scale_factor_worked_examples():
    assert rapo.advantage_scale_factor(32, 8) == 4.0
    assert rapo.advantage_scale_factor(32, 2, cap=8.0) == 8.0  # 16 capped
    assert rapo.advantage_scale_factor(32, 2, cap=None) == 16.0
    assert rapo.advantage_scale_factor(4, 0) == 1.0  # nothing informative: no scaling
    assert rapo.advantage_scale_factor(0, 0) == 1.0
    rewards = [1.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # 1 good group of 4
    adv = rapo.group_advantages(rewards, 2, eps=0.0)
    scaled, f = rapo.scale_advantages(adv, rewards, 2, cap=8.0)
    assert f == 4.0 and scaled == pytest.approx([4.0, -4.0, 0, 0, 0, 0, 0, 0])


def test_pruning_eq5():
    stats = {"all": [True] * 5, "four": [True] * 4 + [False], "none": [False] * 5, "empty": []}
    assert rapo.prompts_to_prune(stats) == {"all"}  # with G=5 only 5/5 reaches 0.9
    assert rapo.prompts_to_prune({"nine": [True] * 9 + [False]}) == {"nine"}  # 0.9 inclusive
    assert rapo.solve_rate([]) == 0.0


def test_replay_plan_all_fail_with_buffer_only():
    buf = rapo.ReplayBuffer()
    pids = ["a", "a", "b", "b", "c", "c"]
    rewards = [0.1, 0.0, 1.0, 0.1, 0.0, 0.0]
    succ = [False, False, True, False, False, False]
    assert rapo.plan_replay(rewards, succ, 2, pids, buf, random.Random(0)) == {}  # empty buffer: nothing
    buf.offer("a", 1.0, {"t": "a*"})
    buf.offer("b", 0.4, {"t": "low"})  # not a success (≤ 0.5): not stored
    assert "b" not in buf and len(buf) == 1
    plan = rapo.plan_replay(rewards, succ, 2, pids, buf, random.Random(0))
    assert list(plan.values()) == ["a"] and next(iter(plan)) in (0, 1)
    # all-success groups and mixed groups never get a replay
    assert rapo.plan_replay([1.0, 1.0], [True, True], 2, ["a", "a"], buf, random.Random(0)) == {}
    with pytest.raises(ValueError):
        rapo.plan_replay([0, 0], [False, False], 2, ["a", "b"], buf, random.Random(0))


def test_replay_buffer_overwrites_and_serialises():
    buf = rapo.ReplayBuffer()
    buf.offer("a", 0.9, {"v": 1})
    buf.offer("a", 0.6, {"v": 2})
    assert buf.get("a") == {"v": 2} and buf.updates == 2
    again = rapo.ReplayBuffer.from_state(buf.state_dict())
    assert again.get("a") == {"v": 2} and again.updates == 2


def test_curriculum_prunes_at_epoch_end_and_is_resumable():
    cur = rapo.Curriculum([f"p{i}" for i in range(5)], prompts_per_batch=2, seed=1)
    seen = []
    for _ in range(3):  # epoch 0: 2 + 2 + (1 + 1 filled from the start of the order)
        b = cur.next_batch()
        seen += b
        for p in b:
            cur.record(p, [p in ("p0", "p1")] * 2)
    assert set(seen) == {f"p{i}" for i in range(5)} and cur.epoch == 0
    snap = cur.state_dict()
    nxt = cur.next_batch()  # ends epoch 0: p0, p1 solved → pruned
    assert cur.epoch == 1 and sorted(cur.pruned) == ["p0", "p1"] and not set(nxt) & {"p0", "p1"}
    restored = rapo.Curriculum.from_state(snap)
    assert restored.next_batch() == nxt  # same next batch after a restore
    assert cur.history[-1]["pruned_now"] == 2


def test_curriculum_without_pruning_and_exhaustion():
    cur = rapo.Curriculum(["a", "b"], 2, prune=False)
    for p in cur.next_batch():
        cur.record(p, [True, True])
    cur.next_batch()
    assert cur.pruned == [] and not cur.exhausted
    cur2 = rapo.Curriculum(["a", "b"], 2)
    for p in cur2.next_batch():
        cur2.record(p, [True, True])
    cur2.next_batch()
    assert cur2.exhausted and cur2.active == ["a", "b"]  # everything solved: stop, keep serving this step


def test_a_run_that_ends_with_its_epoch_closes_it():
    """One batch of two prompts is a whole epoch: when training stops there, `finish` applies Eq. 5 to it (a run's
    last epoch is otherwise never closed: epochs close lazily, at the next batch); a half-used epoch stays open."""
    cur = rapo.Curriculum(["a", "b"], 2, seed=0)
    solved = {"a": [True] * 4, "b": [False, True, False, False]}
    for p in cur.next_batch():
        cur.record(p, solved[p])
    assert cur.epoch == 0 and cur.history == []
    cur.finish()
    assert cur.epoch == 1 and cur.pruned == ["a"]
    assert cur.history == [{"epoch": 0, "seen": 2, "pruned_now": 1, "pruned_total": 1, "active": 1}]
    cur.finish()  # idempotent: the new epoch has not started
    assert cur.epoch == 1
    half = rapo.Curriculum(["a", "b", "c", "d"], 2, seed=0)
    half.next_batch()
    half.finish()
    assert half.epoch == 0 and half.history == []
