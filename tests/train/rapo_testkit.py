"""Shared helpers of the training tests: a tiny random Llama (embedded tokenizer), a short prompt template, a
scripted turn generator, and a trainer factory with a stub tool backend."""

from __future__ import annotations

from pathlib import Path

from fathom.rl.rollout import RolloutEngine, StubTools

TINY_TEMPLATE = "Answer with tools {func_schemas} and put the answer in \\boxed{{}}."


def tiny_model_dir(root: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = root / "tiny-llama"
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=1,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def template_file(root: Path) -> Path:
    p = root / "tiny_template.txt"
    p.write_text(TINY_TEMPLATE)
    return p


def scripted(tok, turns: list[str]):
    """A TurnGenerator that answers every live rollout with the next scripted turn (+ EOS)."""
    state = {"i": 0}

    def gen(contexts, max_new):
        text = turns[min(state["i"], len(turns) - 1)]
        state["i"] += 1
        ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
        return [ids[:m] for m in max_new], None

    return gen


def make_trainer(model_dir: Path, out: Path, template: Path, *, rows=None, judge=None, **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fathom.rl.config import rapo_config
    from fathom.rl.trainer import RAPOTrainer

    kw = dict(max_steps=2, max_tokens_per_turn=8, max_total_tokens=512, prompt_template=str(template),
              report_to=[], save_steps=1, logging_steps=1, seed=0, per_device_train_batch_size=4,
              save_total_limit=None)
    kw.update(overrides)
    args = rapo_config("cpu-smoke", str(out), **kw)
    rows = rows or [{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(5)]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    engine = RolloutEngine(lambda: StubTools(), args.rollout_config())
    return RAPOTrainer(model, args, rows, engine, processing_class=tok, judge=judge), engine
