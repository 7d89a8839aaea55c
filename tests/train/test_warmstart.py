"""Policy warm start: the expert walks real evidence paths through the tool server, its trajectories become
(ids, labels) with the rollout mask, and the shared-prefix loss equals running each row in full."""

from __future__ import annotations

import asyncio

import pytest
import torch

from fathom.agent import FunctionTools, run_agent
from fathom.agent.format import preset_schemas
from fathom.web.offline.expert import ExpertPolicy, expert_agent_config

HOPS = [
    {"subject": "Briamaeholt", "relation": "country", "object": "Raesoland",
     "fact": "Briamaeholt is a city in Raesoland.", "url": "http://atlas.fathom.test/wiki/Briamaeholt"},
    {"subject": "Raesoland", "relation": "capital", "object": "Brevostwick",
     "fact": "The capital of Raesoland is Brevostwick.", "url": "http://atlas.fathom.test/wiki/Raesoland"},
]
Q = "What is the capital of the country in which Briamaeholt lies?"


def _site(pages: dict[str, str]) -> FunctionTools:
    """A two-page 'web' with the reference result layouts (search hits, query_url readings)."""

    async def search_urls(query: str, top_k: int = 10) -> str:
        hits = [f"### {i}. {t}\n**URL**: http://atlas.fathom.test/wiki/{t}\n\n**Snippet**: {pages[t][:60]}\n"
                for i, t in enumerate([t for t in pages if query.lower() in t.lower()][:top_k], start=1)]
        return "\n---\n\n".join(hits) or f"No results found. (query: {query})"

    async def query_url(url: str, goal: str) -> str:
        text = pages.get(url.rsplit("/", 1)[-1], "")
        return f"The useful information in {url} for goal \u201c{goal}\u201d:\n\nEvidence:\n{text}\n\nSummary:\n{text}"

    return FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})


def test_expert_walks_the_evidence_path_in_the_released_format():
    tools = _site({"Briamaeholt": "Briamaeholt is a city in Raesoland. It has a harbour.",
                   "Raesoland": "Raesoland is a country. The capital of Raesoland is Brevostwick."})
    expert = ExpertPolicy()
    expert.register(Q, HOPS)
    traj = asyncio.run(run_agent(Q, expert, tools, expert_agent_config()))
    assert traj.status == "answered" and traj.answer == "Brevostwick"
    names = [c.name for c in traj.tool_calls]
    assert names == ["search_urls", "query_url", "search_urls", "query_url"]
    assert traj.tool_calls[1].arguments["url"] == "http://atlas.fathom.test/wiki/Briamaeholt"
    assert "Briamaeholt is a city in Raesoland." in traj.turns[2].text  # quoted from the reading, not invented
    from fathom.rl.rewards import check_format

    assert check_format([t.text for t in traj.turns], preset_schemas("fathom")).ok


def test_expert_fails_when_the_web_does_not_hold_the_evidence():
    tools = _site({"Briamaeholt": "Briamaeholt is a city in Raesoland.",
                   "Raesoland": "Raesoland is a country with a long coast."})  # no capital on the page
    expert = ExpertPolicy()
    expert.register(Q, HOPS)
    traj = asyncio.run(run_agent(Q, expert, tools, expert_agent_config()))
    assert traj.answer is None and traj.status == "no_answer"
    tools = _site({"Raesoland": "The capital of Raesoland is Brevostwick."})  # search cannot find the start
    traj = asyncio.run(run_agent(Q, expert, tools, expert_agent_config()))
    assert traj.answer is None and len(traj.tool_calls) == 1


def test_features_mask_environment_and_share_the_system_prefix(embedded_model_dir):
    from transformers import AutoTokenizer

    from fathom.rl.warmstart import trajectory_features

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    tools = _site({"Briamaeholt": "Briamaeholt is a city in Raesoland.",
                   "Raesoland": "The capital of Raesoland is Brevostwick."})
    expert = ExpertPolicy(lambda s: len(tok(s, add_special_tokens=False).input_ids))
    expert.register(Q, HOPS)
    other = "What is the capital of Raesoland?"
    expert.register(other, HOPS[1:])
    t1, t2 = (asyncio.run(run_agent(q, expert, tools, expert_agent_config())) for q in (Q, other))
    ids, labels, k = trajectory_features(t1, tok)
    ids2, _, k2 = trajectory_features(t2, tok)
    assert k == k2 and ids[:k] == ids2[:k]  # one system prefix for the whole batch
    assert ids == tok(t1.transcript, add_special_tokens=False).input_ids  # same tokens as the whole transcript
    trained = tok.decode([i for i, lab in zip(ids, labels) if lab != -100])
    model_text = "".join(s.text for s in t1.segments if s.role == "model")
    assert trained == model_text and "<tool_response>" not in trained and "\\boxed{Brevostwick}" in trained


def test_shared_prefix_loss_equals_full_rows():
    from transformers import LlamaConfig, LlamaForCausalLM

    from fathom.rl.warmstart import _Collator, shared_prefix_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    prefix = torch.randint(3, 97, (6,)).tolist()
    rows = []
    for n in (5, 9, 3):
        suffix = torch.randint(3, 97, (n,)).tolist()
        labels = [-100] * 6 + [x if j % 3 else -100 for j, x in enumerate(suffix)]
        rows.append({"input_ids": prefix + suffix, "labels": labels, "prefix_len": 6})
    batch = _Collator(pad_id=0)(rows)
    model.zero_grad()
    shared = shared_prefix_loss(model, batch["prefix_ids"], batch["input_ids"], batch["attention_mask"],
                                batch["labels"])
    shared.backward()
    g_shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total, count = 0.0, 0
    for r in rows:
        out = model(input_ids=torch.tensor([r["input_ids"]]))
        lab = torch.tensor(r["labels"][1:])
        total = total + torch.nn.functional.cross_entropy(out.logits[0, :-1], lab, ignore_index=-100,
                                                          reduction="sum")
        count += int((lab != -100).sum())
    full = total / count
    full.backward()
    assert shared.item() == pytest.approx(full.item(), rel=1e-5)
    for a, b in zip(g_shared, (p.grad for p in model.parameters())):
        assert torch.allclose(a, b, atol=1e-5)


def test_collator_refuses_mixed_prefixes():
    from fathom.rl.warmstart import _Collator

    with pytest.raises(ValueError, match="share their system prefix"):
        _Collator(0)([{"input_ids": [1, 2, 3, 4], "labels": [-100] * 4, "prefix_len": 2},
                      {"input_ids": [1, 9, 3, 4], "labels": [-100] * 4, "prefix_len": 2}])


def test_a_finished_warm_start_with_the_same_inputs_is_reused(tmp_path, monkeypatch):
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    from fathom.rl.warmstart import WarmStartConfig, WarmStartSpec, cache_dir, fingerprint, train_warmstart

    monkeypatch.setenv("FATHOM_HOME", str(tmp_path / "home"))
    base = tmp_path / "base"
    LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(base)
    spec = WarmStartSpec(out_dir=tmp_path / "run", model=str(base), config=WarmStartConfig(n_questions=3))
    fp = fingerprint(spec, base)
    assert fp != fingerprint(spec.model_copy(update={"world_seed": 1}), base)  # another world, another entry
    assert fp != fingerprint(spec.model_copy(update={"config": WarmStartConfig(n_questions=4)}), base)
    done = cache_dir(fp)
    (done / "final").mkdir(parents=True)
    (done / "final" / ".complete").write_text("warm start\n")
    (done / "final" / "model.safetensors").write_bytes(b"weights")
    (done / "plots").mkdir()
    (done / "plots" / "loss.png").write_bytes(b"png")
    (done / "summary.json").write_text(json.dumps({"trajectories": 3, "plots": ["/gone/loss.png"]}))
    summary = train_warmstart(spec)
    assert summary["cached_from"] == str(done) and summary["trajectories"] == 3
    assert summary["plots"] == [str(done / "plots" / "loss.png")]  # never another run's (deleted) files
    assert (tmp_path / "run" / "final" / "model.safetensors").read_bytes() == b"weights"
