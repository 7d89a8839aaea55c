"""The evaluation runner: datasets x agent -> graded rows in ``results.jsonl`` -> ``metrics.json`` + reports.

Accounting is honest: every selected example yields exactly one row; an agent failure, a timeout or a failed judge
call is a row with ``status: "error"`` that counts as wrong. The run is resumable and idempotent:

* rows are appended (and flushed) as examples finish, so a crash loses at most the examples in flight; a torn last
  line from a crash is dropped on the next start;
* a rerun skips every ``(dataset, id)`` already in ``results.jsonl`` and appends only the missing ones;
* a rerun of a finished run (nothing missing, metrics and reports present) writes nothing at all;
* ``retry_errors`` drops the error rows first, so only they are run again;
* ``run.json`` pins what makes rows comparable (agent, policy, grading, sampling); resuming with a different
  setting is refused instead of mixing two runs in one file.

Output layout under ``out``: ``results.jsonl``, ``metrics.json``, ``run.json``, ``report.md``, ``report.html``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fathom.errors import ConfigError, FathomError
from fathom.evaluate.agents import AgentOutput, AgentSettings, EvalAgent, agent_spec, make_agent
from fathom.evaluate.datasets import Dataset, Example, load_dataset
from fathom.evaluate.graders import Grade, Grader, LLMJudge, choose_grader
from fathom.evaluate.stats import RunMetrics, compute_metrics
from fathom.storage import atomic_write_text

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
METRICS = "metrics.json"
RUN = "run.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


class EvalConfig(BaseModel):
    """One evaluation run (the CLI flags and the KFP component parameters map onto these fields)."""

    datasets: list[str] = Field(description="Benchmark names, JSONL paths, or 'offline-web'.")
    out: Path = Field(description="Run folder: results.jsonl, metrics.json, run.json, report.md, report.html.")
    name: str | None = Field(default=None, description="Run label in reports (default: agent + policy).")
    agent: AgentSettings = Field(default_factory=AgentSettings, description="The agent under evaluation.")
    judge: str | None = Field(default=None, description="Judge role for free-text answers (None: deterministic "
                              "graders only, the offline default).")
    grader: str | None = Field(default=None, description="Force one grader for every dataset "
                               "(mc|number|em|f1|auto|judge).")
    judge_concurrency: int = Field(default=8, ge=1, description="Judge calls in flight.")
    judge_max_tokens: int = Field(default=256, ge=8, description="Judge reply cap (rationale + grade line).")
    concurrency: int = Field(default=4, ge=1, description="Examples in flight.")
    example_timeout_s: float = Field(default=3600.0, gt=0, description="Wall-clock cap of one example.")
    limit: int | None = Field(default=None, ge=0, description="First N examples (after sample and shard).")
    sample: int | None = Field(default=None, ge=1, description="Seeded random subset of N examples.")
    seed: int = Field(default=0, description="Seed of --sample and of the bootstrap.")
    shard: str | None = Field(default=None, description="'i/n': every n-th example from offset i.")
    offline_n: int = Field(default=50, ge=1, description="Size of the generated offline-web benchmark.")
    web_seed: int = Field(default=0, description="Seed of the offline web (benchmark and served site).")
    web_pages: int = Field(default=120, ge=10, description="Pages of the offline web.")
    offline_hops: list[int] = Field(default=[1, 2], description="Hop counts of the offline-web benchmark's "
                                    "questions (split evenly).")
    query_llm: str = Field(default="none", description="Query-LLM role of the in-process tool server ('none': "
                           "the deterministic passage reader, as the embedded policy is trained).")
    retry_errors: bool = Field(default=False, description="Drop error rows first so they run again.")
    max_error_rate: float | None = Field(default=None, ge=0, le=1, description="Fail the run (RunResult.failed, "
                                         "`fathom eval` exits non-zero) when the share of error rows is above this.")
    store_transcripts: bool = Field(default=True, description="Keep full transcripts in results.jsonl.")
    report: bool = Field(default=True, description="Write report.md and report.html.")
    progress: bool = Field(default=True, description="Show a progress bar.")

    def run_name(self) -> str:
        return self.name or f"{self.agent.agent}:{self.agent.policy}"

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must not change within one results file."""
        a = self.agent
        return {"agent": agent_spec(a.agent).name, "policy": a.policy, "judge": self.judge, "grader": self.grader,
                "max_turns": a.max_turns, "max_tokens_per_turn": a.max_tokens_per_turn,
                "max_total_tokens": a.max_total_tokens, "temperature": a.temperature, "template": a.template,
                # fp32 is left out: results files written before the setting existed still resume
                **({"local_dtype": a.local_dtype} if a.local_dtype != "fp32" else {})}


class RunResult(BaseModel):
    out: Path
    metrics: RunMetrics | None
    new_rows: int
    skipped: int
    nothing_to_do: bool = False
    rows: int = Field(default=0, description="Rows of the selected examples in results.jsonl.")
    errors: int = Field(default=0, description="Of those, rows with status error.")
    failed: bool = Field(default=False, description="The error rate is above EvalConfig.max_error_rate.")

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0


# ---------------------------------------------------------------------------------------------------------------
# results.jsonl

def read_results(path: Path, *, repair: bool = True) -> list[dict]:
    """Rows of a results file. A torn last line (crash mid-write) is dropped (and the file repaired when
    ``repair``); a malformed line elsewhere is an error."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows: list[dict] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            is_last = all(not rest.strip() for rest in lines[i + 1:])
            if not is_last:
                raise FathomError(f"{path}:{i + 1}: malformed result row") from None
            log.warning("%s: dropping a torn last line (interrupted write)", path)
            if repair:
                atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def row_key(row: dict) -> tuple[str, str]:
    return (str(row.get("dataset")), str(row.get("id")))


def make_row(ex: Example, out: AgentOutput | None, grade: Grade | None, *, status: str, error: str | None,
             agent: str, model: str, latency_s: float, store_transcript: bool = True) -> dict[str, Any]:
    """One results.jsonl row."""
    o = out or AgentOutput(status="error")
    return {
        "dataset": ex.dataset, "id": ex.id, "question": ex.question, "answer_gt": ex.answer,
        "prediction": o.answer, "status": status, "error": error,
        "label": grade.label if grade else None, "correct": bool(grade and grade.correct and status == "ok"),
        "score": grade.score if grade else 0.0, "f1": grade.f1 if grade else None,
        "grader": grade.grader if grade else None, "rationale": grade.rationale if grade else None,
        "grade_error": grade.error if grade else None,
        "agent": agent, "model": model, "agent_status": o.status if out else "error",
        "turns": o.turns, "tool_calls": o.tool_calls, "tool_call_names": o.tool_call_names,
        "tool_errors": o.tool_errors, "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
        "agent_latency_s": round(o.latency_s, 4), "latency_s": round(latency_s, 4),
        "calls": o.calls, "transcript": o.transcript if store_transcript else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# the run

@contextlib.contextmanager
def _tool_server(cfg: EvalConfig, needs_tools: bool) -> Iterator[str | None]:
    """The configured tool server URL, or the in-process offline stack when none is given."""
    if not needs_tools or cfg.agent.tools_url:
        yield cfg.agent.tools_url
        return
    from fathom.web.stack import offline_stack

    with offline_stack(seed=cfg.web_seed, n_pages=cfg.web_pages, query_llm=cfg.query_llm) as stack:
        yield stack.tools_url


def _check_fingerprint(out: Path, cfg: EvalConfig) -> None:
    path = out / RUN
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("fingerprint", {})
    except json.JSONDecodeError:
        return
    new = cfg.fingerprint()
    diff = {k: (old.get(k), v) for k, v in new.items() if k in old and old.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{out} holds a run with different settings ({detail}); use another --out folder")


async def _run_examples(todo: list[tuple[Example, Grader]], agent: EvalAgent, cfg: EvalConfig, model: str,
                        write: Callable[[dict], None], on_done: Callable[[], None]) -> None:
    sem = asyncio.Semaphore(cfg.concurrency)

    async def one(ex: Example, grader: Grader) -> None:
        async with sem:
            t0 = time.perf_counter()
            out: AgentOutput | None = None
            grade: Grade | None = None
            status, error = "ok", None
            try:
                out = await asyncio.wait_for(agent.answer(ex.question), timeout=cfg.example_timeout_s)
                if out.status == "error":
                    status, error = "error", f"agent: {out.error or 'failed'}"
            except TimeoutError:
                status, error = "error", f"timeout after {cfg.example_timeout_s:.0f}s"
            except Exception as exc:
                log.debug("example %s failed", ex.id, exc_info=True)
                status, error = "error", f"{type(exc).__name__}: {exc}"[:1000]
            if status == "ok":
                try:  # a prediction the grader cannot handle is this row's error, never the run's
                    grade = await grader.grade(ex.question, ex.answer, out.answer if out else None)
                except Exception as exc:
                    log.debug("grading %s failed", ex.id, exc_info=True)
                    status, error = "error", f"grading: {type(exc).__name__}: {exc}"[:1000]
                else:
                    if grade.error and grade.error.startswith(("judge call failed", "grading failed")):
                        status, error = "error", f"grading: {grade.error}"
            try:
                row = make_row(ex, out, grade, status=status, error=error, agent=cfg.agent.agent, model=model,
                               latency_s=time.perf_counter() - t0, store_transcript=cfg.store_transcripts)
            except Exception as exc:  # e.g. an output object that does not serialise: keep the row, as an error
                log.debug("row %s failed", ex.id, exc_info=True)
                row = make_row(ex, None, None, status="error", error=f"row: {type(exc).__name__}: {exc}"[:1000],
                               agent=cfg.agent.agent, model=model, latency_s=time.perf_counter() - t0,
                               store_transcript=False)
            write(row)
            on_done()

    await asyncio.gather(*(one(ex, g) for ex, g in todo))


def run_eval(cfg: EvalConfig, *, agent: EvalAgent | None = None, judge_client=None) -> RunResult:
    """Run (or resume) an evaluation. ``agent`` / ``judge_client`` inject prebuilt objects (tests, benchmarks);
    otherwise they are built from ``cfg.agent`` / ``cfg.judge``."""
    return asyncio.run(arun_eval(cfg, agent=agent, judge_client=judge_client))


async def arun_eval(cfg: EvalConfig, *, agent: EvalAgent | None = None, judge_client=None) -> RunResult:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_fingerprint(out, cfg)
    results = out / RESULTS
    rows = read_results(results)
    if cfg.retry_errors and any(r.get("status") != "ok" for r in rows):
        rows = [r for r in rows if r.get("status") == "ok"]
        atomic_write_text(results, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    done = {row_key(r) for r in rows}

    datasets: list[Dataset] = [
        load_dataset(d, limit=cfg.limit, sample=cfg.sample, seed=cfg.seed, shard=cfg.shard, offline_n=cfg.offline_n,
                     web_seed=cfg.web_seed, web_pages=cfg.web_pages, offline_hops=tuple(cfg.offline_hops))
        for d in cfg.datasets]
    pending = [(ds, [ex for ex in ds.examples if (ex.dataset, ex.id) not in done]) for ds in datasets]
    n_todo = sum(len(t) for _, t in pending)
    skipped = sum(len(ds.examples) for ds in datasets) - n_todo
    outputs_present = (out / METRICS).exists() and (not cfg.report or (out / REPORT_HTML).exists())
    if n_todo == 0 and outputs_present:
        log.info("%s: nothing to do (%d rows already present)", out, skipped)
        return _result(cfg, datasets, rows, out=out, metrics=RunMetrics.model_validate_json(
            (out / METRICS).read_text()), new_rows=0, skipped=skipped, nothing_to_do=True)

    model = cfg.agent.policy
    run_info = {"name": cfg.run_name(), "fingerprint": cfg.fingerprint(), "config": cfg.model_dump(mode="json"),
                "datasets": {ds.name: {"path": ds.path, "sha256": ds.sha256, "total": ds.total,
                                       "selected": len(ds.examples)} for ds in datasets}}
    new_rows = 0
    if n_todo:
        atomic_write_text(out / RUN, json.dumps(run_info, indent=2))
        judge = None
        own_judge = None
        if cfg.judge or judge_client is not None:
            if judge_client is None:
                from fathom.llm import make_client

                judge_client = own_judge = make_client(cfg.judge)
            judge = LLMJudge(judge_client, concurrency=cfg.judge_concurrency, max_tokens=cfg.judge_max_tokens)
        graders = {ds.name: choose_grader(ds.grader, ds.judge_grader, judge, cfg.grader) for ds in datasets}
        todo = [(ex, graders[ds.name]) for ds, exs in pending for ex in exs]
        spec_needs_tools = agent is None and agent_spec(cfg.agent.agent).needs_tools
        with _tool_server(cfg, spec_needs_tools) as tools_url, results.open("a", encoding="utf-8") as fh:
            own_agent = agent is None
            if own_agent:
                agent = make_agent(cfg.agent.model_copy(update={"tools_url": tools_url}))
            assert agent is not None

            def write(row: dict) -> None:
                nonlocal new_rows
                line = json.dumps(row, ensure_ascii=False)
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:  # model text with lone surrogates: escape them
                    line = json.dumps(row, ensure_ascii=True)
                fh.write(line + "\n")
                fh.flush()
                new_rows += 1

            try:
                with _progress(cfg.progress, n_todo, cfg.run_name()) as advance:
                    await _run_examples(todo, agent, cfg, model, write, advance)
            finally:
                os.fsync(fh.fileno())
                if own_agent:
                    await agent.aclose()
                if own_judge is not None:
                    await own_judge.aclose()
        rows = read_results(results)
    elif not (out / RUN).exists():
        atomic_write_text(out / RUN, json.dumps(run_info, indent=2))

    metrics = compute_metrics(rows, run=cfg.run_name(), agent=cfg.agent.agent, model=model, seed=cfg.seed)
    atomic_write_text(out / METRICS, metrics.model_dump_json(indent=2))
    if cfg.report:
        from fathom.evaluate.report import write_run_report

        write_run_report(out, rows, metrics, run_info)
    return _result(cfg, datasets, rows, out=out, metrics=metrics, new_rows=new_rows, skipped=skipped)


def _result(cfg: EvalConfig, datasets: list[Dataset], rows: list[dict], **kw: Any) -> RunResult:
    """The run's result, with its error rate over the selected examples checked against ``max_error_rate``."""
    selected = {(ex.dataset, ex.id) for ds in datasets for ex in ds.examples}
    mine = [r for r in rows if row_key(r) in selected]
    errors = sum(1 for r in mine if r.get("status") != "ok")
    res = RunResult(rows=len(mine), errors=errors, **kw)
    if cfg.max_error_rate is not None and res.error_rate > cfg.max_error_rate:
        log.error("%s: %d of %d rows are errors (%.0f%% > %.0f%%)", kw.get("out"), errors, len(mine),
                  100 * res.error_rate, 100 * cfg.max_error_rate)
        res.failed = True
    return res


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(f"eval {label}", total=total)
        yield lambda: prog.advance(task)
