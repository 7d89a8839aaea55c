"""Evaluation: benchmark datasets, agent adapters, graders (deterministic + LLM judge), honest statistics,
a resumable runner, HTML/Markdown reports, run comparison (the quality gate), report-quality scoring and an
offline benchmark generated from the offline web.

    from fathom.evaluate import EvalConfig, run_eval, compare_runs
    run_eval(EvalConfig(datasets=["simpleqa"], out=Path("runs/x"), limit=20))
"""

from fathom.evaluate.agents import (
    AgentOutput,
    AgentSettings,
    EvalAgent,
    list_agents,
    make_agent,
    register_agent,
)
from fathom.evaluate.datasets import BENCHMARKS, Dataset, DatasetError, Example, load_dataset, parse_jsonl
from fathom.evaluate.graders import Grade, Grader, LLMJudge, choose_grader
from fathom.evaluate.runner import EvalConfig, RunResult, read_results, run_eval
from fathom.evaluate.stats import BenchmarkMetrics, RunMetrics, bootstrap_ci, compute_metrics

__all__ = [
    "BENCHMARKS", "AgentOutput", "AgentSettings", "BenchmarkMetrics", "Dataset", "DatasetError", "EvalAgent",
    "EvalConfig", "Example", "Grade", "Grader", "LLMJudge", "RunMetrics", "RunResult", "bootstrap_ci",
    "choose_grader", "compute_metrics", "list_agents", "load_dataset", "make_agent", "parse_jsonl", "read_results",
    "register_agent", "run_eval",
]


def compare_runs(*args, **kwargs):
    """See :func:`fathom.evaluate.compare.compare_runs`."""
    from fathom.evaluate.compare import compare_runs as _impl

    return _impl(*args, **kwargs)
