"""Throughput of the in-process model (``LocalClient``): micro-batched vs one request at a time, in the same run.

N concurrent agent-like requests (default 16): the released Fathom-Search prompt for N different questions
(≈600 tokens each), the agent's stop strings and repetition penalty, ``--new-tokens`` new tokens (default 48).
Decoding is greedy so both arms generate the very same tokens (the test suite checks batched == unbatched); a
round fires all N requests at once with ``asyncio.gather`` and times them to the last completion. Arms alternate
within each round (the order flips every round) so a noisy shared machine hits both alike. Prints completions/s
and generated tokens/s per arm (median and min–max over rounds) and the speed-up.

    python benchmarks/bench_local_batching.py [--rounds 3] [--requests 16] [--new-tokens 48] [--max-batch 16]
    python benchmarks/bench_local_batching.py --quick               # 4 requests x 8 new tokens, 3 rounds
    python benchmarks/bench_local_batching.py --inject-slowdown 2   # generation does twice its CPU work (both arms)
    python benchmarks/bench_local_batching.py --dtypes fp32,bf16    # the batched arm in each precision instead

The headline is the (first) batched arm's completions/s (the slowdown hits both arms alike, so the speed-up cannot
move). With ``--dtypes`` the arms are the batched client in each precision (``LocalClient(dtype=...)``; ``auto`` is
bf16 where the CPU computes bf16 natively) and the run also counts the completions that are identical across them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "Who founded the Verrin Observatory?", "In which year did the Halden bridge open to traffic?",
    "What is the population of the town where the Marrow river rises?", "Which composer wrote the Tessel suite?",
    "How tall is the lighthouse on Korrin island?", "Who was the first director of the Alder museum?",
    "What language is spoken in the valley of Ostrava Minor?", "When did the Fenwick railway close?",
    "Which team won the first Calder cup final?", "What is the chemical symbol of the element named after Ivar?",
    "Who designed the Pell tower in the old harbour?", "How many moons does the planet Serro have?",
    "Which university did the author of The Glass Orchard attend?", "Who succeeded the second mayor of Lindqvist?",
    "What is the highest peak of the Varga range?", "In which city was the painter Aurel Mott born?",
]


def _stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.2f}   [{min(xs):.2f} – {max(xs):.2f}]"


async def _round(client, prompts: list[str], new_tokens: int) -> tuple[float, int, list[str]]:
    from fathom.agent.format import STOP_STRINGS

    t0 = time.perf_counter()
    outs = await asyncio.gather(*(client.complete(p, max_tokens=new_tokens, temperature=0.0,
                                                  stop=list(STOP_STRINGS), repetition_penalty=1.05)
                                  for p in prompts))
    return time.perf_counter() - t0, sum(o.completion_tokens for o in outs), [o.text for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=3, quick_rounds=3)
    ap.add_argument("--requests", type=int, default=None, help="concurrent requests (16; 4 with --quick)")
    ap.add_argument("--new-tokens", type=int, default=None, help="new tokens per request (48; 8 with --quick)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--batched-only", action="store_true", help="only the batched arm (the sensitivity test)")
    ap.add_argument("--model", default="smollm2", help="'smollm2' (embedded) or a Hugging Face folder")
    ap.add_argument("--dtype", default="fp32", help="precision of the arms: fp32, bf16 or auto (LocalClient)")
    ap.add_argument("--dtypes", default="", help="comma-separated precisions: one batched arm each (e.g. fp32,bf16)")
    args = ap.parse_args()
    args.rounds = H.rounds_of(args)
    args.requests = args.requests or (4 if args.quick else 16)
    args.new_tokens = args.new_tokens or (8 if args.quick else 48)

    import torch

    from fathom.agent.format import build_prompt, preset_schemas
    from fathom.llm.embedded import resolve_local_model
    from fathom.llm.local import LocalClient, local_dtype

    path = resolve_local_model(args.model)
    if args.dtypes:
        clients = {f"batched {local_dtype(d)}": LocalClient(path, max_batch=args.max_batch, dtype=d)
                   for d in args.dtypes.split(",")}
    else:
        clients = {"batched": LocalClient(path, max_batch=args.max_batch, dtype=args.dtype)}
        if not args.batched_only:
            clients["one-at-a-time"] = LocalClient(path, max_batch=1, dtype=args.dtype)
    if args.inject_slowdown != 1:  # the generation step of each arm (the batcher's thread; to_thread for single)
        for c in clients.values():
            if c._batcher:
                c._batcher._generate = H.slow_down(c._batcher._generate, args.inject_slowdown)
            else:
                c._generate = H.slow_down(c._generate, args.inject_slowdown)
    batched = next(iter(clients.values()))
    H.banner("in-process model: " + (" vs ".join(clients) if args.dtypes
                                     else "micro-batched vs one request at a time"), args)
    schemas = preset_schemas("fathom")
    prompts = [build_prompt(QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})"), schemas)
               for i in range(args.requests)]
    lens = [batched.count_tokens(p) for p in prompts]
    print(f"model {path.name} · {', '.join(f'{n}: {c.dtype}' for n, c in clients.items())} · "
          f"torch threads {torch.get_num_threads()} · {args.requests} concurrent requests · "
          f"prompt {min(lens)}–{max(lens)} tokens · {args.new_tokens} new tokens · greedy · max_batch "
          f"{args.max_batch} · {args.rounds} rounds", flush=True)

    async def run():
        # warm-up: allocations, kernels and the batcher's prefix cache (a first round is a cold prefill of every
        # prompt; without this, round 1 of the batched arm alone is cold and the rounds are not alike)
        for c in clients.values():
            await _round(c, prompts, args.new_tokens)
        res: dict[str, list[tuple[float, int]]] = {name: [] for name in clients}
        texts: dict[str, list[str]] = {}
        arms = list(clients.items())
        for r in range(args.rounds):
            for name, client in arms if r % 2 == 0 else arms[::-1]:
                wall, toks, texts[name] = await _round(client, prompts, args.new_tokens)
                res[name].append((wall, toks))
                print(f"  round {r + 1} {name:14s} {wall:7.2f} s  {toks} tokens", flush=True)
        return res, texts

    res, texts = asyncio.run(run())
    sizes = batched._batcher.batch_sizes[1:] if batched._batcher else []
    print(f"\nbatch sizes seen by the batched arm: {sizes}")
    print(f"\n{'arm':14s} {'completions/s (median [min – max])':38s} {'tokens/s (median [min – max])'}")
    for name, rows in res.items():
        cps = [args.requests / w for w, _ in rows]
        tps = [t / w for w, t in rows]
        print(f"{name:14s} {_stats(cps):38s} {_stats(tps)}")
    if args.dtypes:
        first, *others = res
        for name in others:
            speed = [b / a for (a, _), (b, _) in zip(res[name], res[first])]
            same = sum(x == y for x, y in zip(texts[first], texts[name]))
            print(f"\n{name} vs {first}: wall-time ratio per round ({first} ÷ {name}) median "
                  f"{statistics.median(speed):.2f}× [{min(speed):.2f} – {max(speed):.2f}]; identical completions "
                  f"{same}/{len(prompts)} (greedy)")
    if "one-at-a-time" in res:
        speed = [s / b for (b, _), (s, _) in zip(res["batched"], res["one-at-a-time"])]
        print(f"\nspeed-up (one-at-a-time wall ÷ batched wall, per round): median {statistics.median(speed):.2f}× "
              f"[{min(speed):.2f} – {max(speed):.2f}]")
        print("(the batched arm goes through the batcher's prefix cache, the other arm through plain generate(): the "
              "speed-up is micro-batching and prefix reuse together)")
    first = next(iter(res))
    H.headline(f"{first} completions/s", [args.requests / w for w, _ in res[first]], "higher", "1/s")


if __name__ == "__main__":
    main()
