"""Key/value cache reuse across turns: greedy outputs equal plain generation, and a growing transcript only
encodes what was appended (a transcript of another question still reuses the shared system prompt)."""

from __future__ import annotations

import torch

from fathom.llm.kvcache import PrefixCacheGenerator, preallocated_cache


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
        if turn:  # only the environment's reply (7-9 tokens per row), the last turn's tokens and the token fed
            assert g.stats["encoded_tokens"] - encoded <= 3 * (12 + 9 + 1)
        ctxs = [c + o + torch.randint(3, 300, (7 + i,)).tolist() for i, (c, o) in enumerate(zip(ctxs, outs))]
    assert len(g._lru) == 3  # one entry per transcript: a turn's entry replaces the one of its previous turn
    # a new question shares the system prompt with the cached transcripts
    encoded = g.stats["encoded_tokens"]
    fresh = system + torch.randint(3, 300, (6,)).tolist()
    assert g.generate([fresh], 5, do_sample=False, pad_token_id=0) == [_plain(m, fresh, 5)]
    assert g.stats["encoded_tokens"] - encoded == 6  # only the question


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


def test_cold_rows_encode_their_shared_prefix_once():
    m = _model()
    g = PrefixCacheGenerator(m, pad_id=0, min_reuse=4)
    system = torch.randint(3, 300, (100,)).tolist()
    ctxs = [system + torch.randint(3, 300, (n,)).tolist() for n in (5, 8, 6, 7)]
    outs = g.generate(ctxs, 6, do_sample=False, pad_token_id=0)
    assert outs == [_plain(m, c, 6) for c in ctxs]
    # the 100-token prefix once, then 4 rows × the longest suffix (8) in one batch — not 4 × 108
    assert g.stats["encoded_tokens"] == 100 + 4 * 8


def test_preallocated_cache_matches_the_dynamic_cache_and_grows():
    from transformers import DynamicCache

    m = _model()
    ids = torch.randint(3, 300, (2, 40))
    with torch.no_grad():
        grown, dyn = preallocated_cache(3, capacity=8), DynamicCache()  # 8 < 40: the buffer has to grow
        for lo, hi in ((0, 30), (30, 31), (31, 40)):
            a = m(input_ids=ids[:, lo:hi], past_key_values=grown, use_cache=True).logits
            b = m(input_ids=ids[:, lo:hi], past_key_values=dyn, use_cache=True).logits
            torch.testing.assert_close(a, b)
    assert grown.get_seq_length() == dyn.get_seq_length() == 40
