"""The paper's GPU recipe for synthesizer SFT (method.md §5.4) where a preset alone cannot say it: FlashAttention-2,
Ulysses sequence parallelism over 4 GPUs (DeepSpeed ALST through accelerate's ``ParallelismConfig``; the step runs
under `accelerate launch` with a DeepSpeed config, see fathom.launch), and YaRN ×2 over the 32,768-token native
window = 65,536 positions (Qwen3-4B's config says 40,960, which would give 81,920).

Resolved per preset: ``gpu`` gets all three, the CPU presets none (the embedded model keeps its own window)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Qwen3's native (pre-YaRN) context: the paper's 65,536 positions are 32,768 × 2.
PAPER_ORIGINAL_MAX_POS = 32768
GPU_SEQUENCE_PARALLEL = 4
GPU_ATTENTION = "flash_attention_2"


@dataclass(frozen=True)
class SFTRuntime:
    attn_implementation: str | None
    sequence_parallel: int
    yarn_original_max_pos: int | None  # None = the model's own max_position_embeddings

    def model_kwargs(self) -> dict[str, Any]:
        return {"attn_implementation": self.attn_implementation} if self.attn_implementation else {}

    def args_kwargs(self) -> dict[str, Any]:
        """SFTConfig fields: a DeepSpeed Ulysses ``parallelism_config`` of `sequence_parallel` ranks (sequences padded
        to a multiple of it), or nothing."""
        if self.sequence_parallel <= 1:
            return {}
        from accelerate.parallelism_config import ParallelismConfig
        from accelerate.utils import DeepSpeedSequenceParallelConfig

        handler = DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True,
                                                  sp_attn_implementation=self.attn_implementation or "sdpa")
        return {"parallelism_config": ParallelismConfig(sp_backend="deepspeed", sp_size=self.sequence_parallel,
                                                        sp_handler=handler),
                "pad_to_multiple_of": self.sequence_parallel}


def resolve_runtime(spec, world_size: int | None = None) -> SFTRuntime:
    """The runtime of a SynthSFTSpec: explicit fields win, else the preset's defaults. Sequence parallelism needs
    at least that many processes (`WORLD_SIZE`, set by accelerate/torchrun); with fewer it is off (logged)."""
    import logging
    import os

    gpu = spec.preset == "gpu"
    attn = spec.attn_implementation if spec.attn_implementation is not None else (GPU_ATTENTION if gpu else None)
    sp = spec.sequence_parallel if spec.sequence_parallel else (GPU_SEQUENCE_PARALLEL if gpu else 1)
    world = int(world_size if world_size is not None else os.environ.get("WORLD_SIZE", "1"))
    if sp > 1 and (world < sp or world % sp):
        logging.getLogger(__name__).warning("sequence parallelism over %d ranks needs a multiple of %d processes "
                                            "(have %d): off", sp, sp, world)
        sp = 1
    original = spec.yarn_original_max_pos if spec.yarn_original_max_pos else (PAPER_ORIGINAL_MAX_POS if gpu else None)
    return SFTRuntime(attn_implementation=attn or None, sequence_parallel=int(sp), yarn_original_max_pos=original)
