"""Metrics over result rows: accuracy (errors count against it), not-attempted and error rates, percentile
bootstrap 95 % intervals, per-example means (turns, tool calls, tokens, latency), and paired bootstrap deltas for
comparing two runs on the same examples. Pure functions over plain rows (dicts as written to results.jsonl)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, Field

DEFAULT_RESAMPLES = 2000


def bootstrap_ci(values: Sequence[float], *, n_resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean. Empty -> (nan, nan); constant data -> (c, c)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values, counts = np.unique(x, return_counts=True)
    if values.size <= 16:
        # Few distinct values (0/1 correctness, -1/0/1 paired deltas): resampling n items with replacement is
        # exactly a multinomial draw of the value counts, O(resamples) instead of O(resamples * n).
        draws = rng.multinomial(x.size, counts / x.size, size=n_resamples)
        means = draws @ values / x.size
    else:
        idx = rng.integers(0, x.size, size=(n_resamples, x.size))
        means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def paired_bootstrap_delta(a: Sequence[float], b: Sequence[float], *, n_resamples: int = DEFAULT_RESAMPLES,
                           confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of (b - a) over paired examples and its percentile bootstrap interval (resampling pairs)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError("paired samples need equal length")
    if xa.size == 0:
        return (math.nan, math.nan, math.nan)
    d = xb - xa
    lo, hi = bootstrap_ci(d, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return (float(d.mean()), lo, hi)


def _mean(xs: Iterable[float]) -> float:
    arr = [float(x) for x in xs if x is not None]
    return float(np.mean(arr)) if arr else 0.0


class BenchmarkMetrics(BaseModel):
    """Headline numbers of one benchmark in one run. Rates are fractions of *all* rows (errors included)."""

    dataset: str
    n: int = Field(description="Rows (every selected example yields one).")
    correct: int
    accuracy: float = Field(description="correct / n; error rows count as wrong.")
    ci_low: float = Field(description="Bootstrap 95 % interval of accuracy, low end.")
    ci_high: float
    not_attempted_rate: float
    error_rate: float = Field(description="Rows whose agent run or grading failed, / n.")
    accuracy_ok: float = Field(description="correct / rows without error (for diagnosis only; not the headline).")
    mean_score: float = Field(description="Mean grader score (token F1 for the f1 grader, else = accuracy).")
    mean_f1: float = Field(description="Mean token F1 of predictions vs gold.")
    grader: str = Field(description="Grader(s) used, e.g. 'em' or 'judge'.")
    judge_errors: int = Field(default=0, description="Rows whose judge call failed or was unparseable.")
    mean_turns: float
    mean_tool_calls: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    mean_latency_s: float
    p95_latency_s: float
    agent_status: dict[str, int] = Field(default_factory=dict, description="Counts of the agent's end status.")


class RunMetrics(BaseModel):
    """metrics.json: per benchmark, pooled over all rows, and the unweighted mean of benchmark accuracies."""

    run: str = ""
    agent: str = ""
    model: str = ""
    overall: BenchmarkMetrics
    macro_accuracy: float = Field(description="Unweighted mean of per-benchmark accuracy (the paper's 'Avg').")
    benchmarks: dict[str, BenchmarkMetrics]


def row_correct(row: dict) -> float:
    return 1.0 if row.get("status") == "ok" and row.get("label") == "correct" else 0.0


def summarize(rows: Sequence[dict], *, dataset: str = "all", seed: int = 0,
              n_resamples: int = DEFAULT_RESAMPLES) -> BenchmarkMetrics:
    """Metrics of one group of rows. A row is correct only if its status is ok and its label is correct."""
    n = len(rows)
    corr = [row_correct(r) for r in rows]
    errors = sum(1 for r in rows if r.get("status") != "ok")
    na = sum(1 for r in rows if r.get("status") == "ok" and r.get("label") == "not_attempted")
    ok_rows = n - errors
    lo, hi = bootstrap_ci(corr, seed=seed, n_resamples=n_resamples) if n else (0.0, 0.0)
    lat = [float(r.get("latency_s") or 0.0) for r in rows]
    graders = sorted({str(r.get("grader")) for r in rows if r.get("grader")})
    statuses: dict[str, int] = {}
    for r in rows:
        key = str(r.get("agent_status") or r.get("status"))
        statuses[key] = statuses.get(key, 0) + 1
    return BenchmarkMetrics(
        dataset=dataset, n=n, correct=int(sum(corr)), accuracy=(sum(corr) / n) if n else 0.0,
        ci_low=lo, ci_high=hi,
        not_attempted_rate=na / n if n else 0.0, error_rate=errors / n if n else 0.0,
        accuracy_ok=(sum(corr) / ok_rows) if ok_rows else 0.0,
        mean_score=_mean((r.get("score") or 0.0) if r.get("status") == "ok" else 0.0 for r in rows),
        mean_f1=_mean((r.get("f1") or 0.0) if r.get("status") == "ok" else 0.0 for r in rows),
        grader="+".join(graders) or "-",
        judge_errors=sum(1 for r in rows if r.get("grade_error")),
        mean_turns=_mean(r.get("turns") or 0 for r in rows),
        mean_tool_calls=_mean(r.get("tool_calls") or 0 for r in rows),
        mean_prompt_tokens=_mean(r.get("prompt_tokens") or 0 for r in rows),
        mean_completion_tokens=_mean(r.get("completion_tokens") or 0 for r in rows),
        mean_latency_s=_mean(lat),
        p95_latency_s=float(np.quantile(lat, 0.95)) if lat else 0.0,
        agent_status=statuses,
    )


def compute_metrics(rows: Sequence[dict], *, run: str = "", agent: str = "", model: str = "",
                    seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES) -> RunMetrics:
    """Per-benchmark metrics (rows grouped by their ``dataset`` field, in first-seen order) plus pooled ones."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("dataset", "?")), []).append(r)
    per = {name: summarize(g, dataset=name, seed=seed, n_resamples=n_resamples) for name, g in groups.items()}
    overall = summarize(rows, dataset="all", seed=seed, n_resamples=n_resamples)
    macro = float(np.mean([m.accuracy for m in per.values()])) if per else 0.0
    return RunMetrics(run=run, agent=agent, model=model, overall=overall, macro_accuracy=macro, benchmarks=per)
