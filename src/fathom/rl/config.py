"""Configuration of RAPO training: :class:`RAPOConfig` (TRL's ``GRPOConfig`` plus the RAPO switches, the reward
and the rollout horizon; field help strings are the documentation) and the presets.

Presets are YAML files beside the trainer (``presets/rapo-<name>.yaml``; :func:`rapo_config` also takes a path):

* ``gpu`` — the paper's settings (method.md §4), one node of 8 GPUs.
* ``cpu`` — the embedded model on 2 CPU cores, sized so that every RAPO part acts and the (warm-started) policy
  learns: 2 groups per step, G = 4, an epoch end every few steps.
* ``cpu-smoke`` — plumbing only (tests): 2 prompts × G = 2, 2 steps, tiny token limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
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
    step_correct_floor: float = field(default=0.5, metadata={
        "help": "Eq. 8: minimum answer credit of a correct rollout, max(1 − ρ, floor)."})
    step_similarity: float = field(default=0.6, metadata={
        "help": "Heuristic labeller: token-set Jaccard at or above which two queries (or goals) are the same."})
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

    freeze_layers: int = field(default=0, metadata={
        "help": "Freeze the token embeddings and this many bottom decoder layers (CPU presets: backward stops "
                "above them; 0 = train everything, the paper)."})

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
                                B_v=self.step_verify_budget, format_weight=self.format_weight,
                                correct_floor=self.step_correct_floor, similarity=self.step_similarity)

    @property
    def rapo_enabled(self) -> bool:
        return self.rapo_prune or self.rapo_scale_advantages or self.rapo_replay


PRESETS_DIR = Path(__file__).parent / "presets"


def load_preset_file(path: str | Path) -> dict[str, Any]:
    """RAPOConfig fields from a YAML file; unknown keys are an error that names them."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a RAPO preset is a mapping of RAPOConfig fields")
    known = {f.name for f in fields(RAPOConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown RAPOConfig field(s) {unknown}")
    return data


#: The presets shipped beside the trainer, by name (``presets/rapo-<name>.yaml``).
PRESETS: dict[str, dict[str, Any]] = {p.stem.removeprefix("rapo-"): load_preset_file(p)
                                      for p in sorted(PRESETS_DIR.glob("rapo-*.yaml"))}


def resolve_preset(preset: str | Path) -> dict[str, Any]:
    """A preset name (``gpu``, ``cpu``, ``cpu-smoke``) or a path to a YAML file of RAPOConfig fields."""
    if str(preset) in PRESETS:
        return dict(PRESETS[str(preset)])
    path = Path(preset)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return load_preset_file(path)
    raise ValueError(f"unknown preset {str(preset)!r}; choose one of {sorted(PRESETS)} or pass a YAML file")


#: settings every preset shares (the trainer reads its own rows; TRL must not drop columns)
COMMON: dict[str, Any] = dict(remove_unused_columns=False, shuffle_dataset=False, log_completions=False,
                              save_only_model=False, disable_tqdm=True)


def rapo_config(preset: str | Path, output_dir: str, **overrides: Any) -> RAPOConfig:
    """A :class:`RAPOConfig` from a preset (name or YAML file) plus overrides (e.g. ``reward_mode="step"``)."""
    kwargs = {**COMMON, **resolve_preset(preset), **overrides}
    return RAPOConfig(output_dir=output_dir, **kwargs)


#: Fields that may differ between a run and its resume (where things are written, not what is trained).
RESUME_FREE = {"output_dir", "logging_dir", "tools_url", "plots", "report_to", "disable_tqdm", "run_name"}


def config_fingerprint(args: RAPOConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues (JSON-comparable)."""
    out = {}
    for f in fields(RAPOConfig):
        if f.name in RESUME_FREE or f.name.startswith("_"):
            continue
        v = getattr(args, f.name, None)
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[f.name] = v
    return out


def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, current)} for every setting that changed."""
    keys = set(saved) | set(current)
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}
