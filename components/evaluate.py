"""KFP components of the evaluation stage (thin wrappers over `fathom.evaluate.stages`).

Every body imports `fathom` inside the function (lightweight Python components run the function's source in the
task's interpreter: the project image on a cluster, the current interpreter under `kfp.local`). Numbers crossing
KFP arrive as floats locally: they are cast in the stage functions.
"""


from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate_benchmark(
    benchmark: str,
    config_json: str,
    tools_url: str,
    limit: int,
    run: Output[Dataset],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
    candidate: Input[Model] = None,
):
    """One benchmark: `run` is the run folder (results.jsonl, metrics.json, run.json, reports); `metrics` the
    headline numbers; `report_html`/`report_md` render in the KFP UI. `config_json` is an EvalConfig without
    datasets/out (agent, judge, concurrency, ...); an empty `tools_url` starts the in-process offline stack;
    `limit` <= 0 evaluates every example. With `candidate` (a Model artifact: its folder or object-store URI) the
    policy role is that model: served by vLLM in bf16 inside the step when it has a GPU, else in-process
    (`local:<folder>`)."""
    import contextlib
    import json
    from pathlib import Path

    from fathom.evaluate.stages import copy_reports, evaluate_stage, headline

    config, policy = config_json, contextlib.nullcontext()
    if candidate is not None:
        from components.artifacts import model_source, work_dir
        from fathom.llm.gpu import candidate_policy
        from fathom.rl.stage import materialise_model

        config = json.loads(config_json or "{}")
        # served by vLLM in bf16 on the step's GPU, else in-process (local:<folder>) on CPU
        policy = candidate_policy(str(materialise_model(model_source(candidate), work_dir(run))))
    with policy as role:
        if candidate is not None:
            config.setdefault("agent", {})["policy"] = role
        res = evaluate_stage(benchmark, Path(run.path), config, tools_url=tools_url, limit=limit)
    for key, value in headline(res.metrics).items():
        metrics.log_metric(key, value)
    run.metadata.update({"benchmark": benchmark, "rows": res.metrics.overall.n,
                         "accuracy": res.metrics.overall.accuracy})
    copy_reports(Path(run.path), report_html.path, report_md.path)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluation_report(
    runs: Input[list[Dataset]],
    name: str,
    combined: Output[Dataset],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
):
    """Fan-in: all benchmark runs into one run folder (`combined`) with one report and the headline numbers."""
    from pathlib import Path

    from fathom.evaluate.stages import copy_reports, headline, merge_runs

    m = merge_runs([r.path for r in runs], Path(combined.path), name=name)
    for key, value in headline(m).items():
        metrics.log_metric(key, value)
    combined.metadata.update({"rows": m.overall.n, "benchmarks": ",".join(m.benchmarks)})
    copy_reports(Path(combined.path), report_html.path, report_md.path)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def baseline_evaluation(
    policy: str,
    baseline_uri: str,
    benchmarks: list,
    config_json: str,
    tools_url: str,
    limit: int,
    run: Output[Dataset],
    metrics: Output[Metrics],
) -> str:
    """The gate's baseline run: `policy` (the deployed model's role; locally the base model) evaluated now with
    the candidate's `config_json` on the same `benchmarks`, else the stored run at `baseline_uri`, else a
    first-release marker. Returns evaluated | stored | none."""
    import json
    from pathlib import Path

    from fathom.evaluate.stages import baseline_stage

    source = baseline_stage(Path(run.path), policy=policy, baseline_uri=baseline_uri, benchmarks=list(benchmarks),
                            config=config_json, tools_url=tools_url, limit=limit)
    run.metadata["source"] = source
    if (Path(run.path) / "metrics.json").exists():
        overall = json.loads((Path(run.path) / "metrics.json").read_text())["overall"]
        metrics.log_metric("accuracy", overall["accuracy"])
        metrics.log_metric("n", overall["n"])
    return source


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluation_gate(
    candidate: Input[Dataset],
    baseline: Input[Dataset],
    require: str,
    min_delta: float,
    max_drop: float,
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
) -> bool:
    """Quality gate: is the candidate run better than the baseline run (`baseline_evaluation`)? A baseline that
    holds no run (first release) passes, and says so. Returns whether it passed (the single output, so that the
    `dsl.If` on it also resolves under kfp.local); the reason is in the metrics and the report."""
    import tempfile
    from pathlib import Path

    from fathom.evaluate.compare import GateConfig
    from fathom.evaluate.stages import gate_stage

    out = Path(tempfile.mkdtemp(prefix="gate-"))
    comp = gate_stage(Path(candidate.path), baseline.path, out,
                      GateConfig(require=require, min_delta=float(min_delta), max_drop=float(max_drop)))
    if comp is None:
        text = "No baseline (nothing deployed, no baseline policy): the gate passes as the first release."
        Path(report_md.path).write_text(f"# Quality gate\n\n{text}\n")
        Path(report_html.path).write_text(f"<html><body><h1>Quality gate</h1><p>{text}</p></body></html>")
        metrics.log_metric("passed", 1.0)
        return True
    metrics.log_metric("passed", float(comp.passed))
    metrics.log_metric("delta", comp.pooled.delta)
    metrics.log_metric("delta_ci_low", comp.pooled.ci_low)
    metrics.log_metric("delta_ci_high", comp.pooled.ci_high)
    metrics.log_metric("baseline_accuracy", comp.pooled.baseline)
    metrics.log_metric("candidate_accuracy", comp.pooled.candidate)
    Path(report_md.path).write_text((out / "comparison.md").read_text())
    Path(report_html.path).write_text((out / "comparison.html").read_text())
    return bool(comp.passed)
