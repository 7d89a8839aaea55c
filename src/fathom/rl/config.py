"""Configuration of RAPO training: :class:`RAPOConfig` (TRL's ``GRPOConfig`` plus the RAPO switches, the reward
and the rollout horizon; field help strings are the documentation) and the presets.

Presets (:func:`rapo_config`):

* ``gpu`` — the paper's settings (method.md §4): constant LR 1e-6, Adam β = (0.9, 0.95), 32 prompts per step ×
  G = 5 rollouts, mini-batch 16 prompts (two optimizer updates per generation batch), ≤ 32 tool steps, 8,192 tokens
  per step, 40,960 total, temperature 1.4, top-p 1.0, vLLM rollouts, bf16, gradient checkpointing, KL 0.001 and
  clip 0.2 (ReCall defaults, [INF]). Written for one node of 8 GPUs (per-device batch 10).
* ``cpu-smoke`` — the embedded model on CPU (``use_cpu=True``, fp32): 2 prompts × G = 2, 2 steps, 1–2 tool steps,
  tiny token limits. Finishes in a few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from fathom.rl.rollout import RolloutConfig
from fathom.rl.step_reward import StepRewardConfig


@dataclass
class RAPOConfig(GRPOConfig):
    """GRPOConfig + RAPO. With ``rapo_prune = rapo_scale_advantages = rapo_replay = False`` the trainer is plain
    GRPO (same data order, rollouts, rewards and Eq. 3 advantages)."""

    # RAPO switches ----------------------------------------------------------------------------------------------
    rapo_prune: bool = field(default=True, metadata={"help": "Eq. 5: at each epoch end drop prompts whose solve "
                                                             "rate (answer correct) is ≥ prune_threshold."})
    prune_threshold: float = field(default=0.9, metadata={"help": "Solve-rate threshold of Eq. 5."})
    rapo_scale_advantages: bool = field(default=True, metadata={
        "help": "Eq. 6: multiply advantages by #groups / #groups with non-zero reward spread."})
    advantage_scale_cap: float = field(default=8.0, metadata={"help": "Upper bound of the Eq. 6 factor."})
    rapo_replay: bool = field(default=True, metadata={
        "help": "Replay buffer: an all-failed group gets one random rollout replaced by the prompt's latest "
                "successful trajectory (tokens and env mask), before advantages are computed."})
    replay_threshold: float = field(default=0.5, metadata={"help": "A trajectory enters the buffer when its "
                                                                   "reward is above this."})
    advantage_std: str = field(default="population", metadata={
        "help": "Eq. 3 normaliser: 'population' (1/G, as written), 'unbiased' (ReCall/verl torch.std) or 'none'."})
    advantage_eps: float = field(default=1e-6, metadata={"help": "ε added to σ_R in Eq. 3."})
    rapo_seed: int = field(default=0, metadata={"help": "Seed of the prompt schedule and the replay draws."})
    rapo_epochs: float = field(default=10.0, metadata={
        "help": "RAPO epochs over the prompt set (10 in stage 1, 2 in stage 2); sets max_steps when it is -1."})

    # reward -----------------------------------------------------------------------------------------------------
    reward_mode: str = field(default="vanilla", metadata={
        "help": "'vanilla' = Eq. 4 (0.1·format + 0.9·answer, stage 1); 'step' = Eq. 8 (stage 2)."})
    format_weight: float = field(default=0.1, metadata={"help": "α of Eq. 4 / weight of R_format in Eq. 8."})
    step_c1: float = field(default=0.2, metadata={"help": "Eq. 8 c1 (search novelty weight)."})
    step_c2: float = field(default=0.2, metadata={"help": "Eq. 8 c2 (query novelty weight)."})
    step_cap_search: float = field(default=8.0, metadata={"help": "Eq. 8 C_S."})
    step_cap_query: float = field(default=16.0, metadata={"help": "Eq. 8 C_Q."})
    step_verify_budget: int = field(default=1, metadata={"help": "Eq. 8 B_v (verifications per claim)."})
    judge: str = field(default="exact", metadata={
        "help": "Answer judge role ('exact' = normalised exact match offline, or a role like URL#model@KEY_ENV)."})
    labeller: str = field(default="heuristic", metadata={
        "help": "Step labeller role ('heuristic' = deterministic offline labeller, or an LLM role)."})

    # rollouts ---------------------------------------------------------------------------------------------------
    tools_url: str | None = field(default=None, metadata={
        "help": "Base URL of the tool server; None = start the offline stack (smoke runs)."})
    tool_preset: str = field(default="fathom", metadata={"help": "Tool preset: 'fathom' or 'legacy'."})
    prompt_template: str = field(default="fathom", metadata={"help": "System prompt template: 'fathom' or a path."})
    max_tool_steps: int = field(default=32, metadata={"help": "Maximum tool rounds per rollout."})
    max_tokens_per_turn: int = field(default=8192, metadata={"help": "Maximum generated tokens per turn."})
    max_total_tokens: int = field(default=40960, metadata={"help": "Budget of a whole transcript in tokens."})
    tool_timeout_s: float = field(default=120.0, metadata={"help": "Timeout of one tool call."})
    max_tool_result_chars: int | None = field(default=None, metadata={
        "help": "Truncate tool results to this many characters (None = keep)."})

    # outputs ----------------------------------------------------------------------------------------------------
    plots: bool = field(default=True, metadata={"help": "Write PNG training curves at the end."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_mode not in ("vanilla", "step"):
            raise ValueError(f"reward_mode must be 'vanilla' or 'step', got {self.reward_mode!r}")
        if self.advantage_std not in ("population", "unbiased", "none"):
            raise ValueError(f"advantage_std must be population|unbiased|none, got {self.advantage_std!r}")
        local = self.per_device_train_batch_size * self.steps_per_generation
        if local % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size × steps_per_generation ({local}) must be a multiple of num_generations "
                f"({self.num_generations}) so that every group lives on one process (replay and per-group rewards)")
        if self.num_iterations != 1:
            raise ValueError("RAPO reuses no generation batch: num_iterations must be 1")

    # derived ----------------------------------------------------------------------------------------------------
    def rollout_config(self) -> RolloutConfig:
        return RolloutConfig(max_tool_steps=self.max_tool_steps, max_tokens_per_turn=self.max_tokens_per_turn,
                             max_total_tokens=self.max_total_tokens, temperature=self.temperature,
                             top_p=self.top_p, repetition_penalty=(self.repetition_penalty
                                                                   if self.repetition_penalty != 1.0 else None),
                             preset=self.tool_preset, template=self.prompt_template,
                             tool_timeout_s=self.tool_timeout_s, max_tool_result_chars=self.max_tool_result_chars)

    def step_reward_config(self) -> StepRewardConfig:
        return StepRewardConfig(c1=self.step_c1, c2=self.step_c2, C_S=self.step_cap_search, C_Q=self.step_cap_query,
                                B_v=self.step_verify_budget, format_weight=self.format_weight)

    @property
    def rapo_enabled(self) -> bool:
        return self.rapo_prune or self.rapo_scale_advantages or self.rapo_replay


PRESETS: dict[str, dict[str, Any]] = {
    "gpu": dict(
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.95,
        weight_decay=0.01, max_grad_norm=1.0,
        # 32 prompts × G=5 = 160 rollouts per generation batch on 8 GPUs; mini-batch 16 prompts = 80 rollouts →
        # per-device batch 10, two optimizer updates per generation batch.
        num_generations=5, per_device_train_batch_size=10, gradient_accumulation_steps=1, steps_per_generation=2,
        temperature=1.4, top_p=1.0, max_tool_steps=32, max_tokens_per_turn=8192, max_total_tokens=40960,
        max_completion_length=8192, beta=0.001, epsilon=0.2, loss_type="dapo", num_iterations=1,
        use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.4,
        bf16=True, gradient_checkpointing=True, rapo_epochs=10.0,
        logging_steps=1, save_steps=10, save_total_limit=3, report_to=["tensorboard"],
    ),
    "cpu-smoke": dict(
        learning_rate=1e-6, lr_scheduler_type="constant", adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0,
        num_generations=2, per_device_train_batch_size=2, gradient_accumulation_steps=1, steps_per_generation=1,
        temperature=1.0, top_p=1.0, max_tool_steps=1, max_tokens_per_turn=24, max_total_tokens=1024,
        max_completion_length=64, max_tool_result_chars=200, beta=0.0, epsilon=0.2, loss_type="dapo",
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, max_steps=2, rapo_epochs=1.0,
        logging_steps=1, save_steps=2, save_total_limit=1, report_to=["tensorboard"], dataloader_num_workers=0,
    ),
}

#: settings every preset shares (the trainer reads its own rows; TRL must not drop columns)
COMMON: dict[str, Any] = dict(remove_unused_columns=False, shuffle_dataset=False, log_completions=False,
                              save_only_model=False, disable_tqdm=True)


def rapo_config(preset: str, output_dir: str, **overrides: Any) -> RAPOConfig:
    """A :class:`RAPOConfig` from a preset plus overrides (e.g. ``reward_mode="step"`` for stage 2)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    kwargs = {**COMMON, **PRESETS[preset], **overrides}
    return RAPOConfig(output_dir=output_dir, **kwargs)
