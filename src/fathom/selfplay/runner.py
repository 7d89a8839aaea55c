"""The DuetQA stage runner: plan -> generate -> check -> obfuscate -> verify, resumable, then finalise.

Layout of the output folder ``DIR``::

    DIR/work/items.jsonl         append-only: one record per finished item (kept or rejected, with the reason)
    DIR/work/trajectories.jsonl  append-only: every transcript (generator, M1, M2, M3, judge) referenced by id
    DIR/work/errors.jsonl        items that failed on infrastructure errors (retried by the next run)
    DIR/work/runs.jsonl          per-run usage (tokens and tool calls per role) and budget stops
    DIR/work/meta.json           the settings that must not change between resumed runs
    DIR/hf/, DIR/data/*.parquet, DIR/duetqa.jsonl    kept rows (after dedup)
    DIR/candidates.jsonl         every processed item with its funnel stage and rejection reason
    DIR/rl/                      rows for RL: prompt, answer, id, source, hops (hf/, data/, rl.jsonl)
    DIR/README.md                dataset card with the funnel counts

A crash loses at most the items in flight: a restart skips every id already in ``items.jsonl``.

Sources (``DuetQAConfig.source``): ``model`` is the paper's self-play on real endpoints; ``world`` composes questions
from the offline web's graph and verifies them with the expert search policy through the tool server
(:mod:`fathom.selfplay.world`); ``truth`` is a test mode. A run that keeps no row raises
:class:`~fathom.errors.EmptyStageError` after writing its outputs (the card and ``candidates.jsonl`` say why).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from fathom.datasets_io import AppendLog, FunnelResult, dataset_card, save_dataset, write_jsonl, write_text_atomic
from fathom.errors import ConfigError, EmptyStageError, LLMError
from fathom.llm.base import LLMClient
from fathom.selfplay.accounting import AccountedClient, AccountedTools, Usage
from fathom.selfplay.banks import ItemPlan, bank_version, load_seeds, load_themes, plan_item
from fathom.selfplay.config import DuetQAConfig, is_expert
from fathom.selfplay.decontam import DecontamConfig, Decontaminator, decontaminator
from fathom.selfplay.dedup import dedup
from fathom.selfplay.filters import check_answer, check_candidate, check_question
from fathom.selfplay.generate import (
    Candidate,
    Hop,
    compose_messages,
    evidence_from_trajectory,
    gather_task,
    parse_candidate,
)
from fathom.selfplay.judge import Verdict, judge_answer
from fathom.selfplay.obfuscate import check_obfuscation, clean_obfuscation, obfuscation_messages
from fathom.selfplay.text import normalize_answer
from fathom.selfplay.verify import verification
from fathom.selfplay.work import StageWork, run_pool

log = logging.getLogger(__name__)

NO_SEARCH_SYSTEM = "Please answer the following question. Provide your final answer as \\boxed{YOUR_ANSWER}."
STAGES = ["planned", "generated", "checked", "obfuscated", "verified", "kept"]
# Settings that define which items exist; a resumed run must use the same ones.
PINNED = ("seed", "mode", "seeded_fraction", "source", "k_choices", "cutoff", "offline_seed", "offline_pages",
          "world_hops")


class DuetQAResult(FunnelResult):
    kept: int


def row_features():
    from datasets import Features, List, Value

    verdict = {"answer": Value("string"), "correct": Value("bool"), "method": Value("string"),
               "judge_raw": Value("string"), "transcript_ref": Value("string"), "status": Value("string"),
               "tool_calls": Value("int32")}
    return Features({
        "id": Value("string"),
        "question": Value("string"),
        "answer": Value("string"),
        "original_question": Value("string"),
        "themes": List(Value("string")),
        "mode": Value("string"),
        "source": Value("string"),
        "obfuscation": Value("string"),
        "seed_id": Value("string"),
        "hops": List({"fact": Value("string"), "url": Value("string"), "date": Value("string")}),
        "sources": List(Value("string")),
        "verification": {"m1": verdict, "m2": verdict, "m3": verdict, "agreement": verdict},
        "created_at": Value("string"),
        "generator_models": {"generator": Value("string"), "obfuscator": Value("string"),
                             "solver_m1": Value("string"), "solver_m2": Value("string"),
                             "solver_m3": Value("string"), "judge": Value("string")},
    })


def rl_features():
    from datasets import Features, Value

    return Features({"prompt": Value("string"), "answer": Value("string"), "id": Value("string"),
                     "source": Value("string"), "hops": Value("int32")})


# --------------------------------------------------------------------------------------------------- context
class _Ctx(StageWork):
    """Everything one run shares: clients per role/task, tools, logs, usage, banks, the truth source."""

    def __init__(self, cfg: DuetQAConfig, out_dir: Path):
        super().__init__(out_dir)
        self.cfg = cfg
        self.clients: dict[str, AccountedClient] = {}
        self.tools: dict[str, AccountedTools] = {}
        self.source = cfg.resolved_source()
        self.truth: list[Any] | None = None
        self.world = None  # fathom.web.offline.world.World (world source)
        self.expert = None  # the shared ExpertPolicy (expert solvers)
        self.leakage: Decontaminator | None = None
        self.models = cfg.describe_roles()

    def client(self, key: str) -> AccountedClient:
        return self.clients[key]


def _check_meta(cfg: DuetQAConfig, out_dir: Path, themes_v: str, seeds_v: str) -> None:
    meta_path = out_dir / "work" / "meta.json"
    pinned = {k: v for k, v in cfg.model_dump(mode="json").items() if k in PINNED}
    pinned["source"] = cfg.resolved_source()
    pinned.update(themes=themes_v, seeds=seeds_v)
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        diff = {k: (old.get(k), v) for k, v in pinned.items() if old.get(k) != v}
        if diff:
            raise ConfigError(f"{out_dir} holds a DuetQA run with different settings {diff}; "
                              "resume with the same settings or use a new output folder")
    else:
        write_text_atomic(meta_path, json.dumps(pinned, indent=1))


async def _build_clients(ctx: _Ctx, stack: AsyncExitStack, clients: dict[str, LLMClient] | None) -> None:
    from fathom.llm import make_client

    cfg = ctx.cfg
    roles = cfg.roles()
    base: dict[str, LLMClient] = {}
    by_spec: dict[str, LLMClient] = {}
    for name in ("m1", "m2"):
        if is_expert(getattr(cfg, name)) and not (clients and name in clients):
            if ctx.expert is None:
                from fathom.web.offline.expert import ExpertPolicy

                ctx.expert = ExpertPolicy()
            base[name] = ctx.expert
    for name, role in roles.items():
        if clients and name in clients:
            base[name] = clients[name]
            continue
        spec = role.model_dump_json()
        if spec not in by_spec:
            by_spec[spec] = make_client(role)
            stack.push_async_callback(by_spec[spec].aclose)
        base[name] = by_spec[spec]
    sems = {name: asyncio.Semaphore(cfg.role_concurrency) for name in base}
    tasks = {"m1:generate": "m1", "m2:generate": "m2", "m1:solve": "m1", "m2:solve": "m2",
             "m3:obfuscate": "m3", "m3:solve": "m3", "judge": "judge"}
    for key, role in tasks.items():
        ctx.clients[key] = AccountedClient(base[role], key, ctx.usage, sems[role])


# --------------------------------------------------------------------------------------------------- one item
def _traj_record(ref: str, item_id: str, role: str, traj) -> dict:
    rec = {"ref": ref, "item": item_id, "role": role, "kind": "agent"}
    rec.update(traj.model_dump(mode="json"))
    return rec


async def _run_agent(ctx: _Ctx, key: str, question: str, item_id: str, seed: int):
    from fathom.agent import run_agent

    role = key.split(":")[0]
    if is_expert(getattr(ctx.cfg, role, None)):
        from fathom.web.offline.expert import expert_agent_config

        acfg = expert_agent_config(max_result_chars=ctx.cfg.expert_max_result_chars, seed=seed)
    else:
        acfg = ctx.cfg.agent.agent_config(seed=seed)
    traj = await run_agent(question, ctx.client(key), ctx.tools[key], acfg)
    ref = f"{item_id}/{key}"
    ctx.trajs.append(_traj_record(ref, item_id, role, traj))
    if traj.status == "error" and (traj.error or "").startswith("generation failed"):
        # the agent loop turns endpoint failures (after its retries) into status=error: that is an outage, not a
        # rejection, so the item is not recorded and the next run retries it
        raise LLMError(f"{key}: {traj.error}", retryable=True)
    return traj, ref


async def _generate(ctx: _Ctx, plan: ItemPlan, rec: dict) -> tuple[Candidate | None, list[str] | None]:
    cfg = ctx.cfg
    if ctx.source in ("truth", "world"):
        if ctx.truth is None or plan.index >= len(ctx.truth) or ctx.truth[plan.index] is None:
            rec["reason"] = "truth_exhausted"
            return None, None
        qa = ctx.truth[plan.index]
        hops = [Hop(fact=str(h.get("fact", "")), url=str(h.get("url", "")),
                    date=None if h.get("date") is None else str(h.get("date"))) for h in qa.hops]
        rec["truth_id"] = qa.id
        rec["world_hops"] = [dict(h) for h in qa.hops]
        return Candidate(question=qa.question, answer=qa.answer, hops=hops), None
    key = f"{plan.generator}:generate"
    traj, ref = await _run_agent(ctx, key, gather_task(plan, cfg.cutoff), plan.id, plan.rng_seed)
    rec["transcripts"]["generator"] = ref
    evidence, urls = evidence_from_trajectory(traj, cfg.evidence_chars)
    msgs = compose_messages(plan, cfg.cutoff, evidence, urls)
    out = await ctx.client(key).chat(msgs, max_tokens=cfg.compose_max_tokens, temperature=0.7, seed=plan.rng_seed)
    cref = f"{plan.id}/{key}/compose"
    ctx.trajs.append({"ref": cref, "item": plan.id, "role": plan.generator, "kind": "chat", "messages": msgs,
                      "reply": out.text})
    rec["transcripts"]["compose"] = cref
    cand, reason = parse_candidate(out.text)
    if cand is None:
        rec["reason"] = reason
    return cand, urls


async def _solve_no_search(ctx: _Ctx, question: str, item_id: str) -> tuple[str | None, str]:
    from fathom.agent import extract_boxed

    msgs = [{"role": "system", "content": NO_SEARCH_SYSTEM}, {"role": "user", "content": f"Q: {question}\nA:"}]
    out = await ctx.client("m3:solve").chat(msgs, max_tokens=ctx.cfg.no_search_max_tokens, temperature=0.0)
    ref = f"{item_id}/m3:solve"
    ctx.trajs.append({"ref": ref, "item": item_id, "role": "m3", "kind": "chat", "messages": msgs,
                      "reply": out.text})
    answer = extract_boxed(out.text)
    if answer is None and out.text.strip():
        answer = out.text.strip()[:300]  # judged leniently below: M3 must clearly fail
    return answer, ref


async def _verify(ctx: _Ctx, plan: ItemPlan, question: str, gold: str):
    cfg = ctx.cfg
    if ctx.expert is not None and ctx.truth is not None and ctx.truth[plan.index] is not None:
        ctx.expert.register(question, ctx.truth[plan.index].hops)  # the path the question was composed from
    (t1, r1), (t2, r2), (a3, r3) = await asyncio.gather(
        _run_agent(ctx, "m1:solve", question, plan.id, plan.rng_seed + 1),
        _run_agent(ctx, "m2:solve", question, plan.id, plan.rng_seed + 2),
        _solve_no_search(ctx, question, plan.id),
    )
    judge = ctx.client("judge")
    if ctx.source == "world" and cfg.roles()["judge"].is_local:
        judge = None  # world answers are printed verbatim on the site: matching decides (see DuetQAConfig.judge)
    kw = {"max_tokens": cfg.judge_max_tokens}
    v1, v2, v3 = await asyncio.gather(
        judge_answer(question, gold, t1.answer, judge, transcript_ref=r1, **kw),
        judge_answer(question, gold, t2.answer, judge, transcript_ref=r2, **kw),
        judge_answer(question, gold, a3, judge, transcript_ref=r3, **kw),
    )
    v1.status, v1.tool_calls = t1.status, len(t1.tool_calls)
    v2.status, v2.tool_calls = t2.status, len(t2.tool_calls)
    v3.status = "answered" if a3 else "no_answer"
    # lenient for the no-search solver: a reply that contains the gold answer counts as solved
    ng = normalize_answer(gold)
    if not v3.correct and a3 and ng and f" {ng} " in f" {normalize_answer(a3)} ":
        v3.correct, v3.method = True, "normalized"
    if t1.answer is not None and t2.answer is not None:
        agree = await judge_answer(question, t1.answer, t2.answer, judge, transcript_ref=f"{r1}|{r2}", **kw)
    else:
        agree = Verdict(answer=t2.answer, correct=False, method="no_answer", transcript_ref=f"{r1}|{r2}")
    return verification(v1, v2, v3, agree)


def _leak(ctx: _Ctx, *questions: str) -> str | None:
    """`eval_overlap:<reason>:<evaluation key>` when a question overlaps an evaluation set (decontam)."""
    if ctx.leakage is None:
        return None
    for q in questions:
        hit = ctx.leakage.match(q)
        if hit:
            return f"eval_overlap:{hit[0]}:{hit[1]}"
    return None


def _world_obfuscate(ctx: _Ctx, plan: ItemPlan, cand: Candidate, rec: dict) -> str | None:
    """The deterministic world-grounded obfuscation; returns the rejection reason or None."""
    from fathom.selfplay.world import obfuscate_world_question

    question, kind, desc = obfuscate_world_question(ctx.world, ctx.truth[plan.index])
    rec.update(obfuscation=kind, descriptor=desc, question=question)
    return check_question(question, cand.answer, ctx.cfg.filters) or _leak(ctx, question)


async def _model_obfuscate(ctx: _Ctx, plan: ItemPlan, cand: Candidate, rec: dict) -> str | None:
    cfg = ctx.cfg
    msgs = obfuscation_messages(cand.question)
    out = await ctx.client("m3:obfuscate").chat(msgs, max_tokens=cfg.obfuscate_max_tokens, temperature=0.3,
                                                seed=plan.rng_seed)
    oref = f"{plan.id}/m3:obfuscate"
    ctx.trajs.append({"ref": oref, "item": plan.id, "role": "m3", "kind": "chat", "messages": msgs,
                      "reply": out.text})
    rec["transcripts"]["obfuscator"] = oref
    question = clean_obfuscation(out.text)
    rec.update(question=question, obfuscation="model")
    return check_obfuscation(cand.question, question, cand.answer) or _leak(ctx, question)


async def process_item(ctx: _Ctx, plan: ItemPlan) -> dict:
    """Run one item through the funnel; returns its record (stage reached, status, reason, verdicts)."""
    cfg = ctx.cfg
    src = ctx.source
    planned = src == "model"
    rec: dict[str, Any] = {
        "id": plan.id, "index": plan.index, "mode": plan.mode if planned else src,
        "source": src, "themes": plan.themes if planned else [],
        "seed_id": plan.seed.id if plan.seed and planned else None,
        "generator": plan.generator, "stage": "planned", "status": "rejected", "reason": None,
        "transcripts": {}, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    cand, explored = await _generate(ctx, plan, rec)
    if cand is None:
        return rec
    rec.update(stage="generated", original_question=cand.question, answer=cand.answer,
               hops=[h.model_dump() for h in cand.hops], themes_used=cand.themes_used)
    if src == "world":
        # the world's evidence path is the ground truth (1-3 hops on distinct pages, fictional, so no date rule)
        reason = check_answer(cand.answer, cfg.filters) or check_question(cand.question, cand.answer, cfg.filters)
    else:
        filters = cfg.filters
        if src == "truth":  # the offline world is fictional: no model knows it without search, dates aside
            filters = filters.model_copy(update={"require_post_cutoff": False})
        reason = check_candidate(cand, filters, cfg.cutoff, explored)
    reason = reason or _leak(ctx, cand.question)
    if reason:
        rec["reason"] = reason
        return rec
    rec["stage"] = "checked"
    if src == "world":
        reason = _world_obfuscate(ctx, plan, cand, rec)
    else:
        reason = await _model_obfuscate(ctx, plan, cand, rec)
    if reason:
        rec["reason"] = reason
        return rec
    question = rec["question"]
    rec["stage"] = "obfuscated"
    ver = await _verify(ctx, plan, question, cand.answer)
    rec["verification"] = {k: getattr(ver, k).model_dump() for k in ("m1", "m2", "m3", "agreement")}
    if not ver.keep:
        rec["reason"] = ver.reason
        return rec
    rec.update(stage="verified", status="verified")
    return rec


# --------------------------------------------------------------------------------------------------- the run
async def arun_duetqa(cfg: DuetQAConfig, out_dir: Path, *, tools=None, web=None,
                      clients: dict[str, LLMClient] | None = None,
                      on_record: Callable[[dict], None] | None = None, show_progress: bool = True) -> DuetQAResult:
    """Process every pending item, then finalise the dataset. `tools` is an agent `Tools` (e.g. `HttpTools`);
    `web` an `OfflineWeb` (needed by the world and truth sources); `clients` overrides role clients by role name.
    Raises :class:`~fathom.errors.EmptyStageError` (after writing every output) when no row is kept."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    themes, seeds = load_themes(cfg.themes_path), load_seeds(cfg.seeds_path)
    _check_meta(cfg, out_dir, bank_version(cfg.themes_path), bank_version(cfg.seeds_path))
    ctx = _Ctx(cfg, out_dir)
    if ctx.source in ("truth", "world"):
        if web is None:
            raise ConfigError(f"source={ctx.source!r} needs the offline web (its ground truth gives the answers)")
        if ctx.source == "truth":
            ctx.truth = list(web.questions(cfg.n, hops=2, seed=cfg.seed))
        else:
            from fathom.selfplay.world import plan_world_questions

            ctx.world = web.world
            ctx.truth = plan_world_questions(web, cfg.n, cfg.world_hops, cfg.seed)
    if ctx.source == "model":
        if is_expert(cfg.m1) or is_expert(cfg.m2):
            raise ConfigError("source='model' needs generator endpoints for M1 and M2; the expert "
                              f"({cfg.m1 if is_expert(cfg.m1) else cfg.m2}) only solves world questions "
                              "(use source='world' or 'auto')")
        if tools is None:
            raise ConfigError("source='model' needs tools for the search agents")
    if tools is None and (is_expert(cfg.m1) or is_expert(cfg.m2)):
        raise ConfigError("the expert search solver needs tools (the tool server serving the offline web)")
    if cfg.filters.leakage_check:
        ctx.leakage = decontaminator(DecontamConfig(benchmarks_dir=cfg.filters.benchmarks_dir,
                                                    near_threshold=cfg.filters.near_dup_threshold,
                                                    num_perm=cfg.filters.num_perm))
    plans = [plan_item(i, seed=cfg.seed, themes=themes, seeds=seeds, mode=cfg.mode,
                       seeded_fraction=cfg.seeded_fraction, k_choices=cfg.k_choices) for i in range(cfg.n)]
    done = set(ctx.items.latest_by_id())
    pending = [p for p in plans if p.id not in done]
    if cfg.max_items is not None:
        pending = pending[: cfg.max_items]
    stopped_by: str | None = None
    t0 = time.perf_counter()
    async with AsyncExitStack() as stack:
        await _build_clients(ctx, stack, clients)
        if tools is not None:
            for key in ("m1:generate", "m2:generate", "m1:solve", "m2:solve"):
                ctx.tools[key] = AccountedTools(tools, key, ctx.usage)
        try:
            stopped_by = await _process_all(ctx, pending, len(done), on_record, show_progress)
        finally:
            ctx.runs.append({"finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "items": len(pending), "wall_s": round(time.perf_counter() - t0, 3),
                             "stopped_by": stopped_by, "usage": ctx.usage.as_dict()})
    res = finalize_duetqa(cfg, out_dir, stopped_by=stopped_by)
    if res.kept == 0:
        raise EmptyStageError("duetqa", res.funnel, res.rejections, out_dir=str(out_dir),
                              hint=_empty_hint(ctx.source, res), result=res)
    return res


def _empty_hint(source: str, res: DuetQAResult) -> str:
    if not res.complete:
        return "the run stopped early; rerun the same command to resume"
    if source == "model":
        return ("self-play needs capable endpoints for M1/M2/M3; on the embedded default use the world source "
                "(m1 = m2 = 'expert:offline-web', source auto|world)")
    return "see candidates.jsonl for each item's rejection reason"


async def _process_all(ctx: _Ctx, pending: list[ItemPlan], n_done: int, on_record, show_progress) -> str | None:
    cfg = ctx.cfg
    return await run_pool(pending, lambda plan: process_item(ctx, plan), label="duetqa", n_total=cfg.n,
                          n_done=n_done, max_in_flight=cfg.max_in_flight, usage=ctx.usage, max_tokens=cfg.max_tokens,
                          max_errors=cfg.max_errors, items_log=ctx.items, errors_log=ctx.errors,
                          on_record=on_record, show_progress=show_progress)


# --------------------------------------------------------------------------------------------------- finalise
def _verdict_row(v: dict | None) -> dict:
    v = v or {}
    return {"answer": v.get("answer"), "correct": bool(v.get("correct", False)), "method": v.get("method"),
            "judge_raw": v.get("judge_raw"), "transcript_ref": v.get("transcript_ref"), "status": v.get("status"),
            "tool_calls": int(v.get("tool_calls") or 0)}


_GENERATOR = {"truth": "offline-web-truth", "world": "offline-web-graph"}
_OBFUSCATOR = {"world": "offline-web-descriptor"}


def _row(rec: dict, models: dict[str, str]) -> dict:
    ver = rec.get("verification") or {}
    gen_role = rec.get("generator", "m1")
    hops = [{"fact": str(h.get("fact", "")), "url": str(h.get("url", "")),
             "date": None if h.get("date") is None else str(h.get("date"))} for h in rec.get("hops", [])]
    return {
        "id": rec["id"], "question": rec["question"], "answer": rec["answer"],
        "original_question": rec.get("original_question"), "themes": list(rec.get("themes") or []),
        "mode": rec.get("mode"), "source": rec.get("source"), "obfuscation": rec.get("obfuscation"),
        "seed_id": rec.get("seed_id"), "hops": hops,
        "sources": list(dict.fromkeys(h["url"] for h in hops if h["url"])),
        "verification": {k: _verdict_row(ver.get(k)) for k in ("m1", "m2", "m3", "agreement")},
        "created_at": rec.get("created_at"),
        "generator_models": {"generator": _GENERATOR.get(rec.get("source"), models[gen_role]),
                             "obfuscator": _OBFUSCATOR.get(rec.get("source"), models["m3"]), "solver_m1": models["m1"], "solver_m2": models["m2"],
                             "solver_m3": models["m3"], "judge": models["judge"]},
    }


def finalize_duetqa(cfg: DuetQAConfig, out_dir: Path, *, stopped_by: str | None = None) -> DuetQAResult:
    """Dedup the verified items and write the dataset, the RL rows, the candidates file and the card.
    Idempotent: it reads only the work logs."""
    out_dir = Path(out_dir)
    items = AppendLog(out_dir / "work" / "items.jsonl").latest_by_id()
    recs = sorted(items.values(), key=lambda r: r.get("index", 0))
    verified = [r for r in recs if r.get("status") in ("verified", "kept")]
    kept_ids, dropped = dedup([(r["id"], r["question"]) for r in verified],
                              threshold=cfg.filters.near_dup_threshold, num_perm=cfg.filters.num_perm)
    kept_set = set(kept_ids)
    rejections: Counter[str] = Counter()
    candidates = []
    for r in recs:
        r = dict(r)
        if r["id"] in dropped:
            reason, other = dropped[r["id"]]
            r.update(status="rejected", reason=f"{reason}_of:{other}")
        elif r["id"] in kept_set:
            r.update(status="kept", stage="kept")
        if r["status"] == "rejected":
            rejections[(r.get("reason") or "unknown").split(":")[0]] += 1
        candidates.append(r)
    order = {s: i for i, s in enumerate(STAGES)}
    funnel = {s: sum(1 for r in candidates if order.get(r.get("stage", "planned"), 0) >= i)
              for i, s in enumerate(STAGES)}
    models = cfg.describe_roles()
    rows = [_row(r, models) for r in candidates if r["status"] == "kept"]
    save_dataset(rows, row_features(), out_dir, name="duetqa")
    # `source` names the dataset and the generator that produced the row (duetqa-world | duetqa-model | ...);
    # `hops` the evidence path length (stage 2 keeps >= 3-hop questions)
    rl_rows = [{"prompt": r["question"], "answer": r["answer"], "id": r["id"], "source": f"duetqa-{r['source']}",
                "hops": len(r["hops"])} for r in rows]
    save_dataset(rl_rows, rl_features(), out_dir / "rl", name="rl")
    write_jsonl(candidates, out_dir / "candidates.jsonl")
    usage = Usage()
    for run in AppendLog(out_dir / "work" / "runs.jsonl"):
        usage.merge(run.get("usage") or {})
    complete = len(recs) >= cfg.n
    notes = _notes(cfg, len(rows), complete, stopped_by)
    notes.append("Rows by source: " + (", ".join(f"{k} {v}" for k, v in sorted(Counter(r["source"] for r in rows)
                                                                                 .items())) or "none")
                 + "; by hop count: " + (", ".join(f"{k} {v}" for k, v in sorted(Counter(len(r["hops"]) for r in rows)
                                                                                  .items())) or "none")
                 + "; by obfuscation: " + (", ".join(f"{k} {v}" for k, v in sorted(Counter(
                     str(r["obfuscation"]) for r in rows).items())) or "none") + ".")
    overlaps = Counter(str(r.get("reason")).split(":")[1] for r in candidates
                       if str(r.get("reason") or "").startswith("eval_overlap:"))
    notes.append("Decontamination (questions overlapping an evaluation set — data/benchmarks/*.jsonl and the "
                 "held-out offline-web world — are rejected as `eval_overlap`): "
                 + (", ".join(f"{k} {v}" for k, v in sorted(overlaps.items())) or "0 dropped") + ".")
    card = dataset_card(
        title="DuetQA (fathom self-play)",
        summary=("Multi-hop, search-dependent QA pairs generated by multi-agent self-play (Fathom-DeepResearch "
                 "§2.1): a search-enabled generator chains facts across sampled themes, a no-search model obfuscates "
                 "the question, and a pair is kept only if two search-enabled solvers answer it correctly and agree "
                 "while the no-search solver fails."),
        funnel=[(s, funnel[s]) for s in STAGES], rejections=dict(rejections), usage=usage.as_dict(),
        config=cfg.public_dict(),
        files={"hf/": "`datasets.load_from_disk` folder of the kept rows",
               "data/train-00000-of-00001.parquet": "kept rows as Parquet",
               "duetqa.jsonl": "kept rows as JSONL",
               "candidates.jsonl": "every processed item with its funnel stage, verdicts and rejection reason",
               "rl/": "rows for RL (`prompt`, `answer`, `id`, `source`): hf/, data/, rl.jsonl",
               "work/trajectories.jsonl": "every transcript, referenced by `transcript_ref`"},
        notes=notes, tags=["question-answering", "synthetic", "self-play"])
    write_text_atomic(out_dir / "README.md", card)
    return DuetQAResult(out_dir=out_dir, n_planned=cfg.n, n_done=len(recs), kept=len(rows), funnel=funnel,
                        rejections=dict(rejections), usage=usage.as_dict(), complete=complete, stopped_by=stopped_by)


def _notes(cfg: DuetQAConfig, kept: int, complete: bool, stopped_by: str | None) -> list[str]:
    notes = []
    source = cfg.resolved_source()
    if source == "model" and any(r.is_local for r in cfg.roles().values()):
        notes.append("Roles ran on an in-process local model. The embedded default (SmolLM2-135M-Instruct) rarely "
                     "searches or writes valid candidates, so most items are rejected: the funnel above is the "
                     "expected outcome of an embedded run, not a fault.")
    if source == "world":
        notes.append("Source `world` (the embedded default): questions are composed from the offline web's graph "
                     "(1-3 hops, `world_hops`); the starting entity's name is replaced by a unique descriptor built "
                     "from its own facts (`obfuscation: entity_descriptor`; `none` when no descriptor qualifies); "
                     "a row is kept only if the expert search policy reaches the answer through the tool server "
                     "(M1 and M2) and the no-search solver M3 fails.")
    if source == "truth":
        notes.append("Test mode `source=truth`: candidates are the offline web's ground-truth questions; the solvers "
                     "are judged against the known answers.")
    if kept == 0:
        notes.append("No row was kept. `datasets.load_from_disk('hf')` loads it (zero rows, with the schema); "
                     "`load_dataset('json'|'parquet')` refuses empty files, so read `candidates.jsonl` (never empty) for "
                     "the rejected items and their reasons.")
    if not complete:
        notes.append(f"The run is incomplete (stopped by {stopped_by or 'a budget or an interruption'}); rerun the "
                     "same command to resume.")
    return notes


def run_duetqa(cfg: DuetQAConfig, out_dir: Path, *, tools_url: str | None = None, **kw) -> DuetQAResult:
    """Synchronous entry point. With `tools_url`, the agents use that tool server; otherwise the embedded offline
    stack (offline web + index + tool server on loopback) is started for the run."""
    from fathom.agent import HttpTools
    from fathom.web.client import ToolClient

    async def go(url: str | None, web) -> DuetQAResult:
        tools = None
        if url:
            client = ToolClient(url)
            tools = HttpTools(client, cfg.tools_preset)
        try:
            return await arun_duetqa(cfg, out_dir, tools=tools, web=web, **kw)
        finally:
            if url:
                await client.aclose()

    if tools_url:
        web = None
        if cfg.resolved_source() in ("truth", "world"):
            from fathom.web.offline import ensure_offline_web

            web = ensure_offline_web(seed=cfg.offline_seed, n_pages=cfg.offline_pages)
        return asyncio.run(go(tools_url, web))
    from fathom.web.stack import EMBEDDED_READER, offline_stack

    # the world source reads pages like the expert's other runs (warm start, RAPO, evaluation): the deterministic
    # reader; self-play reads them with M3
    reader = dict(EMBEDDED_READER) if cfg.resolved_source() == "world" else {"query_llm": cfg.m3}
    with offline_stack(seed=cfg.offline_seed, n_pages=cfg.offline_pages, **reader) as stack:
        return asyncio.run(go(stack.tools_url, stack.web))
