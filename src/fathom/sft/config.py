"""Configuration of synthesizer SFT (method.md §5.4) and its presets.

* ``gpu`` — the paper: 5 epochs, cosine LR with peak 5e-5, Adam (0.9, 0.95), gradient accumulation 8, bf16,
  65,536-token context through YaRN factor 2, packing, gradient checkpointing.
* ``cpu`` — the embedded model on 2 CPU cores: 4 steps of one row up to 4,096 tokens (a world-teacher row is ~7,500;
  ``fit_rows`` shortens its trace, never its report).
* ``embedded`` — the embedded synthesizer (``fathom models --prepare-synthesizer``): 24 steps of one row up to
  3,072 tokens at a peak LR of 1e-4, on the short world briefs of :func:`fathom.llm.embedded.synth_recipe`.
* ``cpu-smoke`` — the embedded model on CPU in fp32: a couple of steps on a tiny set (3,584 tokens: the system
  turn and a world-teacher report, ~3,000 tokens, must fit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

PRESETS: dict[str, dict[str, Any]] = {
    "gpu": dict(num_train_epochs=5, learning_rate=5e-5, lr_scheduler_type="cosine", warmup_ratio=0.03,
                adam_beta1=0.9, adam_beta2=0.95, gradient_accumulation_steps=8, per_device_train_batch_size=1,
                bf16=True, max_length=65536, packing=True, gradient_checkpointing=True, save_steps=100,
                save_total_limit=3, logging_steps=1),
    "cpu": dict(max_steps=4, learning_rate=5e-5, lr_scheduler_type="cosine", adam_beta1=0.9, adam_beta2=0.95,
                gradient_accumulation_steps=1, per_device_train_batch_size=1, use_cpu=True, bf16=False,
                max_length=4096, packing=False, gradient_checkpointing=False, save_steps=2, save_total_limit=1,
                logging_steps=1),
    "embedded": dict(max_steps=24, learning_rate=1e-4, lr_scheduler_type="cosine", adam_beta1=0.9, adam_beta2=0.95,
                     gradient_accumulation_steps=1, per_device_train_batch_size=1, use_cpu=True, bf16=False,
                     max_length=3072, packing=False, gradient_checkpointing=False, save_steps=4, save_total_limit=1,
                     logging_steps=1),
    "cpu-smoke": dict(max_steps=2, learning_rate=5e-5, lr_scheduler_type="cosine", adam_beta1=0.9, adam_beta2=0.95,
                      gradient_accumulation_steps=1, per_device_train_batch_size=1, use_cpu=True, bf16=False,
                      max_length=3584, packing=False, gradient_checkpointing=True, save_steps=2, save_total_limit=1,
                      logging_steps=1),
}


class SynthSFTSpec(BaseModel):
    """One synthesizer SFT run."""

    out_dir: Path = Field(description="Output folder (checkpoints, metrics, plots, final model).")
    preset: Literal["gpu", "cpu", "embedded", "cpu-smoke"] = Field(default="cpu-smoke", description="Training preset.")
    model: str = Field(default="local:smollm2", description="Base model: local:smollm2 or a HF folder.")
    data: Path | None = Field(default=None, description="SFT rows with `messages` (system, user, assistant); "
                                                        "None = a tiny synthetic set.")
    yarn_factor: float = Field(default=2.0, ge=1.0, description="YaRN rope scaling factor (1 = off).")
    chat_template: str = Field(default="qwen2_5_training",
                               description="A TRL chat template with {% generation %} markers (name under "
                                           "trl/chat_templates or a path); needed for assistant-only loss.")
    yarn_original_max_pos: int | None = Field(default=None, gt=0, description=(
        "Pre-YaRN window (`original_max_position_embeddings`); None = 32,768 with the gpu preset (the paper: ×2 = "
        "65,536 positions), else the model's own max_position_embeddings."))
    attn_implementation: str | None = Field(default=None, description=(
        "transformers attention kernel; None = flash_attention_2 with the gpu preset, else the model's default."))
    sequence_parallel: int = Field(default=0, ge=0, description=(
        "Ulysses sequence-parallel ranks (DeepSpeed ALST; needs the step under accelerate launch with a DeepSpeed "
        "config); 0 = 4 with the gpu preset, else 1 (off)."))
    resume: bool = Field(default=False, description="Continue from the newest checkpoint (in out_dir, or mirrored "
                         "at checkpoint_uri).")
    checkpoint_uri: str | None = Field(default=None, description="Mirror every checkpoint here as it is saved "
                                       "(s3:// or a folder) and resume from the newest complete one "
                                       "(fathom.checkpoints).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="SFTConfig field overrides.")
