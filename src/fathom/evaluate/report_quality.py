"""Report quality in the style of DeepResearch-Bench (method.md §7.1, §7.4).

RACE-like (reference-based, adaptive criteria): a judge role writes task-specific criteria with weights along four
dimensions (comprehensiveness, insight/depth, instruction following, readability) and dimension weights; it then
scores the target and the reference report on every criterion (0–10). Per dimension the weighted means S_t, S_r give
the relative score S_t / (S_t + S_r); the overall score is the same ratio of the dimension-weighted totals (×100,
50 = on par with the reference).

FACT-like citation checks: (claim, URL) pairs are extracted from the report (``[https://…]`` after a sentence, the
synthesizer's format, and Markdown links), every URL is fetched through the tool server (``ToolClient.visit``), and a
judge decides whether the page supports the claim. Citation accuracy = supported / checked (pairs whose page could
not be fetched are excluded, as in FACT, and reported; ``citation_accuracy_strict`` counts them as unsupported);
effective citations = supported pairs per task.

Without a judge role both parts fall back to transparent deterministic proxies (lexical coverage / support), marked
``method: "heuristic"`` in the output, so the pipeline runs offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from fathom.errors import FathomError
from fathom.evaluate.graders import normalize_text

log = logging.getLogger(__name__)

DIMENSIONS = ("comprehensiveness", "insight", "instruction_following", "readability")
Method = Literal["judge", "heuristic"]


class Criterion(BaseModel):
    dimension: str
    criterion: str
    explanation: str = ""
    weight: float = Field(default=1.0, ge=0)


class ReportTask(BaseModel):
    """One DeepResearch task: the prompt, the report under test, and optionally a reference report and criteria."""

    id: str
    prompt: str
    report: str
    reference: str | None = None
    criteria: list[Criterion] | None = None
    dimension_weights: dict[str, float] | None = None


class RaceResult(BaseModel):
    method: Method
    criteria_source: Literal["task", "judge", "default"]
    dimension_weights: dict[str, float]
    criteria: list[Criterion]
    target_scores: list[float]
    reference_scores: list[float]
    dimensions: dict[str, float] = Field(description="Relative score per dimension (×100; 50 = par).")
    overall: float = Field(description="Relative overall score (×100; 50 = on par with the reference).")
    judge_errors: int = 0


class CitationCheck(BaseModel):
    claim: str
    url: str
    status: Literal["supported", "unsupported", "fetch_failed", "judge_error"]
    rationale: str = ""


class FactResult(BaseModel):
    method: Method
    n_citations: int
    n_checked: int = Field(description="Pairs whose page was fetched and judged.")
    n_supported: int
    fetch_failed: int
    citation_accuracy: float | None = Field(description="supported / checked (None when nothing was checked).")
    citation_accuracy_strict: float | None = Field(description="supported / all pairs (fetch failures count).")
    effective_citations: int = Field(description="Supported pairs in this report.")
    checks: list[CitationCheck]


class ReportQuality(BaseModel):
    id: str
    race: RaceResult | None
    fact: FactResult


# ---------------------------------------------------------------------------------------------------------------
# pure pieces

def normalize_weights(w: dict[str, float], keys: Sequence[str] = DIMENSIONS) -> dict[str, float]:
    vals = {k: max(0.0, float(w.get(k, 0.0) or 0.0)) for k in keys}
    total = sum(vals.values())
    return {k: (v / total if total > 0 else 1.0 / len(keys)) for k, v in vals.items()}


def race_score(dimension_weights: dict[str, float], criteria: Sequence[Criterion], target: Sequence[float],
               reference: Sequence[float]) -> tuple[dict[str, float], float]:
    """Per-dimension relative scores and the overall relative score (both ×100).
    S_d = Σ_c w_c·s_c / Σ_c w_c over the dimension's criteria; relative = S_t / (S_t + S_r)."""
    if not (len(criteria) == len(target) == len(reference)):
        raise ValueError("one target and one reference score per criterion")
    dw = normalize_weights(dimension_weights)
    dims: dict[str, float] = {}
    tot_t = tot_r = 0.0
    for d in DIMENSIONS:
        idx = [i for i, c in enumerate(criteria) if c.dimension == d]
        wsum = sum(criteria[i].weight for i in idx)
        if not idx or wsum <= 0:
            continue
        st = sum(criteria[i].weight * target[i] for i in idx) / wsum
        sr = sum(criteria[i].weight * reference[i] for i in idx) / wsum
        dims[d] = 100 * st / (st + sr) if st + sr > 0 else 50.0
        tot_t += dw[d] * st
        tot_r += dw[d] * sr
    overall = 100 * tot_t / (tot_t + tot_r) if tot_t + tot_r > 0 else 50.0
    return dims, overall


_URL = r"https?://[^\s\]\)<>\"']+"
_BRACKET_CITE = re.compile(r"\[(" + _URL + r")\]")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((" + _URL + r")\)")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


def _clean_url(u: str) -> str:
    return u.rstrip(".,;:")


def _last_sentence(text: str) -> str:
    parts = [x for x in _SENT_SPLIT.split(text.strip()) if x.strip()]
    claim = parts[-1] if parts else ""
    if len(claim) < 20 and len(parts) > 1:  # "It is." style fragments: keep the previous sentence too
        claim = parts[-2] + " " + claim
    return " ".join(claim.split()).strip(" -–—:;,(")


def extract_citations(report: str) -> list[tuple[str, str]]:
    """(claim, url) pairs. A citation (``[https://…]`` or a Markdown link) belongs to the sentence just before it
    (for an inline link: the sentence it sits in); adjacent citations share that sentence. Lines that are only
    URLs (a "Sources used" list) carry no claim. Deduplicated, in order."""
    cite = re.compile(_BRACKET_CITE.pattern + "|" + _MD_LINK.pattern)
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for line in report.split("\n"):
        line = re.sub(r"^[\s>*\-+#]+|^\s*\d+[.)]\s+", "", line).strip()
        matches = list(cite.finditer(line))
        if not matches:
            continue
        groups: list[list[re.Match]] = []
        for m in matches:
            if groups and not line[groups[-1][-1].end():m.start()].strip():
                groups[-1].append(m)
            else:
                groups.append([m])
        prev_end = 0
        for gi, g in enumerate(groups):
            segment = line[prev_end:g[0].start()]
            prev_end = g[-1].end()
            if g[0].group(2) is not None:  # inline Markdown link: the sentence it sits in
                stop = groups[gi + 1][0].start() if gi + 1 < len(groups) else len(line)
                rest = line[prev_end:stop]
                end = re.search(r"[.!?](?:\s|$)", rest)
                consumed = rest[: end.end()] if end else rest
                segment += g[0].group(2) + consumed
                prev_end += len(consumed)
            segment = re.sub(_URL, "", _MD_LINK.sub(r"\1", segment))
            claim = _last_sentence(segment)
            if len(claim) < 8:
                continue
            for m in g:
                url = _clean_url(m.group(1) or m.group(3))
                if (claim, url) not in seen:
                    seen.add((claim, url))
                    pairs.append((claim, url))
    return pairs


_STOP = frozenset((
    "the a an of and or to in on for with by at from as is are was were be been that this which it its their his "
    "her they he she we you i not no but into than then also about over under after before has have had do does "
    "did can could would should may might will shall").split())  # noqa: SIM905


def content_words(text: str) -> list[str]:
    return [w for w in normalize_text(text).split() if w not in _STOP and len(w) > 1]


def best_window(page: str, claim: str, *, size: int = 1500, step: int = 500) -> tuple[str, float]:
    """The window of the page with the highest recall of the claim's content words (and that recall)."""
    words = set(content_words(claim))
    if not page:
        return "", 0.0
    best, best_r = page[:size], -1.0
    for start in range(0, max(1, len(page) - size + step), step):
        win = page[start:start + size]
        r = len(words & set(content_words(win))) / len(words) if words else 0.0
        if r > best_r:
            best, best_r = win, r
    return best, max(0.0, best_r)


def lexical_support(claim: str, page: str, threshold: float = 0.6) -> tuple[bool, str]:
    _, recall = best_window(page, claim)
    return recall >= threshold, f"content-word recall {recall:.2f} (threshold {threshold})"


def heuristic_scores(report: str, prompt: str, reference: str | None) -> dict[str, float]:
    """Deterministic 0–10 proxies per dimension (offline fallback, not a quality judgement)."""
    words = content_words(report)
    wset = set(words)
    ref_terms = [w for w, _ in Counter(content_words(reference or prompt)).most_common(60)]
    comp = 10 * (len([w for w in ref_terms if w in wset]) / len(ref_terms)) if ref_terms else 0.0
    n = max(1, len(words))
    markers = len(re.findall(r"\b(because|therefore|however|whereas|compared|implies|suggests|driven|risk|trend)\b",
                             report, re.IGNORECASE))
    numbers = len(re.findall(r"\d", report))
    insight = min(10.0, 10 * (markers * 8 + numbers) / (n * 0.5 + 1) * 3)
    pterms = set(content_words(prompt))
    inst = 10 * len(pterms & wset) / len(pterms) if pterms else 0.0
    sents = [s for s in re.split(r"[.!?]\s", report) if s.strip()]
    avg = sum(len(s.split()) for s in sents) / max(1, len(sents))
    read = (4.0 if re.search(r"^#", report, re.MULTILINE) else 0.0) + (3.0 if "\n\n" in report else 0.0) + \
        (3.0 if 8 <= avg <= 30 else 1.0)
    return {"comprehensiveness": comp, "insight": insight, "instruction_following": inst, "readability": read}


DEFAULT_CRITERIA = [
    Criterion(dimension="comprehensiveness", criterion="Covers every part of the task with relevant facts"),
    Criterion(dimension="insight", criterion="Analyses causes, comparisons and implications beyond listing facts"),
    Criterion(dimension="instruction_following", criterion="Answers exactly what the task asks, in the requested "
              "scope and form"),
    Criterion(dimension="readability", criterion="Clear structure, headings, concise language, tables where useful"),
]


def extract_json(text: str) -> Any:
    """The first JSON object/array in a reply (```json fences tolerated); raises ValueError."""
    t = re.sub(r"```(?:json)?", "", text or "")
    starts = [i for i in (t.find("{"), t.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON in reply")
    dec = json.JSONDecoder()
    return dec.raw_decode(t[min(starts):])[0]


# ---------------------------------------------------------------------------------------------------------------
# judge prompts

CRITERIA_PROMPT = """You design evaluation criteria for a research report written for this task:

<task>
{prompt}
</task>

Return JSON only: {{"dimension_weights": {{"comprehensiveness": w, "insight": w, "instruction_following": w,
"readability": w}}, "criteria": [{{"dimension": one of the four, "criterion": "...", "explanation": "...",
"weight": w}}, ...]}} with weights summing to 1 within the dimension weights and within each dimension's
criteria, and 2-4 task-specific criteria per dimension."""

SCORE_PROMPT = """Score two research reports for the task below on each criterion from 0 to 10.

<task>
{prompt}
</task>

<criteria>
{criteria}
</criteria>

<article_1>
{target}
</article_1>

<article_2>
{reference}
</article_2>

Return JSON only: {{"scores": [{{"index": i, "article_1": s1, "article_2": s2}}, ...]}} with one entry per
criterion index."""

SUPPORT_PROMPT = """Does the web page excerpt support the claim? Answer with JSON only:
{{"verdict": "supported" | "unsupported", "reason": "..."}}

Claim: {claim}
URL: {url}
Page excerpt:
{excerpt}"""


async def _chat(judge, content: str, max_tokens: int) -> str:
    comp = await judge.chat([{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0.0)
    return comp.text


async def race_for_task(task: ReportTask, judge=None, *, max_chars: int = 30_000) -> RaceResult | None:
    """RACE-like score of ``task.report`` vs ``task.reference`` (None without a reference)."""
    if not task.reference:
        return None
    errors = 0
    source: Literal["task", "judge", "default"] = "task"
    criteria = task.criteria
    dw = task.dimension_weights
    if not criteria:
        criteria, dw, source = list(DEFAULT_CRITERIA), None, "default"
        if judge is not None:
            try:
                data = extract_json(await _chat(judge, CRITERIA_PROMPT.format(prompt=task.prompt), 1500))
                parsed = [Criterion.model_validate(c) for c in data.get("criteria", [])
                          if isinstance(c, dict) and c.get("dimension") in DIMENSIONS]
                if parsed:
                    criteria, dw, source = parsed, data.get("dimension_weights"), "judge"
            except Exception as exc:  # noqa: BLE001 - fall back to default criteria, counted
                errors += 1
                log.warning("criteria generation failed for %s: %s", task.id, exc)
    dw = normalize_weights(dw or {})
    if judge is None:
        h_t = heuristic_scores(task.report, task.prompt, task.reference)
        h_r = heuristic_scores(task.reference, task.prompt, task.reference)
        t_s = [h_t[c.dimension] for c in criteria]
        r_s = [h_r[c.dimension] for c in criteria]
        method: Method = "heuristic"
    else:
        method = "judge"
        listing = "\n".join(f"{i}. [{c.dimension}] {c.criterion} — {c.explanation}" for i, c in enumerate(criteria))
        t_s, r_s = [5.0] * len(criteria), [5.0] * len(criteria)
        try:
            data = extract_json(await _chat(judge, SCORE_PROMPT.format(
                prompt=task.prompt, criteria=listing, target=task.report[:max_chars],
                reference=task.reference[:max_chars]), 2000))
            got = 0
            for item in data.get("scores", []) if isinstance(data, dict) else []:
                i = int(item.get("index", -1))
                if 0 <= i < len(criteria):
                    t_s[i] = min(10.0, max(0.0, float(item.get("article_1", 5))))
                    r_s[i] = min(10.0, max(0.0, float(item.get("article_2", 5))))
                    got += 1
            errors += len(criteria) - got
        except Exception as exc:  # noqa: BLE001 - unscored criteria stay at par and are counted
            errors += len(criteria)
            log.warning("scoring failed for %s: %s", task.id, exc)
    dims, overall = race_score(dw, criteria, t_s, r_s)
    return RaceResult(method=method, criteria_source=source, dimension_weights=dw, criteria=criteria,
                      target_scores=t_s, reference_scores=r_s, dimensions=dims, overall=overall,
                      judge_errors=errors)


async def fact_for_task(task: ReportTask, tools, judge=None, *, max_citations: int = 40,
                        page_cache: dict[str, tuple[str | None, str]] | None = None,
                        concurrency: int = 8) -> FactResult:
    """FACT-like citation checks of one report through the tool server client ``tools`` (``visit(url)``)."""
    pairs = extract_citations(task.report)[:max_citations]
    cache = page_cache if page_cache is not None else {}
    locks: dict[str, asyncio.Lock] = {}
    sem = asyncio.Semaphore(concurrency)

    async def page(url: str) -> tuple[str | None, str]:
        lock = locks.setdefault(url, asyncio.Lock())
        async with lock:
            if url not in cache:
                try:
                    resp = await tools.visit(url, max_chars=60_000)
                    cache[url] = ((None, f"{resp.error.code}: {resp.error.message}") if resp.error
                                  else (resp.text, ""))
                except Exception as exc:  # noqa: BLE001 - a failed fetch is a counted outcome
                    cache[url] = (None, f"{type(exc).__name__}: {exc}")
            return cache[url]

    async def check(claim: str, url: str) -> CitationCheck:
        async with sem:
            text, err = await page(url)
            if text is None or not text.strip():
                return CitationCheck(claim=claim, url=url, status="fetch_failed", rationale=err or "empty page")
            if judge is None:
                ok, why = lexical_support(claim, text)
                return CitationCheck(claim=claim, url=url, status="supported" if ok else "unsupported", rationale=why)
            excerpt, _ = best_window(text, claim, size=3000, step=1000)
            try:
                reply = await _chat(judge, SUPPORT_PROMPT.format(claim=claim, url=url, excerpt=excerpt), 200)
                try:
                    data = extract_json(reply)
                    verdict = str(data.get("verdict", "")).lower()
                    reason = str(data.get("reason", ""))
                except (ValueError, AttributeError):
                    low = reply.lower()
                    verdict = "unsupported" if "unsupported" in low or "not supported" in low else \
                        "supported" if "supported" in low else ""
                    reason = reply.strip()[:500]
                if verdict not in ("supported", "unsupported"):
                    return CitationCheck(claim=claim, url=url, status="judge_error", rationale=reply[:500])
                return CitationCheck(claim=claim, url=url, status=verdict, rationale=reason[:1000])  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                return CitationCheck(claim=claim, url=url, status="judge_error", rationale=str(exc)[:500])

    checks = list(await asyncio.gather(*(check(c, u) for c, u in pairs)))
    supported = sum(c.status == "supported" for c in checks)
    judged = sum(c.status in ("supported", "unsupported") for c in checks)
    failed = sum(c.status == "fetch_failed" for c in checks)
    return FactResult(method="heuristic" if judge is None else "judge", n_citations=len(pairs), n_checked=judged,
                      n_supported=supported, fetch_failed=failed,
                      citation_accuracy=supported / judged if judged else None,
                      citation_accuracy_strict=supported / len(checks) if checks else None,
                      effective_citations=supported, checks=checks)


async def score_report(task: ReportTask, tools, judge=None, *, max_citations: int = 40) -> ReportQuality:
    race, fact = await asyncio.gather(race_for_task(task, judge),
                                      fact_for_task(task, tools, judge, max_citations=max_citations))
    return ReportQuality(id=task.id, race=race, fact=fact)


# ---------------------------------------------------------------------------------------------------------------
# stage

class ReportQualityConfig(BaseModel):
    tasks: Path = Field(description="JSONL of ReportTask records ({id, prompt, report, reference?, criteria?}).")
    out: Path = Field(description="Output folder: report_quality.jsonl, report_quality.json, report_quality.md.")
    judge: str | None = Field(default=None, description="Judge role (None: deterministic proxies).")
    tools_url: str | None = Field(default=None, description="Tool server (None: in-process offline stack).")
    max_citations: int = Field(default=40, ge=1, description="Citations checked per report.")
    concurrency: int = Field(default=4, ge=1, description="Reports scored in flight.")


class ReportQualitySummary(BaseModel):
    n_tasks: int
    race_overall: float | None
    race_dimensions: dict[str, float]
    citation_accuracy: float | None
    citation_accuracy_strict: float | None
    effective_citations: float = Field(description="Mean supported citations per task.")
    fetch_failed: int
    method: str


def load_tasks(path: Path) -> list[ReportTask]:
    tasks = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            tasks.append(ReportTask.model_validate_json(line))
        except ValueError as exc:
            raise FathomError(f"{path}:{lineno}: not a report task ({str(exc).splitlines()[0]})") from None
    return tasks


def summarize_quality(results: Sequence[ReportQuality]) -> ReportQualitySummary:
    races = [r.race for r in results if r.race is not None]
    checked = sum(r.fact.n_checked for r in results)
    supported = sum(r.fact.n_supported for r in results)
    total = sum(len(r.fact.checks) for r in results)
    dims = {d: sum(r.dimensions.get(d, 50.0) for r in races) / len(races) for d in DIMENSIONS} if races else {}
    methods = sorted({r.fact.method for r in results} | {r.method for r in races})
    return ReportQualitySummary(
        n_tasks=len(results), race_overall=sum(r.overall for r in races) / len(races) if races else None,
        race_dimensions=dims, citation_accuracy=supported / checked if checked else None,
        citation_accuracy_strict=supported / total if total else None,
        effective_citations=sum(r.fact.effective_citations for r in results) / len(results) if results else 0.0,
        fetch_failed=sum(r.fact.fetch_failed for r in results), method="+".join(methods))


@contextlib.contextmanager
def _tools_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from fathom.web.stack import offline_stack

    with offline_stack() as stack:
        yield stack.tools_url


def run_report_quality(cfg: ReportQualityConfig, *, judge_client=None) -> ReportQualitySummary:
    """Score every task (resumable: ids already in report_quality.jsonl are skipped) and write the summary."""
    return asyncio.run(_run(cfg, judge_client))


async def _run(cfg: ReportQualityConfig, judge_client) -> ReportQualitySummary:
    from fathom.evaluate.report import md_table
    from fathom.evaluate.runner import atomic_write_text
    from fathom.web.client import ToolClient

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "report_quality.jsonl"
    done = [ReportQuality.model_validate_json(x) for x in
            (res_path.read_text(encoding="utf-8").split("\n") if res_path.exists() else []) if x.strip()]
    done_ids = {r.id for r in done}
    todo = [t for t in load_tasks(cfg.tasks) if t.id not in done_ids]
    own = None
    if judge_client is None and cfg.judge:
        from fathom.llm import make_client

        judge_client = own = make_client(cfg.judge)
    results = list(done)
    if todo:
        with _tools_url(cfg.tools_url) as url:
            async with ToolClient(url) as tools:
                sem = asyncio.Semaphore(cfg.concurrency)
                with res_path.open("a", encoding="utf-8") as fh:
                    async def one(t: ReportTask) -> None:
                        async with sem:
                            r = await score_report(t, tools, judge_client, max_citations=cfg.max_citations)
                        fh.write(r.model_dump_json() + "\n")
                        fh.flush()
                        results.append(r)

                    await asyncio.gather(*(one(t) for t in todo))
    if own is not None:
        await own.aclose()
    summary = summarize_quality(results)
    atomic_write_text(out / "report_quality.json", summary.model_dump_json(indent=2))
    rows = [[r.id, f"{r.race.overall:.1f}" if r.race else "–",
             *[f"{r.race.dimensions.get(d, 50):.1f}" if r.race else "–" for d in DIMENSIONS],
             f"{r.fact.citation_accuracy:.2f}" if r.fact.citation_accuracy is not None else "–",
             str(r.fact.effective_citations), str(r.fact.n_citations), str(r.fact.fetch_failed)] for r in results]
    md = ["# Report quality", "", f"method: {summary.method}", "",
          md_table(["task", "RACE", "comp.", "insight", "inst.", "read.", "C.Acc", "E.Cit", "citations",
                    "fetch failed"], rows), "", "```json", summary.model_dump_json(indent=2), "```", ""]
    atomic_write_text(out / "report_quality.md", "\n".join(md))
    return summary
