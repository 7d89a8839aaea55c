"""Micro-batched in-process generation: concurrent requests share one ``generate`` call, each keeps its own
max_tokens / stop strings / cancellation, and greedy results equal one-at-a-time generation."""

from __future__ import annotations

import asyncio
import time

import pytest

from fathom.llm.local import LocalClient


@pytest.fixture(scope="module")
def unbatched(embedded_model_dir):
    return LocalClient(embedded_model_dir, name="local:smollm2", max_batch=1)


@pytest.fixture(scope="module")
def batched(embedded_model_dir):
    return LocalClient(embedded_model_dir, name="local:smollm2", max_batch=8, batch_window_s=0.05)


def _requests(client: LocalClient) -> list[tuple[str, dict]]:
    chat = [client.render_chat([{"role": "user", "content": q}]) for q in (
        "What is the capital of France?", "Name three colours.",
        "Explain photosynthesis in one sentence, please, for a child who is seven years old.")]
    return [
        (chat[0], {"max_tokens": 6}),
        (chat[1], {"max_tokens": 10}),
        (chat[2], {"max_tokens": 12, "stop": ["."]}),
        ("1, 2, 3, 4,", {"max_tokens": 8, "stop": [","]}),  # stops after one token; the others go on
        ("1, 2, 3, 4, 5, 6, 7, 8, 9,", {"max_tokens": 5}),
        (chat[0], {"max_tokens": 8, "repetition_penalty": 1.3}),  # its own group; padding is not penalised
        (chat[1], {"max_tokens": 8, "repetition_penalty": 1.3}),
    ]


def _key(c):
    return (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason)


async def test_batched_greedy_equals_one_at_a_time(batched, unbatched):
    reqs = _requests(batched)
    one = [await unbatched.complete(p, **kw) for p, kw in reqs]
    before = len(batched._batcher.batch_sizes)
    many = await asyncio.gather(*(batched.complete(p, **kw) for p, kw in reqs))
    assert [_key(c) for c in many] == [_key(c) for c in one]
    sizes = batched._batcher.batch_sizes[before:]
    assert sum(sizes) == len(reqs) and max(sizes) >= 5, f"requests were not batched: {sizes}"
    assert many[3].finish_reason == "stop" and "," not in many[3].text and many[3].completion_tokens < 8
    assert many[4].finish_reason == "length" and many[4].completion_tokens == 5


async def test_seeded_sampling_runs_alone_and_reproduces(batched, unbatched):
    prompt = batched.render_chat([{"role": "user", "content": "Tell me a word."}])
    kw = {"max_tokens": 6, "temperature": 1.0, "seed": 7}
    ref = await unbatched.complete(prompt, **kw)
    before = len(batched._batcher.batch_sizes)
    out = await asyncio.gather(batched.complete(prompt, **kw), batched.complete(prompt, max_tokens=4),
                               batched.complete(prompt, **kw))
    assert _key(out[0]) == _key(ref) == _key(out[2])
    assert sorted(batched._batcher.batch_sizes[before:]) == [1, 1, 1]


async def test_cancelled_row_stops_and_the_others_finish(batched):
    async def cancelled():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # counting has no natural end: only max_tokens or the cancel stops it
                await batched.complete("1, 2, 3, 4, 5, 6, 7, 8,", max_tokens=2000)

    t0 = time.perf_counter()
    short, _ = await asyncio.gather(batched.complete("1, 2, 3,", max_tokens=3), cancelled())
    assert short.completion_tokens <= 3
    while batched._lock.locked() and time.perf_counter() - t0 < 15:
        await asyncio.sleep(0.05)
    assert not batched._lock.locked(), "the cancelled row kept the batch generating"
    assert time.perf_counter() - t0 < 15


async def test_max_batch_must_be_positive(embedded_model_dir):
    with pytest.raises(ValueError, match="max_batch"):
        LocalClient(embedded_model_dir, max_batch=0)


def test_looping_period_worked_examples():
    from fathom.llm.local import looping_period

    block = [7, 8, 9, 10, 11, 12, 13, 14]
    assert looping_period([1, 2, 3] + block * 4, repeats=4) == 8
    assert looping_period([1, 2, 3] + block * 4, repeats=5) is None  # only 4 repeats
    assert looping_period(block * 3, repeats=4) is None
    assert looping_period([5] * 32, repeats=4) == 8  # one token over and over: blocks of 8 identical tokens
    assert looping_period([5] * 31, repeats=4) is None  # too short to hold 4 blocks of 8
    ten = list(range(10))
    assert looping_period(ten * 4 + [0, 1, 2], repeats=4) == 10  # mid-block: the loop goes on (3..9, 0..2)
    assert looping_period(ten * 4 + [5], repeats=4) is None  # the loop broke
    assert looping_period([99] + ten * 4, repeats=4) == 10
    assert looping_period(list(range(200)), repeats=2) is None


async def test_a_looping_row_ends_early_and_the_others_go_on(embedded_model_dir, unbatched, batched):
    """With stop_loops, a row that repeats one block 4 times ends there (finish `length`: it was cut), on both
    generation paths; it is the same text as far as it goes, and a row of another request in its batch goes on."""
    prompt = "the cat sat on the mat. " * 12
    budget = 72  # a decode step of SmolLM2 is ~0.1 s here
    plain = await unbatched.complete(prompt, max_tokens=budget)
    assert plain.completion_tokens == budget  # greedy SmolLM2 goes on repeating the sentence to its budget
    for max_batch in (1, 8):
        client = LocalClient(embedded_model_dir, name="local:smollm2", max_batch=max_batch, batch_window_s=0.05,
                             stop_loops=4)
        looped = await client.complete(prompt, max_tokens=budget)
        assert looped.finish_reason == "length" and 32 <= looped.completion_tokens < budget, looped
        assert plain.text.startswith(looped.text)
    other = batched.render_chat([{"role": "user", "content": "Name three colours."}])
    ref = await unbatched.complete(other, max_tokens=10)
    cut, full = await asyncio.gather(client.complete(prompt, max_tokens=budget), batched.complete(other, max_tokens=10))
    assert cut.completion_tokens == looped.completion_tokens and _key(full) == _key(ref)
    with pytest.raises(ValueError, match="stop_loops"):
        LocalClient(embedded_model_dir, stop_loops=1)


def test_local_dtype_worked_examples(monkeypatch):
    import torch

    from fathom.llm.local import local_dtype

    assert local_dtype() == "fp32" and local_dtype("bf16") == "bf16"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert local_dtype("auto") == "fp32"  # no native bf16: emulated bf16 would be slower than fp32
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert local_dtype("auto") == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        local_dtype("fp16")


async def test_a_bf16_client_runs_its_own_weights_and_keeps_every_row_s_limits(embedded_model_dir, batched):
    import torch

    bf16 = LocalClient(embedded_model_dir, name="local:smollm2", max_batch=8, batch_window_s=0.05, dtype="bf16")
    assert bf16.dtype == "bf16" and next(bf16._model.parameters()).dtype == torch.bfloat16
    assert next(batched._model.parameters()).dtype == torch.float32  # the fp32 client's model is its own
    reqs = _requests(bf16)
    many = await asyncio.gather(*(bf16.complete(p, **kw) for p, kw in reqs))
    assert all(c.completion_tokens <= kw["max_tokens"] for c, (_, kw) in zip(many, reqs))
    assert many[3].finish_reason == "stop" and "," not in many[3].text and many[3].completion_tokens < 8
    assert many[4].finish_reason == "length" and many[4].completion_tokens == 5
    assert many[0].text.strip(), "bf16 generates text"


def test_an_evaluated_local_policy_gets_its_precision(embedded_model_dir):
    from fathom.evaluate.agents import AgentSettings, SearchAgent

    agent = SearchAgent(AgentSettings(policy="local:smollm2", tools_url="http://127.0.0.1:9", local_dtype="bf16"),
                        "fathom")
    assert agent.policy.dtype == "bf16"
    assert SearchAgent(AgentSettings(policy="local:smollm2", tools_url="http://127.0.0.1:9"), "fathom").policy.dtype \
        == "fp32"
