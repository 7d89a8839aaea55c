"""The synthesizer's GPU recipe (method.md §5.4): FlashAttention-2, Ulysses sequence parallelism over 4 ranks, and
YaRN ×2 over Qwen3's 32,768-token native window = 65,536 positions (not the config's 40,960 → 81,920)."""

from pathlib import Path

from fathom.sft.config import SynthSFTSpec
from fathom.sft.gpu import PAPER_ORIGINAL_MAX_POS, resolve_runtime
from fathom.sft.trainer import yarn_config


def test_gpu_preset_gets_fa2_sequence_parallel_and_the_papers_window(tmp_path):
    rt = resolve_runtime(SynthSFTSpec(out_dir=tmp_path, preset="gpu"), world_size=8)
    assert rt.attn_implementation == "flash_attention_2" and rt.sequence_parallel == 4
    assert rt.yarn_original_max_pos == PAPER_ORIGINAL_MAX_POS == 32768
    kw = rt.args_kwargs()
    pc = kw["parallelism_config"]
    assert (pc.sp_backend, pc.sp_size, kw["pad_to_multiple_of"]) == ("deepspeed", 4, 4)
    assert pc.sp_handler.sp_attn_implementation == "flash_attention_2"
    assert rt.model_kwargs() == {"attn_implementation": "flash_attention_2"}


def test_sequence_parallel_needs_enough_ranks_and_cpu_presets_keep_defaults(tmp_path):
    assert resolve_runtime(SynthSFTSpec(out_dir=tmp_path, preset="gpu"), world_size=1).sequence_parallel == 1
    assert resolve_runtime(SynthSFTSpec(out_dir=tmp_path, preset="gpu"), world_size=6).sequence_parallel == 1
    rt = resolve_runtime(SynthSFTSpec(out_dir=tmp_path, preset="cpu-smoke"), world_size=8)
    assert (rt.attn_implementation, rt.sequence_parallel, rt.yarn_original_max_pos) == (None, 1, None)
    assert rt.args_kwargs() == {} and rt.model_kwargs() == {}
    explicit = SynthSFTSpec(out_dir=tmp_path, preset="gpu", attn_implementation="sdpa", sequence_parallel=2,
                            yarn_original_max_pos=40960)
    rt = resolve_runtime(explicit, world_size=8)
    assert (rt.attn_implementation, rt.sequence_parallel, rt.yarn_original_max_pos) == ("sdpa", 2, 40960)


def test_yarn_window_is_32768_times_2(tmp_path: Path):
    from transformers import Qwen3Config

    Qwen3Config(max_position_embeddings=40960, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=128).save_pretrained(tmp_path)
    cfg = yarn_config(tmp_path, 2.0, PAPER_ORIGINAL_MAX_POS)
    assert cfg.max_position_embeddings == 65536
    assert cfg.rope_parameters["original_max_position_embeddings"] == 32768
    assert cfg.rope_parameters["rope_type"] == "yarn" and cfg.rope_parameters["factor"] == 2.0
    assert yarn_config(tmp_path, 2.0).max_position_embeddings == 81920  # the config's own window (CPU presets)
