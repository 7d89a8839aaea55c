"""Micro-batches of a RAPO step: rows of similar length together, each cut to its own longest completion; the
loss of the step (summed over its micro-batches) is the same as with TRL's random shuffle of fully padded rows."""

from __future__ import annotations

import pytest
import torch

from fathom.rl.trainer import length_sorted_micro_batches


def _batch():
    # 4 rows, completions of 2, 6, 1 and 3 tokens, right-padded to 6 (pad id 0); prompts left-padded to 3
    lengths = [2, 6, 1, 3]
    comp = torch.zeros(4, 6, dtype=torch.long)
    mask = torch.zeros(4, 6, dtype=torch.long)
    for i, n in enumerate(lengths):
        comp[i, :n] = torch.arange(1, n + 1) + 10 * i
        mask[i, :n] = 1
    tool = mask.clone()
    tool[1, 2:4] = 0  # row 1's tool response: in the completion, out of the loss
    return {"prompt_ids": torch.tensor([[0, 5, 6], [7, 8, 9], [0, 0, 4], [0, 3, 3]]),
            "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1], [0, 1, 1]]),
            "completion_ids": comp, "completion_mask": mask, "tool_mask": tool,
            "sampling_per_token_logps": -mask.float() * 0.5,
            "advantages": torch.tensor([0.1, 0.2, 0.3, 0.4]), "num_items_in_batch": torch.tensor(12),
            "old_per_token_logps": None, "rollouts": ["r0", "r1", "r2", "r3"]}


def test_rows_of_similar_length_go_together_and_each_group_is_cut_to_its_longest():
    b = _batch()
    long, short = length_sorted_micro_batches(b, 2)
    assert long["rollouts"] == ["r1", "r3"] and short["rollouts"] == ["r0", "r2"]
    assert long["completion_ids"].shape == (2, 6) and short["completion_ids"].shape == (2, 2)
    assert short["completion_ids"].tolist() == [[1, 2], [21, 0]]
    assert short["completion_mask"].tolist() == [[1, 1], [1, 0]]
    assert long["tool_mask"].tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert short["sampling_per_token_logps"].shape == (2, 2)
    assert long["advantages"].tolist() == pytest.approx([0.2, 0.4]) and short["prompt_ids"].shape == (2, 3)
    assert short["prompt_ids"].tolist() == [[0, 5, 6], [0, 0, 4]]  # prompts (left-padded) are kept whole
    assert long["num_items_in_batch"] is b["num_items_in_batch"] and long["old_per_token_logps"] is None
    # every real completion token is kept, in its row
    for part in (long, short):
        for ids, m in zip(part["completion_ids"], part["completion_mask"]):
            assert ids[m.bool()].tolist() in [b["completion_ids"][i][b["completion_mask"][i].bool()].tolist()
                                              for i in range(4)]
    with pytest.raises(ValueError, match="equal micro-batches"):
        length_sorted_micro_batches(b, 3)
    torch.manual_seed(1)  # not sorted (micro-batches of separate optimizer steps): shuffled, still cut
    parts = length_sorted_micro_batches(b, 2, sort=False)
    assert sorted(r for p in parts for r in p["rollouts"]) == ["r0", "r1", "r2", "r3"]
    for p in parts:
        assert p["completion_ids"].shape[1] == int(p["completion_mask"].sum(1).max())


def test_the_summed_loss_of_the_step_is_unchanged():
    """A masked token-sum loss (dapo: normalised by the step's token count) over the cut micro-batches equals the
    loss over the fully padded rows, with a real tiny causal model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    b = _batch()

    def step_loss(parts):
        total = 0.0
        for p in parts:
            ids = torch.cat([p["prompt_ids"], p["completion_ids"]], 1)
            att = torch.cat([p["prompt_mask"], p["completion_mask"]], 1)
            c = p["completion_ids"].shape[1]
            logits = model(input_ids=ids, attention_mask=att).logits[:, -c - 1:-1]
            logp = torch.log_softmax(logits, -1).gather(-1, p["completion_ids"][..., None])[..., 0]
            m = p["completion_mask"] * p["tool_mask"]
            total = total + (-(logp * m) * p["advantages"][:, None]).sum() / b["num_items_in_batch"]
        return total

    full = step_loss([{k: v[i:i + 2] if isinstance(v, torch.Tensor) and v.ndim else v for k, v in b.items()}
                      for i in (0, 2)])
    cut = step_loss(length_sorted_micro_batches(b, 2))
    assert float(cut) == pytest.approx(float(full), rel=1e-5, abs=1e-7)
