"""Stage functions behind the KFP evaluation components (the components only map artifacts onto these).

* ``evaluate_stage``: one benchmark (or several) into a run folder;
* ``merge_runs``: fan-in of several run folders into one (rows concatenated, metrics + report recomputed);
* ``baseline_stage``: the gate's baseline run: a policy evaluated now, a stored run, or "no baseline";
* ``gate_stage``: the quality gate of a candidate run against a baseline run folder or URI (s3:// or a path).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fathom.evaluate.compare import Comparison, GateConfig, compare_runs
from fathom.evaluate.runner import (
    METRICS,
    RESULTS,
    RUN,
    EvalConfig,
    RunResult,
    atomic_write_text,
    read_results,
    run_eval,
)
from fathom.evaluate.stats import RunMetrics, compute_metrics


def evaluate_stage(dataset: str, out: Path, config: dict[str, Any] | str | None = None, *, tools_url: str = "",
                   limit: float | None = None) -> RunResult:
    """Run one benchmark. ``config`` is an EvalConfig JSON/dict without ``datasets``/``out``; ``limit`` <= 0 means
    all examples (KFP passes numbers as floats; they are cast here)."""
    cfg = json.loads(config) if isinstance(config, str) else dict(config or {})
    if tools_url:
        cfg.setdefault("agent", {})["tools_url"] = tools_url
    lim = int(limit) if limit is not None and int(limit) > 0 else cfg.get("limit")
    ev = EvalConfig.model_validate({**cfg, "datasets": [dataset], "out": str(out), "limit": lim, "progress": False})
    return run_eval(ev)


def headline(metrics: RunMetrics) -> dict[str, float]:
    """Flat numbers for KFP Metrics (per benchmark and overall)."""
    out: dict[str, float] = {"accuracy": metrics.overall.accuracy, "macro_accuracy": metrics.macro_accuracy,
                             "ci_low": metrics.overall.ci_low, "ci_high": metrics.overall.ci_high,
                             "not_attempted_rate": metrics.overall.not_attempted_rate,
                             "error_rate": metrics.overall.error_rate, "n": float(metrics.overall.n),
                             "mean_tool_calls": metrics.overall.mean_tool_calls,
                             "mean_turns": metrics.overall.mean_turns,
                             "mean_latency_s": metrics.overall.mean_latency_s}
    if len(metrics.benchmarks) > 1:
        for name, m in metrics.benchmarks.items():
            key = name.replace("-", "_")
            out[f"{key}_accuracy"] = m.accuracy
            out[f"{key}_error_rate"] = m.error_rate
    return {k: (0.0 if math.isnan(v) else float(v)) for k, v in out.items()}  # NaN -> 0 for the KFP UI


def merge_runs(run_dirs: Sequence[str | Path], out: Path, *, name: str = "") -> RunMetrics:
    """Concatenate the rows of several run folders into ``out`` and write metrics.json + reports there."""
    from fathom.evaluate.report import write_run_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    infos: dict[str, Any] = {"name": name, "datasets": {}, "config": {}}
    for d in run_dirs:
        d = Path(d)
        rows.extend(read_results(d / RESULTS, repair=False))
        if (d / RUN).exists():
            info = json.loads((d / RUN).read_text())
            infos["datasets"].update(info.get("datasets", {}))
            infos["config"] = infos["config"] or info.get("config", {})
            infos["fingerprint"] = info.get("fingerprint")
            infos["name"] = infos["name"] or info.get("name", "")
    atomic_write_text(out / RESULTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    first = rows[0] if rows else {}
    metrics = compute_metrics(rows, run=infos["name"] or "run", agent=str(first.get("agent", "")),
                              model=str(first.get("model", "")))
    atomic_write_text(out / METRICS, metrics.model_dump_json(indent=2))
    atomic_write_text(out / RUN, json.dumps(infos, indent=2, default=str))
    write_run_report(out, rows, metrics, infos)
    return metrics


#: Marker file of a baseline run folder that holds no run (first release: nothing deployed, nothing to beat).
NO_BASELINE = "NO_BASELINE"


def baseline_stage(out: Path, *, policy: str = "", baseline_uri: str = "", benchmarks: Sequence[str] = (),
                   config: dict[str, Any] | str | None = None, tools_url: str = "", limit: float | None = None
                   ) -> str:
    """Fill ``out`` with the gate's baseline run and say where it came from:

    * ``"evaluated"`` — ``policy`` (a role: the deployed model's endpoint; on the first local run the base model)
      evaluated now on ``benchmarks`` with the candidate's evaluation ``config``: the same questions, the same
      agent budget, the same tool server — the fairest baseline;
    * ``"stored"`` — the run folder at ``baseline_uri`` (s3:// or a path), e.g. last week's released evaluation;
    * ``"none"`` — neither given: the folder holds the ``NO_BASELINE`` marker and the gate makes an explicit
      first-release decision."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if policy:
        cfg = json.loads(config) if isinstance(config, str) else dict(config or {})
        cfg["agent"] = {**cfg.get("agent", {}), "policy": policy}
        runs = []
        for bench in benchmarks:
            evaluate_stage(bench, out / "runs" / bench, cfg, tools_url=tools_url, limit=limit)
            runs.append(out / "runs" / bench)
        if not runs:
            raise ValueError("a baseline policy needs at least one benchmark")
        merge_runs(runs, out, name=f"baseline {policy}")
        return "evaluated"
    if baseline_uri:
        if Path(baseline_uri).is_dir():
            shutil.copytree(baseline_uri, out, dirs_exist_ok=True)
        else:
            from fathom.storage import download

            download(baseline_uri, out)
        return "stored"
    atomic_write_text(out / NO_BASELINE, "no baseline policy or run was given: first release\n")
    return "none"


def gate_stage(candidate_dir: Path, baseline: str, out: Path, gate: GateConfig | None = None) -> Comparison | None:
    """Compare a candidate run with a baseline run (a local folder or an s3:// URI of one). ``None`` when no
    baseline is given or the folder is a ``NO_BASELINE`` marker (first release: nothing to compare against)."""
    if not baseline or (Path(baseline) / NO_BASELINE).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(baseline)
        if not base_dir.is_dir():
            from fathom.storage import download

            base_dir = download(baseline, Path(tmp) / "baseline")
        comp = compare_runs([base_dir, candidate_dir], out, gate=gate)
    return comp


def copy_reports(run_dir: Path, html_path: str, md_path: str) -> None:
    shutil.copyfile(Path(run_dir) / "report.html", html_path)
    shutil.copyfile(Path(run_dir) / "report.md", md_path)
