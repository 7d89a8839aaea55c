"""Replay under TRL's vLLM importance-sampling correction (on in the GPU preset): a replayed success reaches the loss
with a non-zero weight. The sampler is a fake logprob source (it scores its tokens with the current policy, as vLLM
would up to kernel noise); the replayed rollout carries stale logprobs — here none at all, which the old code sent as
zeros. Without the fix its sequence-level ratio is exp(Σ(current − 0)) ≈ 0 and the row contributes no gradient."""

import pytest
import torch
from rapo_testkit import make_trainer, template_file, tiny_model_dir

from fathom.rl.rewards import AnswerJudge
from fathom.rl.rollout import Rollout
from fathom.rl.step_reward import tally

ANSWER = " It is {}. </think> \\boxed{{{}}}"


class NeverRight(AnswerJudge):
    async def judge_many(self, items):
        return [False for _ in list(items)]


def _policy_logprobs(model, context: list[int], row: list[int]) -> list[float]:
    with torch.no_grad():
        ids = torch.tensor([context + row])
        logits = model(input_ids=ids).logits[0, len(context) - 1:-1].float()
        return torch.log_softmax(logits, -1).gather(-1, torch.tensor(row)[:, None])[:, 0].tolist()


def _fake_sampler(trainer, tok):
    """A turn generator that answers and reports logprobs of its tokens under the current policy (vLLM-like)."""

    def gen(contexts, max_new):
        rows, lps = [], []
        for c, m in zip(contexts, max_new):
            row = (tok(ANSWER.format("7", "7"), add_special_tokens=False).input_ids + [tok.eos_token_id])[:m]
            rows.append(row)
            lps.append(_policy_logprobs(trainer.model, c, row))
        return rows, lps

    return gen


@pytest.fixture()
def trainer_on_vllm_path(tmp_path, embedded_model_dir):
    model_dir = tiny_model_dir(tmp_path, embedded_model_dir)
    trainer, engine = make_trainer(model_dir, tmp_path / "o", template_file(tmp_path), judge=NeverRight(None),
                                   rapo_prune=False, rapo_scale_advantages=False, rapo_replay=True,
                                   vllm_importance_sampling_correction=True,
                                   vllm_importance_sampling_mode="sequence_mask")
    tok = trainer.processing_class
    # TRL's vLLM branch of the IS correction, without a vLLM engine: the rollouts come from the fake sampler
    trainer.use_vllm = True
    trainer._last_loaded_step = trainer.state.global_step  # no weight sync to do
    gen = _fake_sampler(trainer, tok)

    def rollout_func(prompts, tr):
        rollouts = engine.generate([p if isinstance(p, str) else p[-1]["content"] for p in prompts], tok, gen)
        return {"prompt_ids": [r.prompt_ids for r in rollouts], "completion_ids": [r.completion_ids for r in rollouts],
                "logprobs": [r.logprobs for r in rollouts], "env_mask": [r.env_mask for r in rollouts],
                "rollouts": rollouts}

    trainer.rollout_func = rollout_func
    # every prompt has a buffered success from an earlier step, stored without sampling logprobs
    for pid, row in trainer.rows_by_id.items():
        ids = tok(ANSWER.format(row["answer"], row["answer"]), add_special_tokens=False).input_ids + [tok.eos_token_id]
        [old] = engine.generate([row["prompt"]], tok, lambda c, m, ids=ids: ([ids[:m[0]]], None))
        assert old.logprobs is None
        score = {"format": 1.0, "answer": 1.0, "correct": True, "reward": 1.0, "tally": tally([]).as_dict(),
                 "policy_tokens": sum(old.env_mask), "tool_calls": 0, "status": "answered"}
        trainer.replay.offer(pid, 1.0, {**old.to_entry(), "score": score})
    yield trainer
    engine.close()


def _replayed_row_gradient(trainer) -> tuple[float, float]:
    """(IS ratio of the replayed row, gradient norm of the loss when only that row has an advantage)."""
    trainer.model.train()
    out = trainer._generate_and_score_completions([{"prompt": "ignored", "id": "x"}] * 4)
    replayed = [i for i, s in enumerate(trainer._rapo_local["scores"]) if s.get("replayed")]
    assert replayed, "every group failed and every prompt has a buffered success: replay must act"
    idx = replayed[0]
    assert out["advantages"][idx] > 0  # the success among failures
    ratio = float(out["importance_sampling_ratio"][idx].reshape(-1)[0])
    trainer._test_ratios = out["importance_sampling_ratio"].reshape(-1).tolist()
    only = torch.zeros_like(out["advantages"])
    only[idx] = out["advantages"][idx]
    out["advantages"] = only
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this test bypasses
    trainer.compute_loss(trainer.model, out).backward()
    grad = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in trainer.model.parameters() if p.grad is not None))
    return ratio, float(grad)


def test_replayed_success_reaches_the_loss(trainer_on_vllm_path):
    ratio, grad = _replayed_row_gradient(trainer_on_vllm_path)
    assert ratio == pytest.approx(1.0)
    assert grad > 1e-3
    fresh = [i for i, s in enumerate(trainer_on_vllm_path._rapo_local["scores"]) if not s.get("replayed")]
    assert fresh  # the fake sampler's own rows keep their (≈ 1) ratios: the correction is still on for them
    for i in fresh:
        assert trainer_on_vllm_path._test_ratios[i] == pytest.approx(1.0, rel=1e-3)
    print(f"replayed ratio {ratio:.6f}, gradient norm {grad:.4g}")


def test_without_the_fix_the_replayed_row_gets_no_gradient(trainer_on_vllm_path):
    """The old behaviour (stored logprobs, zeros when missing) as the control."""
    tr = trainer_on_vllm_path
    tr._replay_sampling_logprobs = lambda r: r.logprobs or [0.0] * len(r.completion_ids)
    ratio, grad = _replayed_row_gradient(tr)
    print(f"old behaviour: replayed ratio {ratio:.3g}, gradient norm {grad:.3g}")
    assert ratio < 1e-6 and grad < 1e-6


def test_replay_entries_round_trip_logprobs():
    r = Rollout([1, 2], [3, 4], [1, 1], trajectory=None, logprobs=[-0.5, -0.25])  # type: ignore[arg-type]
    assert r.logprobs == [-0.5, -0.25]


def test_trl_still_treats_unscored_tokens_as_ratio_one():
    """The fix relies on TRL 1.16 mapping a None sampling logprob to NaN and a NaN difference to 0."""
    import inspect

    from trl import GRPOTrainer

    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert 'float("nan") if x is None else x' in src
    assert "torch.nan_to_num(per_token_logps_diff, nan=0.0)" in src
