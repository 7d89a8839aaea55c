"""The DeepResearch-SFT corpus runner: rewrite -> search trace -> teacher report -> filters; resumable.

Output folder ``DIR``::

    DIR/hf/, DIR/data/*.parquet, DIR/sft.jsonl   accepted chat rows: messages = [system, user, assistant]
    DIR/rejected.jsonl                            rejected items, with the teacher's output and the reasons
    DIR/README.md                                 dataset card with the funnel counts
    DIR/work/{items,trajectories,errors,runs}.jsonl   append-only logs (resume skips finished ids)

Sources (``SFTCorpusConfig.source``): ``model`` (seed rewrite, search agent, LLM teacher) on endpoints; ``world``
(the embedded default: an entity brief, the expert's trace through the tool server, the deterministic world
teacher — :mod:`fathom.sftdata.world`). A run that accepts no row raises :class:`~fathom.errors.EmptyStageError`
after writing its outputs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fathom.datasets_io import AppendLog, FunnelResult, dataset_card, save_dataset, write_jsonl, write_text_atomic
from fathom.errors import ConfigError, EmptyStageError, LLMError
from fathom.llm.base import LLMClient
from fathom.selfplay.accounting import AccountedClient, AccountedTools, Usage
from fathom.selfplay.banks import load_themes
from fathom.selfplay.work import StageWork, run_pool
from fathom.sftdata.config import SFTCorpusConfig, is_expert
from fathom.sftdata.filters import check_report

STAGES = ["planned", "rewritten", "traced", "written", "accepted"]

REWRITE_SYSTEM = "You write open-ended research questions. Output only the question, on one line."


class OpenSeed(BaseModel):
    id: str
    question: str
    domain: str | None = None


class SFTPlan(BaseModel):
    id: str
    index: int
    seed: OpenSeed
    themes: list[str]
    rng_seed: int


class SFTCorpusResult(FunnelResult):
    accepted: int


def sft_features():
    from datasets import Features, List, Value

    return Features({
        "id": Value("string"), "question": Value("string"), "seed_id": Value("string"),
        "themes": List(Value("string")),
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "trace_urls": List(Value("string")), "cited_urls": List(Value("string")), "word_count": Value("int32"),
        "tool_calls": Value("int32"), "transcript_ref": Value("string"), "created_at": Value("string"),
        "policy": Value("string"), "teacher": Value("string"), "source": Value("string"),
    })


def load_open_seeds(path: Path) -> list[OpenSeed]:
    import json

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"seed file {path} does not exist")
    seeds = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                seeds.append(OpenSeed.model_validate(json.loads(line)))
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"{path}:{n}: not a seed record {{id, question}}: {exc}") from exc
    if not seeds:
        raise ConfigError(f"seed file {path} holds no seeds")
    return seeds


def plan_sft_item(index: int, *, seed: int, seeds: list[OpenSeed], themes: list[str], k: int) -> SFTPlan:
    rng = random.Random(int.from_bytes(hashlib.sha256(f"sft:{seed}:{index}".encode()).digest()[:8], "big"))
    s = rng.choice(seeds)
    return SFTPlan(id=f"sft-{seed}-{index:06d}", index=index, seed=s, themes=rng.sample(themes, k) if k else [],
                   rng_seed=rng.randrange(2**31))


def rewrite_messages(seed_q: str, themes: list[str]) -> list[dict]:
    theme = ", ".join(themes) if themes else "any recent development"
    return [{"role": "system", "content": REWRITE_SYSTEM},
            {"role": "user", "content": (
                f"Seed question: {seed_q}\nTheme: {theme}\n"
                "Rewrite the seed into one new open-ended research question that keeps its intent but is set in "
                "the theme. Output only the question.")}]


def clean_rewrite(text: str) -> str | None:
    """The rewritten question, or None when unusable (empty, not a question, too short/long)."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = line.removeprefix("Question:").strip().strip('"“”').strip()
    if not (20 <= len(line) <= 400) or "?" not in line:
        return None
    return line[: line.rindex("?") + 1]


def template_rewrite(seed_q: str, themes: list[str]) -> str:
    if not themes:
        return seed_q
    return f"{seed_q.rstrip('?').rstrip()}, with a focus on {themes[0].lower()}?"


class _Ctx(StageWork):
    def __init__(self, cfg: SFTCorpusConfig, out: Path):
        super().__init__(out)
        self.cfg = cfg
        self.clients: dict[str, AccountedClient] = {}
        self.tools = None
        self.source = cfg.resolved_source()
        self.world = None  # the offline World (world source)
        self.expert = None  # the ExpertPolicy (expert policy)


def _agent_config(ctx: _Ctx, plan: SFTPlan, n_hops: int | None):
    if is_expert(ctx.cfg.policy):
        from fathom.web.offline.expert import expert_agent_config

        hops = n_hops or 4
        return expert_agent_config(max_result_chars=ctx.cfg.expert_max_result_chars, max_turns=2 * hops + 2,
                                   max_total_tokens=4096 + 1024 * hops, seed=plan.rng_seed)
    return ctx.cfg.agent.agent_config(seed=plan.rng_seed)


async def process_sft_item(ctx: _Ctx, plan: SFTPlan) -> dict:
    from fathom.agent import run_agent
    from fathom.synth import build_synth_messages, parse_report, trajectory_urls

    cfg = ctx.cfg
    rec: dict[str, Any] = {"id": plan.id, "index": plan.index, "seed_id": plan.seed.id, "themes": plan.themes,
                           "stage": "planned", "status": "rejected", "reasons": [],
                           "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    wplan = None
    if ctx.source == "world":
        from fathom.sftdata.world import plan_world_report

        wplan = plan_world_report(ctx.world, plan.index, cfg.seed, max_related=cfg.world_related,
                                  attrs_per_entity=cfg.world_attrs)
        question = wplan.question
        rec.update(rewrite="world", entity=wplan.entity_id, seed_id=f"world:{wplan.entity_id}", themes=[])
        if ctx.expert is not None:
            ctx.expert.register(question, wplan.hops)
    else:
        out = await ctx.clients["rewriter"].chat(rewrite_messages(plan.seed.question, plan.themes),
                                                max_tokens=cfg.rewrite_max_tokens, temperature=0.7, seed=plan.rng_seed)
        question = clean_rewrite(out.text)
        rec["rewrite"] = "model" if question else "template"
        question = question or template_rewrite(plan.seed.question, plan.themes)
    rec.update(stage="rewritten", question=question, source=ctx.source)
    traj = await run_agent(question, ctx.clients["policy"], ctx.tools,
                           _agent_config(ctx, plan, len(wplan.hops) if wplan else None))
    if traj.status == "error" and (traj.error or "").startswith("generation failed"):
        raise LLMError(f"policy: {traj.error}", retryable=True)
    ref = f"{plan.id}/policy"
    ctx.trajs.append({"ref": ref, "item": plan.id, "role": "policy", "kind": "agent",
                      **traj.model_dump(mode="json")})
    urls = sorted(trajectory_urls(traj))
    rec.update(stage="traced", transcript_ref=ref, trace_urls=urls, tool_calls=len(traj.tool_calls),
               agent_status=traj.status)
    if is_expert(cfg.teacher):
        from fathom.sftdata.world import world_report

        if wplan is None:
            raise ConfigError("the world report teacher (expert:offline-web) writes only world-source items")
        msgs = build_synth_messages(question, traj, template=cfg.synth_template,
                                    max_prompt_tokens=cfg.teacher_max_prompt_tokens,
                                    count_tokens=lambda t: max(1, len(t) // 4))
        text, finish = world_report(ctx.world, wplan, traj, claims_per_section=cfg.world_claims), "stop"
    else:
        teacher = ctx.clients["teacher"]
        msgs = build_synth_messages(question, traj, template=cfg.synth_template,
                                    max_prompt_tokens=cfg.teacher_max_prompt_tokens, count_tokens=teacher.count_tokens)
        out = await teacher.chat(msgs, max_tokens=cfg.teacher_max_tokens, temperature=cfg.teacher_temperature,
                                 seed=plan.rng_seed)
        text, finish = out.text, out.finish_reason
    rep = parse_report(text, set(urls))
    reasons = check_report(rep, cfg.filters)
    if finish == "length":
        reasons.append("truncated")
    rec.update(stage="written", messages=[*msgs, {"role": "assistant", "content": text}],
               cited_urls=rep.cited_urls, word_count=rep.word_count, reasons=reasons,
               report_check={"missing_sections": rep.missing_sections, "unsupported_urls": rep.unsupported_urls,
                             "sources_not_cited": rep.sources_not_cited,
                             "cited_not_in_sources": rep.cited_not_in_sources})
    if not reasons:
        rec.update(stage="accepted", status="accepted")
    return rec


async def arun_sft_corpus(cfg: SFTCorpusConfig, out_dir: Path, *, tools, clients: dict[str, LLMClient] | None = None,
                          on_record: Callable[[dict], None] | None = None,
                          show_progress: bool = True, web=None) -> SFTCorpusResult:
    """Process every pending item, then finalise. `web` (an OfflineWeb) is needed by the world source; without it
    the world of ``cfg.offline_seed``/``offline_pages`` is loaded. Raises EmptyStageError when nothing is
    accepted."""
    from fathom.llm import make_client

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds, themes = load_open_seeds(cfg.seeds_path), load_themes(cfg.themes_path)
    ctx = _Ctx(cfg, out_dir)
    if ctx.source == "world":
        if web is None:
            from fathom.web.offline import ensure_offline_web

            web = ensure_offline_web(seed=cfg.offline_seed, n_pages=cfg.offline_pages)
        ctx.world = web.world
    elif is_expert(cfg.policy) or is_expert(cfg.teacher):
        raise ConfigError("source='model' needs model roles for the policy and the teacher; the expert "
                          "(expert:offline-web) works on world items only (use source='world' or 'auto')")
    if is_expert(cfg.policy):
        from fathom.web.offline.expert import ExpertPolicy

        ctx.expert = ExpertPolicy()
        ctx.clients["policy"] = AccountedClient(ctx.expert, "policy", ctx.usage, cfg.role_concurrency)
    plans = [plan_sft_item(i, seed=cfg.seed, seeds=seeds, themes=themes, k=cfg.themes_per_item)
             for i in range(cfg.n)]
    done = set(ctx.items.latest_by_id())
    pending = [p for p in plans if p.id not in done]
    if cfg.max_items is not None:
        pending = pending[: cfg.max_items]
    stopped_by = None
    t0 = time.perf_counter()
    async with AsyncExitStack() as stack:
        by_spec: dict[str, LLMClient] = {}
        for name, role in cfg.roles().items():
            if clients and name in clients:
                inner = clients[name]
            else:
                spec = role.model_dump_json()
                if spec not in by_spec:
                    by_spec[spec] = make_client(role)
                    stack.push_async_callback(by_spec[spec].aclose)
                inner = by_spec[spec]
            ctx.clients[name] = AccountedClient(inner, name, ctx.usage, cfg.role_concurrency)
        ctx.tools = AccountedTools(tools, "policy", ctx.usage)
        try:
            stopped_by = await run_pool(
                pending, lambda p: process_sft_item(ctx, p), label="sft-corpus", n_total=cfg.n, n_done=len(done),
                max_in_flight=cfg.max_in_flight, usage=ctx.usage, max_tokens=cfg.max_tokens,
                max_errors=cfg.max_errors, items_log=ctx.items, errors_log=ctx.errors, on_record=on_record,
                show_progress=show_progress)
        finally:
            ctx.runs.append({"finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "items": len(pending), "wall_s": round(time.perf_counter() - t0, 3),
                             "stopped_by": stopped_by, "usage": ctx.usage.as_dict()})
    res = finalize_sft_corpus(cfg, out_dir, stopped_by=stopped_by)
    if res.accepted == 0:
        hint = ("the run stopped early; rerun to resume" if not res.complete else
                "see rejected.jsonl for each item's reasons" + ("" if ctx.source == "world" else
                "; on the embedded default use the world source (policy and teacher 'expert:offline-web')"))
        raise EmptyStageError("sft-corpus", res.funnel, res.rejections, out_dir=str(out_dir), hint=hint, result=res)
    return res


def finalize_sft_corpus(cfg: SFTCorpusConfig, out_dir: Path, *, stopped_by: str | None = None) -> SFTCorpusResult:
    out_dir = Path(out_dir)
    recs = sorted(AppendLog(out_dir / "work" / "items.jsonl").latest_by_id().values(), key=lambda r: r["index"])
    roles = cfg.describe_roles()
    accepted = [{
        "id": r["id"], "question": r["question"], "seed_id": r["seed_id"], "themes": r.get("themes") or [],
        "messages": r["messages"], "trace_urls": r.get("trace_urls") or [], "cited_urls": r.get("cited_urls") or [],
        "word_count": int(r.get("word_count") or 0), "tool_calls": int(r.get("tool_calls") or 0),
        "transcript_ref": r.get("transcript_ref"), "created_at": r.get("created_at"),
        "policy": roles["policy"], "teacher": roles["teacher"], "source": r.get("source") or "model",
    } for r in recs if r.get("status") == "accepted"]
    rejected = [r for r in recs if r.get("status") != "accepted"]
    save_dataset(accepted, sft_features(), out_dir, name="sft")
    write_jsonl(rejected, out_dir / "rejected.jsonl")
    order = {s: i for i, s in enumerate(STAGES)}
    funnel = {s: sum(1 for r in recs if order.get(r.get("stage", "planned"), 0) >= i) for i, s in enumerate(STAGES)}
    rejections: Counter[str] = Counter()
    for r in rejected:
        for reason in r.get("reasons") or ["incomplete"]:
            rejections[reason.split(":")[0]] += 1
    usage = Usage()
    for run in AppendLog(out_dir / "work" / "runs.jsonl"):
        usage.merge(run.get("usage") or {})
    complete = len(recs) >= cfg.n
    notes = []
    by_source = Counter(r["source"] for r in accepted)
    notes.append("Rows by source: " + (", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or "none") + ".")
    if cfg.resolved_source() == "world":
        notes.append("Source `world` (the embedded default): each question asks for a brief on one offline-web "
                     "entity and its linked entities; the expert search policy gathered the evidence through the "
                     "tool server, and the world report teacher wrote the plan and report from the trace's page "
                     "readings only (a claim is a fact whose sentence appears in the reading of the cited page).")
    if cfg.resolved_source() == "model" and any(r.is_local for r in cfg.roles().values()):
        notes.append("Roles ran on an in-process local model. The embedded default (SmolLM2-135M-Instruct) cannot "
                     "write a cited, sectioned report, so nearly every item is rejected: expected for an embedded "
                     "run. Rejection reasons count every failed check of an item.")
    if not accepted:
        notes.append("No row was kept. `datasets.load_from_disk('hf')` loads it (zero rows, with the schema); "
                     "`load_dataset('json'|'parquet')` refuses empty files, so read `rejected.jsonl` (never empty) for "
                     "the rejected items and their reasons.")
    if not complete:
        notes.append(f"Incomplete run (stopped by {stopped_by or 'a budget or an interruption'}): rerun to resume.")
    card = dataset_card(
        title="DeepResearch-SFT (fathom)",
        summary=("Plan-then-write synthesizer data (Fathom-DeepResearch §3.1): open-ended seed questions rewritten "
                 "across sampled themes, a search-agent trace per question, and a teacher's "
                 "`<think>plan</think>report` kept only if it has the required sections, follows its plan, cites only "
                 "URLs from the trace and lists exactly the cited URLs under 'Sources used'. Rows are chat messages "
                 "(system, user = question + cleaned trace + tool calls, assistant = plan + report)."),
        funnel=[(s, funnel[s]) for s in STAGES], rejections=dict(rejections), usage=usage.as_dict(),
        config=cfg.model_dump(mode="json"),
        files={"hf/": "`datasets.load_from_disk` folder of the accepted rows",
               "data/train-00000-of-00001.parquet": "accepted rows as Parquet", "sft.jsonl": "accepted rows as JSONL",
               "rejected.jsonl": "rejected items with the teacher output and the reasons",
               "work/trajectories.jsonl": "the search traces, referenced by `transcript_ref`"},
        notes=notes, tags=["text-generation", "synthetic", "deep-research"])
    write_text_atomic(out_dir / "README.md", card)
    return SFTCorpusResult(out_dir=out_dir, n_planned=cfg.n, n_done=len(recs), accepted=len(accepted),
                           funnel=funnel, rejections=dict(rejections), usage=usage.as_dict(), complete=complete,
                           stopped_by=stopped_by)


def run_sft_corpus(cfg: SFTCorpusConfig, out_dir: Path, *, tools_url: str | None = None, **kw) -> SFTCorpusResult:
    """Synchronous entry point; without `tools_url` the embedded offline stack is started for the run."""
    from fathom.agent import HttpTools
    from fathom.web.client import ToolClient

    async def go(url: str, web=None) -> SFTCorpusResult:
        client = ToolClient(url)
        try:
            return await arun_sft_corpus(cfg, out_dir, tools=HttpTools(client, cfg.tools_preset), web=web, **kw)
        finally:
            await client.aclose()

    if tools_url:
        return asyncio.run(go(tools_url))
    from fathom.web.stack import EMBEDDED_READER, offline_stack

    reader = dict(EMBEDDED_READER) if cfg.resolved_source() == "world" else {"query_llm": cfg.teacher}
    with offline_stack(seed=cfg.offline_seed, n_pages=cfg.offline_pages, **reader) as stack:
        return asyncio.run(go(stack.tools_url, stack.web))
