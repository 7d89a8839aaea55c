"""RAPOTrainer: TRL 1.16 ``GRPOTrainer`` + RAPO, with multi-turn Fathom-format tool rollouts.

Where it hooks into TRL (pinned ``trl==1.16.0``; ``tests/train/test_trainer_hook.py`` fails loudly when these
private methods change signature or behaviour):

* ``_generate_and_score_completions(inputs)`` — the per-generation-batch hook. The RAPO schedule
  (:class:`fathom.rl.rapo.Curriculum`: epochs over the active prompts, Eq. 5 pruning at epoch end) decides the
  prompts of the batch here, at generation time, replacing the rows the (prefetching) data loader handed in. After
  TRL has generated and scored, the ``advantages`` it returns are replaced by Eq. 3 on the raw rewards (gathered
  over processes), then scaled by Eq. 6 when enabled.
* ``_generate(prompts)`` — after the ``rollout_func`` (:meth:`fathom.rl.rollout.RolloutEngine.rollout_func`) has
  produced the token-exact rollouts, every rollout is scored here (format, answer judge, step labels, Eq. 4 or
  Eq. 8) and the replay buffer acts: an all-failed group gets one random rollout replaced by the prompt's latest
  success (tokens, env mask and reward) *before* TRL computes anything from the rewards.
* The reward functions given to TRL only read those per-rollout scores (``format``, ``answer``, ``reward`` with
  weights 0, 0, 1), so TRL logs each part and the total while the raw values stay captured for RAPO.
* ``_save_checkpoint`` / ``_load_optimizer_and_scheduler`` — the RAPO state (schedule + pruned set + epoch stats,
  replay buffer) is saved as ``rapo_state.json`` next to TRL's optimizer, scheduler and RNG state and restored on
  resume; replay draws use an RNG seeded by (seed, step, rank), so a resumed run draws the same.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from fathom.rl import rapo
from fathom.rl.config import RAPOConfig
from fathom.rl.rewards import AnswerJudge, format_reward, trajectory_reward
from fathom.rl.rollout import Rollout, RolloutEngine
from fathom.rl.step_reward import (
    QUERY_TOOLS,
    SEARCH_TOOLS,
    CallInfo,
    HeuristicLabeller,
    Label,
    make_labeller,
    step_reward,
    tally,
)

log = logging.getLogger(__name__)

STATE_FILE = "rapo_state.json"
PARSE_ERRORS = {"unclosed_tag", "too_large", "bad_json", "bad_call", "unknown_tool", "missing_argument",
                "unexpected_argument", "bad_argument_type"}


def _reader(key: str, name: str):
    """A TRL reward function that returns the per-rollout score computed in :meth:`RAPOTrainer._generate`."""

    def reward(prompts, completions, **kwargs):
        return [float(v) for v in kwargs[key]]

    reward.__name__ = name
    return reward


def call_infos(rollout: Rollout) -> list[CallInfo]:
    """The labelable calls of a rollout (known tools, parsed; tool-side errors still count as calls)."""
    out = []
    for rec in rollout.trajectory.tool_calls:
        if rec.error in PARSE_ERRORS or rec.name not in SEARCH_TOOLS | QUERY_TOOLS:
            continue
        out.append(CallInfo.from_call(len(out), rec.name, rec.arguments))
    return out


def length_sorted_micro_batches(batch: dict[str, Any], n: int, sort: bool = True) -> list[dict[str, Any]]:
    """Split a generation batch into `n` micro-batches of rows of similar length, each cut to its own longest
    completion (TRL pads every completion to the batch's longest and shuffles the rows: one trajectory that ran to
    its token limit made every row of a CPU step that long).

    Rows are ordered by completion length (the last position of ``completion_mask``), longest first — or, with
    ``sort=False``, shuffled as TRL does — and split into `n` equal groups; per group, every completion-aligned
    tensor (``[rows, completion positions, ...]``: ids, masks, per-token logprobs) drops the columns past the
    group's longest completion — right padding, so no real token moves and the loss is unchanged. Prompt tensors
    (left-padded) are kept whole; lists are reordered with the rows; 0-dim tensors and None pass through. Sort only
    when all `n` micro-batches go into one optimizer step: its gradient is their sum, so the grouping does not
    change it (``loss_type`` dapo normalises by the step's token count)."""
    mask = batch["completion_mask"]
    rows, width = mask.shape
    if rows % n:
        raise ValueError(f"{rows} rows do not split into {n} equal micro-batches")
    positions = torch.arange(1, width + 1, device=mask.device)
    lengths = (mask.ne(0) * positions).amax(dim=1)  # 1 + index of the last completion token (0: none)
    order = torch.argsort(lengths, descending=True, stable=True) if sort else torch.randperm(rows)
    size = rows // n
    out = []
    for g in range(n):
        idx = order[g * size:(g + 1) * size]
        keep = max(int(lengths[idx].max()), 1)
        part: dict[str, Any] = {}
        for key, v in batch.items():
            if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
                part[key] = v
            elif isinstance(v, torch.Tensor):
                v = v[idx]
                if v.ndim >= 2 and v.shape[1] == width and not key.startswith("prompt"):
                    v = v[:, :keep]
                part[key] = v
            else:
                part[key] = [v[int(i)] for i in idx]
        out.append(part)
    return out


class RAPOTrainer(GRPOTrainer):
    """GRPO with RAPO's three switches (``rapo_prune``, ``rapo_scale_advantages``, ``rapo_replay``) and Fathom
    multi-turn rollouts. ``rows`` are ``{id, prompt, answer, ...}`` dicts (unique ids)."""

    def __init__(self, model, args: RAPOConfig, rows: list[dict], engine: RolloutEngine, processing_class=None,
                 *, judge: AnswerJudge | None = None, labeller=None, callbacks=None):
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from datasets import Dataset

        if not rows:
            raise ValueError("RAPOTrainer needs at least one prompt row")
        self.rows_by_id = {str(r["id"]): r for r in rows}
        if len(self.rows_by_id) != len(rows):
            raise ValueError("prompt rows must have unique ids")
        self.engine = engine
        self.judge = judge or AnswerJudge(None)
        self.step_cfg = args.step_reward_config()
        self.labeller = labeller or (make_labeller(args.labeller, self.step_cfg) if args.reward_mode == "step"
                                     else HeuristicLabeller(self.step_cfg))
        self._log_labeller = HeuristicLabeller(self.step_cfg)
        prompts_per_batch = args.generation_batch_size // args.num_generations
        if args.max_steps is None or args.max_steps <= 0:
            args.max_steps = max(1, math.ceil(args.rapo_epochs * len(rows) / prompts_per_batch)
                                 * max(1, args.steps_per_generation // args.gradient_accumulation_steps))
        args.reward_weights = [0.0, 0.0, 1.0]
        self.curriculum = rapo.Curriculum(list(self.rows_by_id), prompts_per_batch, seed=args.rapo_seed,
                                          prune=args.rapo_prune, threshold=args.prune_threshold)
        self.replay = rapo.ReplayBuffer(threshold=args.replay_threshold)
        self._rapo_rows: list[dict] | None = None
        self._rapo_local: dict[str, Any] | None = None
        self.last_batch_pids: list[str] = []
        self._trl_advantages: torch.Tensor | None = None
        dataset = Dataset.from_list([{"prompt": r["prompt"], "id": str(r["id"])} for r in rows])
        super().__init__(model=model, reward_funcs=[_reader("rapo_format", "format"),
                                                    _reader("rapo_answer", "answer"),
                                                    _reader("rapo_reward", "reward")],
                         args=args, train_dataset=dataset, processing_class=processing_class,
                         rollout_func=engine.rollout_func, callbacks=callbacks)
        self.add_callback(_StopWhenExhausted(self))

    # ------------------------------------------------------------------------------------------------------------
    # scoring

    def _score(self, rollouts: list[Rollout], rows: list[dict]) -> list[dict[str, Any]]:
        args: RAPOConfig = self.args  # type: ignore[assignment]
        schemas = self.engine.schemas
        judged = self.engine._loop.run(self.judge.judge_many(
            (r.trajectory.question, r.trajectory.answer, row.get("answer", "")) for r, row in zip(rollouts, rows)))
        labeller = self.labeller if args.reward_mode == "step" else self._log_labeller

        async def label_all():
            import asyncio

            return await asyncio.gather(*(labeller.alabel(r.trajectory.question, call_infos(r)) for r in rollouts))

        labels = self.engine._loop.run(label_all())
        scores = []
        for r, correct, labs in zip(rollouts, judged, labels):
            fmt = format_reward([t.text for t in r.trajectory.turns], schemas)
            t = tally(labs)
            if args.reward_mode == "step":
                total = step_reward(bool(correct), fmt, t, self.step_cfg)
            else:
                total = trajectory_reward(fmt, 1.0 if correct else 0.0, args.format_weight)
            scores.append({"format": fmt, "answer": 1.0 if correct else 0.0, "correct": bool(correct),
                           "reward": total, "tally": t.as_dict(), "policy_tokens": sum(r.env_mask),
                           "tool_calls": len(r.trajectory.tool_calls), "status": r.trajectory.status})
        return scores

    # ------------------------------------------------------------------------------------------------------------
    # TRL hooks

    def _generate(self, prompts: list):
        t0 = time.perf_counter()
        (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images,
         tool_images) = super()._generate(prompts)
        rollout_s = time.perf_counter() - t0
        rollouts: list[Rollout] | None = extra_fields.pop("rollouts", None)
        rows = self._rapo_rows
        if rollouts is None or rows is None or len(rows) != len(rollouts):
            raise RuntimeError("RAPOTrainer needs the rollouts of its rollout_func and the rows of the batch")
        scores = self._score(rollouts, rows)
        args: RAPOConfig = self.args  # type: ignore[assignment]
        G = self.num_generations
        pids = [str(row["id"]) for row in rows]
        replayed: dict[int, str] = {}
        if self.model.training and args.rapo_replay:
            rng = random.Random(f"{args.rapo_seed}:{self.state.global_step}:{self.accelerator.process_index}")
            replayed = rapo.plan_replay([s["reward"] for s in scores], [s["correct"] for s in scores], G, pids,
                                        self.replay, rng)
            for idx, pid in replayed.items():
                entry = self.replay.get(pid)
                r = Rollout.from_entry(entry)
                prompt_ids[idx] = r.prompt_ids
                completion_ids[idx] = r.completion_ids
                if tool_mask is None:
                    tool_mask = [[1] * len(c) for c in completion_ids]
                tool_mask[idx] = r.env_mask
                if logprobs is not None:
                    logprobs[idx] = self._replay_sampling_logprobs(r)
                completions[idx] = self.processing_class.decode(r.completion_ids, skip_special_tokens=True)
                rollouts[idx] = r
                scores[idx] = dict(entry["score"], replayed=True)
            # the buffer is shared by all ranks: every rank applies every rank's new successes
            offers = [(pid, s["reward"], {**rollouts[i].to_entry(), "score": s})
                      for i, (pid, s) in enumerate(zip(pids, scores)) if i not in replayed
                      and s["reward"] > self.replay.threshold]
            if self.accelerator.num_processes > 1:
                from accelerate.utils import gather_object

                offers = gather_object(offers)
                n_replayed = int(sum(gather_object([len(replayed)])))
            else:
                n_replayed = len(replayed)
            for pid, reward, entry in offers:
                self.replay.offer(pid, reward, entry)
            self.replay.insertions += n_replayed
        extra_fields["rapo_format"] = [s["format"] for s in scores]
        extra_fields["rapo_answer"] = [s["answer"] for s in scores]
        extra_fields["rapo_reward"] = [s["reward"] for s in scores]
        self._rapo_local = {"pids": pids, "scores": scores, "replayed": len(replayed), "rollout_s": rollout_s,
                            "tokens": [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]}
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images

    def _replay_sampling_logprobs(self, rollout: Rollout) -> list[float | None]:
        """Sampling logprobs of a replayed rollout for TRL's vLLM importance-sampling correction (on in the GPU
        preset). Its stored logprobs are stale (another policy sampled it, possibly many steps ago) or missing, and
        ``exp(Σ (current − stale))`` lands outside [clip_min, clip_max]: ``sequence_mask`` zeroes the row, the
        truncate modes scale it towards 0, and the success replay exists to anchor gets no gradient. ``None`` per
        token is TRL 1.16's "not scored by the sampler" (it becomes NaN, the per-token difference 0, the ratio
        exactly 1, and the row is left out of the sampling-divergence metrics): the replayed row enters the loss
        like an on-policy one — the paper's replay — while PPO's clipped ratio still uses the current policy's
        logprobs. Pinned by tests/train/test_replay_is.py."""
        return [None] * len(rollout.completion_ids)

    def _prepare_inputs(self, generation_batch):
        """TRL's buffering of a generation batch into ``steps_per_generation`` micro-batches, each cut to its
        longest completion, with rows of similar length together when that leaves the optimizer step unchanged
        (:func:`length_sorted_micro_batches`), instead of a random shuffle of rows all padded to the longest."""
        if not self.model.training:
            return super()._prepare_inputs(generation_batch)
        spg = self.args.steps_per_generation
        if self._step % (spg * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            # sorted only when the micro-batches all accumulate into one optimizer step (else each step would
            # always get the longest or the shortest rows): shuffled as TRL does, then cut
            same_step = self.args.gradient_accumulation_steps % spg == 0
            self._buffered_inputs = length_sorted_micro_batches(batch, spg, sort=same_step)
        return self._buffered_inputs[self._step % spg]

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        G = self.num_generations
        if training:
            batch = self.curriculum.next_batch()
            n_local = len(inputs) // G
            rank = self.accelerator.process_index
            local = batch[rank * n_local:(rank + 1) * n_local]
            inputs = [{**self.rows_by_id[pid], "id": pid} for pid in local for _ in range(G)]
            self.last_batch_pids = batch
        self._rapo_rows = inputs
        out = super()._generate_and_score_completions(inputs)
        if not training:
            return out
        args: RAPOConfig = self.args  # type: ignore[assignment]
        local_state = self._rapo_local or {}
        scores = local_state["scores"]
        local_rows = [(pid, s["reward"], s["correct"]) for pid, s in zip(local_state["pids"], scores)]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            rows = gather_object(local_rows)
        else:
            rows = local_rows
        rewards = [r for _, r, _ in rows]
        self._trl_advantages = out["advantages"].detach().clone()
        adv = rapo.group_advantages(rewards, G, std=args.advantage_std, eps=args.advantage_eps)  # type: ignore[arg-type]
        factor = 1.0
        if args.rapo_scale_advantages:
            adv, factor = rapo.scale_advantages(adv, rewards, G, args.advantage_scale_cap)
        start = self.accelerator.process_index * len(inputs)
        out["advantages"] = torch.tensor(adv[start:start + len(inputs)], dtype=torch.float32,
                                         device=out["advantages"].device)
        for g in range(0, len(rows), G):
            self.curriculum.record(rows[g][0], [c for _, _, c in rows[g:g + G]])
        self._log_rapo(scores, rewards, factor, local_state["replayed"])
        # where a step's time goes: rollouts (generation + tools) here, the rest of `step_time` is the update
        m = self._metrics["train"]
        m["time/rollout_s"].append(local_state["rollout_s"])
        m["rapo/trajectory_tokens"].append(sum(local_state["tokens"]) / max(len(local_state["tokens"]), 1))
        return out

    def _log_rapo(self, scores: list[dict], global_rewards: list[float], factor: float, n_replayed: int) -> None:
        m = self._metrics["train"]
        G = self.num_generations
        spread = rapo.group_spread(global_rewards, G)
        n = max(len(scores), 1)
        m["rapo/solve_rate"].append(sum(s["correct"] for s in scores) / n)
        m["rapo/zero_spread_frac"].append(1.0 - sum(spread) / max(len(spread), 1))
        m["rapo/adv_scale"].append(factor)
        m["rapo/replay_insertions"].append(float(n_replayed))
        m["rapo/replay_total"].append(float(self.replay.insertions))
        m["rapo/replay_buffer"].append(float(len(self.replay)))
        m["rapo/pruned"].append(float(len(self.curriculum.pruned)))
        m["rapo/active_prompts"].append(float(len(self.curriculum.active)))
        m["rapo/epoch"].append(float(self.curriculum.epoch))
        m["rapo/response_tokens"].append(sum(s["policy_tokens"] for s in scores) / n)
        m["rapo/format_ok"].append(sum(s["format"] for s in scores) / n)
        m["rapo/answered"].append(sum(s["status"] == "answered" for s in scores) / n)
        m["tools/calls_per_traj"].append(sum(s["tool_calls"] for s in scores) / n)
        m["tools/rho"].append(sum(s["tally"]["rho"] for s in scores) / n)
        for lab in Label:
            m[f"tools/{lab.value}"].append(sum(s["tally"][lab.value] for s in scores) / n)

    # ------------------------------------------------------------------------------------------------------------
    # state that survives a crash

    def rapo_state(self) -> dict[str, Any]:
        return {"version": 1, "curriculum": self.curriculum.state_dict(), "replay": self.replay.state_dict(),
                "last_batch_pids": self.last_batch_pids}

    def load_rapo_state(self, state: dict[str, Any]) -> None:
        self.curriculum = rapo.Curriculum.from_state(state["curriculum"])
        self.replay = rapo.ReplayBuffer.from_state(state["replay"])
        self.last_batch_pids = list(state.get("last_batch_pids", []))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            tmp = folder / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.rapo_state()))
            tmp.replace(folder / STATE_FILE)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            path = Path(checkpoint) / STATE_FILE
            if not path.exists():
                raise FileNotFoundError(f"{checkpoint} has no {STATE_FILE}: it was not written by RAPOTrainer")
            self.load_rapo_state(json.loads(path.read_text()))
            log.info("restored RAPO state from %s (epoch %d, %d pruned, %d buffered)", path, self.curriculum.epoch,
                     len(self.curriculum.pruned), len(self.replay))


class _StopWhenExhausted(TrainerCallback):
    """Stops training after the step in which pruning removed every prompt."""

    def __init__(self, trainer: RAPOTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.curriculum.exhausted:
            log.info("every prompt is solved (Eq. 5 pruned all): stopping")
            control.should_training_stop = True
        return control
