"""Checkpoint conversion on a tiny random Llama (full and LoRA, TRL-style folders) and on the embedded model."""

import json
import shutil

import pytest
import torch

from fathom.convert.convert import (
    MANIFEST_NAME,
    ConvertConfig,
    check_folder,
    convert_checkpoint,
    resolve_source,
    sha256_file,
)
from fathom.errors import ConfigError

TRAINING_FILES = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"]


@pytest.fixture(scope="module")
def tiny_trl_dir(tmp_path_factory, embedded_model_dir):
    """A TRL-like output folder: random tiny Llama + the embedded tokenizer, optimizer state and a checkpoint-N."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("trl-out")
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=49152, max_position_embeddings=1024, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    for folder in (root / "checkpoint-10", root / "checkpoint-20"):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        for name in TRAINING_FILES:
            (folder / name).write_bytes(b"state")
    return root


def _logits(folder, ids):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return m(ids).logits


def test_resolve_source_picks_latest_checkpoint(tiny_trl_dir, tmp_path):
    assert resolve_source(str(tiny_trl_dir)).name == "checkpoint-20"
    with pytest.raises(ConfigError, match="neither"):
        resolve_source(str(tmp_path))


def test_full_checkpoint_to_bf16_with_yarn(tiny_trl_dir, tmp_path):
    out = tmp_path / "serve"
    res = convert_checkpoint(ConvertConfig(src=str(tiny_trl_dir), out=out, dtype="bf16", yarn_factor=2.0,
                                           original_max_pos=1024, verify_tokens=4))
    names = {p.name for p in out.iterdir()}
    assert not names & set(TRAINING_FILES)
    assert {"config.json", "generation_config.json", "tokenizer.json", "model.safetensors", MANIFEST_NAME} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 1024}
    assert config["rope_parameters"]["rope_type"] == "yarn" and config["max_position_embeddings"] == 2048
    assert "rope_type" not in config and "factor" not in config  # never the flat form
    m = res.manifest
    assert m["dtype"] == "bfloat16" and m["source_kind"] == "full" and m["verification"]["tokens"] == 4
    assert m["files"]["model.safetensors"]["sha256"] == sha256_file(out / "model.safetensors")
    assert check_folder(out) == []
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118 (not a dict)
    # weights survive the cast (bf16 rounding only)
    ids = torch.tensor([[1, 200, 300, 400]])
    ref = _logits(tiny_trl_dir / "checkpoint-20", ids)
    assert torch.allclose(_logits(out, ids), ref, atol=0.05)

    again = convert_checkpoint(ConvertConfig(src=str(tiny_trl_dir), out=out, dtype="bf16", yarn_factor=2.0,
                                             original_max_pos=1024))
    assert again.skipped  # resumable: same inputs, intact folder
    (out / "stray.txt").write_text("x")
    assert check_folder(out) == ["unlisted stray.txt"]
    assert not convert_checkpoint(ConvertConfig(src=str(tiny_trl_dir), out=out, dtype="bf16", yarn_factor=2.0,
                                                original_max_pos=1024, verify=False)).skipped
    assert not (out / "stray.txt").exists() and not list(tmp_path.glob(".serve.tmp-*"))


def test_lora_adapter_is_merged(tiny_trl_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = tiny_trl_dir / "checkpoint-20"
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))  # non-zero B: the merge matters
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    shutil.copy(base_dir / "tokenizer.json", adapter)
    shutil.copy(base_dir / "tokenizer_config.json", adapter)
    (adapter / "optimizer.pt").write_bytes(b"state")
    ids = torch.tensor([[1, 200, 300, 400]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    assert not torch.allclose(expected, _logits(base_dir, ids), atol=1e-4)

    out = tmp_path / "merged"
    res = convert_checkpoint(ConvertConfig(src=str(adapter), out=out, dtype="fp32", base_model=str(base_dir),
                                           verify_tokens=2))
    assert res.manifest["source_kind"] == "lora-merged" and res.manifest["lora_r"] == 4
    assert not list(out.glob("adapter_*")) and not (out / "optimizer.pt").exists()
    assert torch.allclose(_logits(out, ids), expected, atol=1e-4)


def test_upload_by_uri_through_storage(tiny_trl_dir, tmp_path):
    out, dest = tmp_path / "serve", tmp_path / "bucket" / "fathom-search"
    res = convert_checkpoint(ConvertConfig(src=str(tiny_trl_dir), out=out, dtype="fp32", verify=False,
                                           upload=str(dest)))
    assert res.uploaded_to == str(dest)
    assert check_folder(dest) == []


def test_bad_options():
    with pytest.raises(ValueError, match="only makes sense"):
        ConvertConfig(src="x", out="y", original_max_pos=4096)


@pytest.mark.slow
def test_convert_embedded_model(tmp_path):
    res = convert_checkpoint(ConvertConfig(src="embedded", out=tmp_path / "smollm2", dtype="bf16", yarn_factor=2.0,
                                           original_max_pos=8192, verify_tokens=6))
    m = res.manifest
    assert m["source_kind"] == "full" and m["parameters"] > 100_000_000
    assert "chat_template.jinja" in m["files"] and m["verification"]["dtype"] == "bfloat16"
    assert "paris" in m["verification"]["output"].lower()  # "The capital of France is" -> " Paris..."
    assert json.loads((tmp_path / "smollm2" / "config.json").read_text())["rope_scaling"]["factor"] == 2.0
