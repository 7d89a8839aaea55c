"""Key/value cache reuse across turns: greedy outputs equal plain generation, and a growing transcript only
encodes what was appended (a transcript of another question still reuses the shared system prompt)."""

from __future__ import annotations

import torch

from fathom.llm.kvcache import PrefixCacheGenerator


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=4096)).eval()


def _plain(m, ctx, n):
    out = m.generate(input_ids=torch.tensor([ctx]), attention_mask=torch.ones(1, len(ctx), dtype=torch.long),
                     max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(ctx):].tolist()


def test_multi_turn_greedy_equals_plain_generation_and_reuses_the_cache():
    m = _model()
    g = PrefixCacheGenerator(m, pad_id=0, min_reuse=4)
    system = torch.randint(3, 300, (80,)).tolist()
    ctxs = [system + torch.randint(3, 300, (n,)).tolist() for n in (5, 17, 9)]
    for turn in range(3):
        encoded = g.stats["encoded_tokens"]
        outs = g.generate(ctxs, 12, do_sample=False, pad_token_id=0)
        assert outs == [_plain(m, c, 12) for c in ctxs], f"turn {turn}"
        if turn:  # only the environment's reply (7-9 tokens per row) and the last turn's tokens were encoded
            assert g.stats["encoded_tokens"] - encoded <= 3 * (12 + 9)
        ctxs = [c + o + torch.randint(3, 300, (7 + i,)).tolist() for i, (c, o) in enumerate(zip(ctxs, outs))]
    # a new question shares the system prompt with the cached transcripts
    encoded = g.stats["encoded_tokens"]
    fresh = system + torch.randint(3, 300, (6,)).tolist()
    assert g.generate([fresh], 5, do_sample=False, pad_token_id=0) == [_plain(m, fresh, 5)]
    assert g.stats["encoded_tokens"] - encoded == 6 - 1 + 0  # only the question (minus the token generate feeds)


def test_rows_that_stop_early_cache_only_their_own_tokens():
    m = _model()
    eos = 7
    g = PrefixCacheGenerator(m, pad_id=0, min_reuse=4)
    ctxs = [torch.randint(8, 300, (n,)).tolist() for n in (30, 40)]
    outs = g.generate(ctxs, 10, do_sample=False, pad_token_id=0, eos_token_id=eos)
    ref = [m.generate(input_ids=torch.tensor([c]), attention_mask=torch.ones(1, len(c), dtype=torch.long),
                      max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=eos)[0, len(c):].tolist()
           for c in ctxs]
    for o, r in zip(outs, ref):
        assert o[:len(r)] == r
    nxt = [c + [t for t in o if t != 0] + [11, 12, 13] for c, o in zip(ctxs, outs)]
    assert g.generate(nxt, 4, do_sample=False, pad_token_id=0) == [_plain(m, c, 4) for c in nxt]
