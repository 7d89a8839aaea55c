"""Several runs side by side, and the quality gate "is the candidate better than the baseline?".

The gate compares the candidate with the baseline on the examples both runs share (paired by ``(dataset, id)``),
per benchmark and pooled, with a paired bootstrap 95 % interval of the accuracy difference:

* a benchmark is ``better`` when the interval's low end is above ``min_delta``, ``worse`` when its high end is
  below ``-max_drop`` (a regression the data supports), else ``tie``;
* ``require="better"`` (default): the gate passes when the pooled difference is better and no benchmark is worse;
* ``require="non-inferior"``: it passes when the pooled interval's low end is above ``-max_drop`` and no
  benchmark is worse (for "retrain did not break it" checks).

Unpaired runs (no shared examples) cannot be gated: the decision is ``fail`` with that reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from fathom.errors import FathomError
from fathom.evaluate.report import (
    METRIC_COLUMNS,
    _img,
    html_page,
    html_table,
    md_table,
    metric_row,
    pct,
    plots,
)
from fathom.evaluate.runner import METRICS, RESULTS, RUN, atomic_write_text, read_results, row_key
from fathom.evaluate.stats import RunMetrics, compute_metrics, paired_bootstrap_delta, row_correct

Verdict = Literal["better", "worse", "tie"]


class GateConfig(BaseModel):
    require: Literal["better", "non-inferior"] = Field(default="better", description="What the gate asks.")
    min_delta: float = Field(default=0.0, description="Candidate must beat the baseline by more than this (CI low).")
    max_drop: float = Field(default=0.0, ge=0, description="Tolerated drop before a benchmark counts as worse.")
    n_resamples: int = Field(default=2000, ge=100)
    seed: int = 0


class Delta(BaseModel):
    dataset: str
    n_paired: int
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    verdict: Verdict


class Comparison(BaseModel):
    baseline: str
    candidate: str
    runs: list[str]
    deltas: list[Delta] = Field(description="Per benchmark, candidate - baseline on paired examples.")
    pooled: Delta
    passed: bool
    reason: str
    gate: GateConfig


class Run(BaseModel):
    name: str
    path: str
    metrics: RunMetrics
    rows: list[dict]


def load_run(path: str | Path, name: str | None = None) -> Run:
    """A finished run folder (results.jsonl; metrics are recomputed from the rows if metrics.json is missing)."""
    path = Path(path)
    if not (path / RESULTS).exists():
        raise FathomError(f"{path} is not an evaluation run (no {RESULTS})")
    rows = read_results(path / RESULTS, repair=False)
    info = json.loads((path / RUN).read_text()) if (path / RUN).exists() else {}
    if (path / METRICS).exists():
        metrics = RunMetrics.model_validate_json((path / METRICS).read_text())
    else:
        metrics = compute_metrics(rows, run=info.get("name", path.name))
    label = name or metrics.run or info.get("name") or path.name
    return Run(name=label, path=str(path), metrics=metrics, rows=rows)


def _verdict(lo: float, hi: float, gate: GateConfig) -> Verdict:
    if not math.isnan(lo) and lo > gate.min_delta:
        return "better"
    if not math.isnan(hi) and hi < -gate.max_drop:
        return "worse"
    return "tie"


def paired_delta(base_rows: Sequence[dict], cand_rows: Sequence[dict], dataset: str, gate: GateConfig) -> Delta:
    b = {row_key(r): row_correct(r) for r in base_rows}
    c = {row_key(r): row_correct(r) for r in cand_rows}
    keys = sorted(set(b) & set(c))
    xa, xb = [b[k] for k in keys], [c[k] for k in keys]
    d, lo, hi = paired_bootstrap_delta(xa, xb, n_resamples=gate.n_resamples, seed=gate.seed)
    base = sum(xa) / len(keys) if keys else math.nan
    cand = sum(xb) / len(keys) if keys else math.nan
    return Delta(dataset=dataset, n_paired=len(keys), baseline=base, candidate=cand, delta=d, ci_low=lo, ci_high=hi,
                 verdict=_verdict(lo, hi, gate) if keys else "tie")


def compare(baseline: Run, candidate: Run, gate: GateConfig | None = None, others: Sequence[Run] = ()) -> Comparison:
    """Gate decision of candidate vs baseline (``others`` are only shown in the report)."""
    gate = gate or GateConfig()
    datasets = list(dict.fromkeys([str(r.get("dataset")) for r in baseline.rows] +
                                  [str(r.get("dataset")) for r in candidate.rows]))
    deltas = [paired_delta([r for r in baseline.rows if str(r.get("dataset")) == ds],
                           [r for r in candidate.rows if str(r.get("dataset")) == ds], ds, gate) for ds in datasets]
    deltas = [d for d in deltas if d.n_paired]
    pooled = paired_delta(baseline.rows, candidate.rows, "all (pooled)", gate)
    worse = [d.dataset for d in deltas if d.verdict == "worse"]
    if pooled.n_paired == 0:
        passed, reason = False, "the runs share no examples; nothing to compare"
    elif worse:
        passed, reason = False, f"worse on {', '.join(worse)}"
    elif gate.require == "better":
        passed = pooled.verdict == "better"
        reason = (f"pooled delta {pct(pooled.delta)} pts, 95% CI [{pct(pooled.ci_low)}, {pct(pooled.ci_high)}] "
                  + ("is above" if passed else "is not above") + f" {pct(gate.min_delta)} pts")
    else:
        passed = pooled.ci_low >= -gate.max_drop
        reason = (f"pooled delta CI low {pct(pooled.ci_low)} pts "
                  + ("is at or above" if passed else "is below") + f" -{pct(gate.max_drop)} pts")
    return Comparison(baseline=baseline.name, candidate=candidate.name,
                      runs=[baseline.name, candidate.name] + [o.name for o in others], deltas=deltas,
                      pooled=pooled, passed=passed, reason=reason, gate=gate)


DELTA_COLUMNS = ["benchmark", "paired n", "baseline %", "candidate %", "delta pts", "95% CI", "verdict"]


def _delta_row(d: Delta) -> list[str]:
    return [d.dataset, str(d.n_paired), pct(d.baseline), pct(d.candidate), pct(d.delta),
            f"[{pct(d.ci_low)}, {pct(d.ci_high)}]", d.verdict]


def render_comparison(runs: Sequence[Run], comp: Comparison) -> tuple[str, str]:
    verdict = "PASS: the candidate is better" if comp.passed else "FAIL: the candidate is not better"
    if comp.gate.require == "non-inferior":
        verdict = "PASS: the candidate is not worse" if comp.passed else "FAIL: the candidate may be worse"
    benches = list(dict.fromkeys(b for r in runs for b in r.metrics.benchmarks))
    side = [[b] + [(f"{pct(r.metrics.benchmarks[b].accuracy)} [{pct(r.metrics.benchmarks[b].ci_low)}, "
                    f"{pct(r.metrics.benchmarks[b].ci_high)}]" if b in r.metrics.benchmarks else "–") for r in runs]
            for b in benches]
    side.append(["mean over benchmarks"] + [pct(r.metrics.macro_accuracy) for r in runs])
    side.append(["mean tool calls"] + [f"{r.metrics.overall.mean_tool_calls:.2f}" for r in runs])
    side_header = ["benchmark"] + [f"{r.name} acc % [95% CI]" for r in runs]
    per_run = [metric_row(r.metrics.overall, r.name) for r in runs]
    deltas = [_delta_row(d) for d in comp.deltas] + [_delta_row(comp.pooled)]
    md = [f"# Comparison: {comp.candidate} vs {comp.baseline}", "", f"**{verdict}** ({comp.reason}).", "",
          "## Side by side", "", md_table(side_header, side), "",
          "## Gate (paired bootstrap, candidate - baseline)", "", md_table(DELTA_COLUMNS, deltas), "",
          "## Runs (pooled)", "", md_table(METRIC_COLUMNS, per_run), ""]
    cls = "pass" if comp.passed else "fail"
    hb = [f"<h1>Comparison: {comp.candidate} vs {comp.baseline}</h1>",
          f"<p class='{cls}'>{verdict}</p><p>{comp.reason}</p>",
          "<h2>Side by side</h2>", html_table(side_header, side),
          "<h2>Gate (paired bootstrap, candidate - baseline)</h2>", html_table(DELTA_COLUMNS, deltas),
          "<h2>Runs (pooled)</h2>", html_table(METRIC_COLUMNS, per_run), "<h2>Plots</h2>"]
    for title, png in plots([(r.name, r.metrics, r.rows) for r in runs]):
        hb.append(f"<h3>{title}</h3>{_img(png, title)}")
    return "\n".join(md), html_page(f"Comparison {comp.candidate} vs {comp.baseline}", "\n".join(hb))


def compare_runs(paths: Sequence[str | Path], out: str | Path, *, gate: GateConfig | None = None,
                 names: Sequence[str] | None = None) -> Comparison:
    """Load runs (first = baseline, last = candidate, any in between shown too), write comparison.json/.md/.html
    under ``out`` and return the decision."""
    if len(paths) < 2:
        raise FathomError("compare needs at least two runs (baseline ... candidate)")
    runs = [load_run(p, (names[i] if names and i < len(names) else None)) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for r in runs:  # disambiguate equal labels
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name} ({Path(r.path).name})"
        else:
            seen[r.name] = 1
    comp = compare(runs[0], runs[-1], gate, others=runs[1:-1])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, page = render_comparison(runs, comp)
    atomic_write_text(out / "comparison.json", comp.model_dump_json(indent=2))
    atomic_write_text(out / "comparison.md", md)
    atomic_write_text(out / "comparison.html", page)
    return comp
