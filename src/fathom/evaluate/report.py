"""Reports people can read: Markdown and a self-contained HTML page (plots embedded as base64 PNG; no external
assets), for one run or several runs side by side.

Plots (matplotlib, Agg backend): accuracy with 95 % intervals per benchmark; accuracy vs mean tool calls per model
(the paper's Fig. 1 style); histogram of tool calls per example.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fathom.evaluate.stats import BenchmarkMetrics, RunMetrics

# (name, metrics, rows)
RunData = tuple[str, RunMetrics, Sequence[dict]]


# ---------------------------------------------------------------------------------------------------------------
# plots

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def plot_accuracy_ci(runs: Sequence[RunData]) -> bytes:
    """Grouped bars: accuracy (%) per benchmark per run, with bootstrap 95 % intervals as error bars."""
    plt = _plt()
    benches = list(dict.fromkeys(b for _, m, _ in runs for b in m.benchmarks))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(benches) * max(1, len(runs)) ** 0.5 + 2), 3.6))
    width = 0.8 / max(1, len(runs))
    for j, (name, m, _) in enumerate(runs):
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(benches):
            bm = m.benchmarks.get(b)
            if bm is None:
                continue
            xs.append(i + (j - (len(runs) - 1) / 2) * width)
            ys.append(100 * bm.accuracy)
            lo.append(100 * max(0.0, bm.accuracy - _nz(bm.ci_low, bm.accuracy)))
            hi.append(100 * max(0.0, _nz(bm.ci_high, bm.accuracy) - bm.accuracy))
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=name)
    ax.set_xticks(range(len(benches)))
    ax.set_xticklabels(benches, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy per benchmark (95% bootstrap CI)")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_accuracy_vs_tools(runs: Sequence[RunData]) -> bytes:
    """Mean accuracy vs mean tool calls per example, one point per model (benchmarks as small markers)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for name, m, _ in runs:
        pts = list(m.benchmarks.values())
        sc = ax.scatter([p.mean_tool_calls for p in pts], [100 * p.accuracy for p in pts], s=18, alpha=0.45)
        color = sc.get_facecolor()[0] if len(pts) else None
        x = sum(p.mean_tool_calls for p in pts) / len(pts) if pts else m.overall.mean_tool_calls
        ax.scatter([x], [100 * m.macro_accuracy], s=90, marker="*", color=color, edgecolor="black", zorder=3)
        ax.annotate(name, (x, 100 * m.macro_accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
        for p in pts:
            ax.annotate(p.dataset, (p.mean_tool_calls, 100 * p.accuracy), textcoords="offset points",
                        xytext=(4, -8), fontsize=6, alpha=0.7)
    ax.set_xlabel("mean tool calls per question")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs tool calls (star: mean over benchmarks)")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_tool_histogram(runs: Sequence[RunData]) -> bytes:
    """Distribution of tool calls per example (all benchmarks pooled), one series per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    top = max([int(r.get("tool_calls") or 0) for _, _, rows in runs for r in rows] + [1])
    bins = [x - 0.5 for x in range(top + 2)]
    for name, _, rows in runs:
        ax.hist([int(r.get("tool_calls") or 0) for r in rows], bins=bins, alpha=0.55, label=name)
    ax.set_xlabel("tool calls per example")
    ax.set_ylabel("examples")
    ax.set_title("Tool-call histogram")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _nz(x: float, default: float) -> float:
    return default if x is None or (isinstance(x, float) and math.isnan(x)) else x


# ---------------------------------------------------------------------------------------------------------------
# tables

def pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci_str(m: BenchmarkMetrics) -> str:
    return f"{pct(m.accuracy)} [{pct(m.ci_low)}, {pct(m.ci_high)}]"


METRIC_COLUMNS = ["benchmark", "n", "accuracy % [95% CI]", "not attempted %", "error %", "mean F1", "grader",
                  "turns", "tool calls", "prompt tok", "completion tok", "latency s", "p95 latency s"]


def metric_row(m: BenchmarkMetrics, label: str | None = None) -> list[str]:
    return [label or m.dataset, str(m.n), ci_str(m), pct(m.not_attempted_rate), pct(m.error_rate),
            f"{m.mean_f1:.3f}", m.grader, f"{m.mean_turns:.2f}", f"{m.mean_tool_calls:.2f}",
            f"{m.mean_prompt_tokens:.0f}", f"{m.mean_completion_tokens:.0f}", f"{m.mean_latency_s:.2f}",
            f"{m.p95_latency_s:.2f}"]


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _short(text: Any, n: int = 120) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


EXAMPLE_COLUMNS = ["id", "question", "gold", "prediction", "label", "status", "tool calls"]


def example_rows(rows: Sequence[dict], k: int = 10) -> list[list[str]]:
    return [[str(r.get("id")), _short(r.get("question"), 90), _short(r.get("answer_gt"), 40),
             _short(r.get("prediction"), 40), str(r.get("label") or "–"), str(r.get("status")),
             str(r.get("tool_calls") or 0)] for r in rows[:k]]


def error_summary(rows: Sequence[dict]) -> list[list[str]]:
    counts = Counter(_short(r.get("error"), 100) for r in rows if r.get("status") != "ok")
    return [[msg, str(n)] for msg, n in counts.most_common(10)]


# ---------------------------------------------------------------------------------------------------------------
# documents

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem}table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.86rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;margin:.5rem 0}.pass{color:#0a0;font-weight:bold}
.fail{color:#c00;font-weight:bold}code{background:#f3f3f3;padding:0 .2rem}.muted{color:#777;font-size:.85rem}"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def plots(runs: Sequence[RunData]) -> list[tuple[str, bytes]]:
    return [("Accuracy per benchmark with 95% intervals", plot_accuracy_ci(runs)),
            ("Accuracy vs mean tool calls per model", plot_accuracy_vs_tools(runs)),
            ("Tool calls per example", plot_tool_histogram(runs))]


def render_run_report(rows: Sequence[dict], metrics: RunMetrics, run_info: dict | None = None) -> tuple[str, str]:
    """(markdown, html) of one run."""
    info = run_info or {}
    name = metrics.run or info.get("name") or "run"
    cfg = info.get("config", {})
    summary_rows = [metric_row(m) for m in metrics.benchmarks.values()]
    summary_rows.append(metric_row(metrics.overall, "all (pooled)"))
    facts = [["run", name], ["agent", metrics.agent], ["policy", metrics.model],
             ["judge", str(cfg.get("judge") or "none (deterministic graders)")],
             ["mean accuracy over benchmarks", pct(metrics.macro_accuracy)],
             ["examples", str(metrics.overall.n)]]
    ds_rows = [[k, str(v.get("selected")), str(v.get("total")), str(v.get("path") or "generated"),
                str(v.get("sha256", ""))[:12]] for k, v in (info.get("datasets") or {}).items()]
    by_ds: dict[str, list[dict]] = {}
    for r in rows:
        by_ds.setdefault(str(r.get("dataset")), []).append(r)

    md = [f"# Evaluation report: {name}", "", md_table(["", ""], facts), "",
          "Accuracy counts every example; errors count as wrong. Intervals: percentile bootstrap, 95 %.", "",
          "## Summary", "", md_table(METRIC_COLUMNS, summary_rows), ""]
    if ds_rows:
        md += ["## Datasets", "", md_table(["dataset", "selected", "total", "file", "sha256"], ds_rows), ""]
    hb = [f"<h1>Evaluation report: {html.escape(name)}</h1>", html_table(["", ""], facts),
          ("<p class='muted'>Accuracy counts every example; errors count as wrong. "
           "Intervals: percentile bootstrap, 95 %.</p>"),
          "<h2>Summary</h2>", html_table(METRIC_COLUMNS, summary_rows)]
    if ds_rows:
        hb += ["<h2>Datasets</h2>", html_table(["dataset", "selected", "total", "file", "sha256"], ds_rows)]
    hb.append("<h2>Plots</h2>")
    for title, png in plots([(name, metrics, rows)]):
        hb.append(f"<h3>{html.escape(title)}</h3>{_img(png, title)}")
    for ds, m in metrics.benchmarks.items():
        ds_rows_ = by_ds.get(ds, [])
        tbl = [["accuracy % [95% CI]", ci_str(m)], ["correct / n", f"{m.correct} / {m.n}"],
               ["not attempted %", pct(m.not_attempted_rate)], ["error %", pct(m.error_rate)],
               ["accuracy on rows without error %", pct(m.accuracy_ok)], ["grader", m.grader],
               ["judge errors", str(m.judge_errors)],
               ["agent end status", ", ".join(f"{k}: {v}" for k, v in sorted(m.agent_status.items()))]]
        md += [f"## {ds}", "", md_table(["metric", "value"], tbl), "", "Examples:", "",
               md_table(EXAMPLE_COLUMNS, example_rows(ds_rows_)), ""]
        hb += [f"<h2>{html.escape(ds)}</h2>", html_table(["metric", "value"], tbl), "<h3>Examples</h3>",
               html_table(EXAMPLE_COLUMNS, example_rows(ds_rows_))]
        errs = error_summary(ds_rows_)
        if errs:
            md += ["Errors:", "", md_table(["error", "rows"], errs), ""]
            hb += ["<h3>Errors</h3>", html_table(["error", "rows"], errs)]
    if cfg:
        md += ["## Configuration", "", "```json", json.dumps(cfg, indent=2, default=str), "```", ""]
        hb += ["<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(cfg, indent=2, default=str))}</pre>"]
    return "\n".join(md), html_page(f"Evaluation: {name}", "\n".join(hb))


def write_run_report(out: Path, rows: Sequence[dict], metrics: RunMetrics, run_info: dict | None = None) -> None:
    from fathom.evaluate.runner import REPORT_HTML, REPORT_MD, atomic_write_text

    md, page = render_run_report(rows, metrics, run_info)
    atomic_write_text(Path(out) / REPORT_MD, md)
    atomic_write_text(Path(out) / REPORT_HTML, page)
