"""The evaluation pipeline: benchmarks fan out (`dsl.ParallelFor`), their runs fan in to one report
(`dsl.Collected`), and an optional quality gate compares the result with a baseline run.

    fathom pipeline compile --out build/          # IR YAML
    fathom pipeline run evaluate --local          # kfp.local, embedded model, offline web, LOCAL_ARGUMENTS
"""

import json

from kfp import dsl

from components.base import ALL_SECRETS, with_secrets
from components.evaluate import baseline_evaluation, evaluate_benchmark, evaluation_gate, evaluation_report

DEFAULT_BENCHMARKS = ["simpleqa", "frames", "webwalker", "musique", "gpqa-diamond", "medqa"]

# Tiny budgets for the embedded one-box run (SmolLM2 on CPU, offline stack per step).
LOCAL_ARGUMENTS = {
    "benchmarks": ["offline-web", "simpleqa"],
    "limit": 1,
    "config_json": json.dumps({"agent": {"agent": "fathom", "policy": "local:smollm2", "max_turns": 1,
                                         "max_tokens_per_turn": 16, "max_total_tokens": 3072},
                               "concurrency": 1, "offline_n": 2, "example_timeout_s": 300}),
    "tools_url": "",
    "name": "embedded",
    "baseline_uri": "",
}


@dsl.pipeline(name="fathom-evaluate",
              description="DeepSearch and reasoning benchmarks in parallel, one report, optional quality gate.")
def evaluate_pipeline(
    benchmarks: list = DEFAULT_BENCHMARKS,
    config_json: str = "{}",
    tools_url: str = "",
    limit: int = 0,
    name: str = "candidate",
    baseline_uri: str = "",
    gate_require: str = "better",
    gate_min_delta: float = 0.0,
    gate_max_drop: float = 0.0,
):
    """`config_json` is an EvalConfig without datasets/out (agent + policy role, judge role, concurrency, budgets);
    `tools_url` a tool server (empty: each step starts the offline stack); `limit` <= 0 = every example;
    `baseline_uri` a run folder (s3:// or path) of the deployed model: when set, the gate decides "is it better"."""
    with dsl.ParallelFor(benchmarks, parallelism=4, name="benchmarks") as bench:
        ev = evaluate_benchmark(benchmark=bench, config_json=config_json, tools_url=tools_url, limit=limit)
        ev.set_display_name("evaluate benchmark").set_caching_options(False).set_retry(num_retries=2)
        ev.set_cpu_limit("4").set_memory_limit("16G")
        with_secrets(ev, ALL_SECRETS)  # judge / query-LLM keys; the object store (a candidate Model by URI)
    report = evaluation_report(runs=dsl.Collected(ev.outputs["run"]), name=name)
    report.set_display_name("evaluation report")
    with dsl.If(baseline_uri != "", name="gate"):
        base = baseline_evaluation(policy="", baseline_uri=baseline_uri, benchmarks=benchmarks,
                                   config_json=config_json, tools_url=tools_url, limit=limit)
        base.set_display_name("baseline run").set_caching_options(False).set_retry(num_retries=2)
        with_secrets(base, ALL_SECRETS)  # reads the stored baseline run at baseline_uri (s3://)
        gate = evaluation_gate(candidate=report.outputs["combined"], baseline=base.outputs["run"],
                               require=gate_require, min_delta=gate_min_delta, max_drop=gate_max_drop)
        gate.set_display_name("quality gate").set_caching_options(False).set_retry(num_retries=2)


PIPELINE = evaluate_pipeline
