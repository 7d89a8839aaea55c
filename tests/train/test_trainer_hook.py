"""Pins the TRL 1.16 private hooks RAPOTrainer extends. If TRL changes them, these fail loudly: re-read
trl/trainer/grpo_trainer.py and adapt fathom/rl/trainer.py before bumping the pin."""

import inspect

import pytest
import torch
import trl
from rapo_testkit import make_trainer, template_file, tiny_model_dir
from trl import GRPOTrainer

from fathom.rl import rapo
from fathom.rl.rewards import AnswerJudge


def test_trl_version_and_private_signatures():
    assert trl.__version__ == "1.16.0", "RAPOTrainer is written against TRL 1.16.0 private hooks"
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._generate).parameters) == ["self", "prompts"]
    assert list(inspect.signature(GRPOTrainer._save_checkpoint).parameters) == ["self", "model", "trial"]
    assert list(inspect.signature(GRPOTrainer._load_optimizer_and_scheduler).parameters) == ["self", "checkpoint"]
    src = inspect.getsource(GRPOTrainer._generate)
    assert "self.rollout_func(prompts, self)" in src and 'extra_fields.pop("env_mask", None)' in src
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert '"advantages": advantages' in src and "= self._generate(prompts)" in src


class AlternatingJudge(AnswerJudge):
    """Correct on every other rollout, so groups have reward spread."""

    async def judge_many(self, items):
        return [i % 2 == 0 for i, _ in enumerate(list(items))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedded_model_dir):
    root = tmp_path_factory.mktemp("tiny")
    return tiny_model_dir(root, embedded_model_dir), template_file(root)


def test_hook_behaviour_matches_trl_when_rapo_is_off(tiny, tmp_path):
    """Plain GRPO (all switches off) with TRL's normaliser reproduces TRL's own advantages; the rollout_func gets
    one prompt per rollout; env_mask arrives as tool_mask."""
    model_dir, template = tiny
    trainer, engine = make_trainer(model_dir, tmp_path / "o", template, judge=AlternatingJudge(None),
                                   rapo_prune=False, rapo_scale_advantages=False, rapo_replay=False,
                                   advantage_std="unbiased", advantage_eps=1e-4)
    seen = {}
    inner = trainer.rollout_func

    def spy(prompts, tr):
        seen["n"] = len(prompts)
        out = inner(prompts, tr)
        seen["env_mask"] = out["env_mask"]
        return out

    trainer.rollout_func = spy
    try:
        trainer.model.train()
        out = trainer._generate_and_score_completions([{"prompt": "ignored", "id": "x"}] * 4)
    finally:
        engine.close()
    assert seen["n"] == 4  # prompts arrive repeated: one entry per rollout
    assert set(out) >= {"prompt_ids", "completion_ids", "completion_mask", "advantages", "tool_mask"}
    for row, mask in zip(out["tool_mask"].tolist(), seen["env_mask"]):
        assert row[:len(mask)] == mask
    assert out["advantages"].shape == (4,)
    assert torch.allclose(out["advantages"], trainer._trl_advantages, atol=1e-5)
    assert out["advantages"].abs().sum() > 0
    rewards = [0.9, 0.0, 0.9, 0.0]  # alternating judge, no format → 0.9·answer
    assert out["advantages"].tolist() == pytest.approx(rapo.group_advantages(rewards, 2, std="unbiased", eps=1e-4),
                                                       abs=1e-5)


def test_replay_inserts_buffered_tokens_and_mask_before_advantages(tiny, tmp_path):
    """An all-failed group whose prompt has a buffered success gets one rollout replaced (tokens + env mask),
    which restores reward spread; Eq. 6 then scales by #groups / #good."""
    from fathom.agent.trajectory import Trajectory
    from fathom.rl.rollout import Rollout

    model_dir, template = tiny
    trainer, engine = make_trainer(model_dir, tmp_path / "o", template)
    try:
        trainer.model.train()
        pids = trainer.curriculum.order[:2]
        star = Rollout([1, 2, 3], [5, 6, 7, 8, 2], [1, 0, 0, 1, 1], Trajectory(question="q", prompt="p"))
        trainer.replay.offer(pids[0], 1.0, {**star.to_entry(), "score": {
            "format": 1.0, "answer": 1.0, "correct": True, "reward": 1.0, "tally": {
                "UniqueSearch": 0, "RedundantSearch": 0, "Exploration": 0, "Verification": 0, "RedundantQuery": 0,
                "T": 0, "rho": 0.0}, "policy_tokens": 3, "tool_calls": 0, "status": "answered"}})
        out = trainer._generate_and_score_completions([{"prompt": "x", "id": "x"}] * 4)
    finally:
        engine.close()
    assert trainer.last_batch_pids == pids
    rows = out["completion_ids"].tolist()
    hit = [i for i, r in enumerate(rows) if r[:5] == [5, 6, 7, 8, 2]]
    assert len(hit) == 1
    i = hit[0]
    assert out["tool_mask"][i, :5].tolist() == [1, 0, 0, 1, 1]
    assert out["prompt_ids"][i, -3:].tolist() == [1, 2, 3]
    assert trainer.replay.insertions == 1
    adv = out["advantages"].tolist()
    # group 0: [1.0, 0.0] → ±1 (population std, ε 1e-6) × 2 groups / 1 good group = ±2; group 1 zero
    # (the replayed row is within the local batch; TRL shuffles only after this hook)
    assert sorted(round(a, 3) for a in adv) == [-2.0, 0.0, 0.0, 2.0]
    assert trainer._metrics["train"]["rapo/adv_scale"][-1] == 2.0
