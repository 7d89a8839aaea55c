"""Glue components of the retraining pipeline (pipelines/retrain.py) — only what the stage components cannot
express on their own:

- `validate_retrain`: the run form on its profile, checked (fails fast with one list of problems);
- `retrain_plan`: the body parameters: settings + where a run writes and the deploy config of its release;
- `convert_trained`: `fathom.convert` of a trained *Model artifact* (the release component takes a URI string);
- `evaluate_candidate`: one benchmark on a *Model artifact* in-process (the evaluation component takes a role).

Each is a thin wrapper over an existing fathom function. No `from __future__ import annotations` here: KFP reads
the real annotation objects. Bodies import `fathom` inside the function.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_retrain(
    profile: str,
    policy_base_model: str,
    synth_base_model: str,
    judge: str,
    labeller: str,
    query_llm: str,
    teacher: str,
    solvers: list,
    n_duetqa: int,
    n_sft: int,
    benchmarks: list,
    gate_require: str,
    output_uri: str,
    namespace: str,
    config_uri: str,
    report: Output[Markdown],
) -> str:
    """The run form on its profile (`fathom.retrain.resolve`), then every check (`fathom.retrain.validate`:
    roles, keys, endpoints, tool server, object store, buckets, base models, baseline). Fails with one message
    listing every problem; returns the resolved settings (JSON) for the plan."""
    import json

    from fathom.retrain import RetrainForm, resolve, validate

    form = RetrainForm(profile=profile, policy_base_model=policy_base_model, synth_base_model=synth_base_model,
                       judge=judge, labeller=labeller, query_llm=query_llm, teacher=teacher, solvers=list(solvers),
                       n_duetqa=int(n_duetqa), n_sft=int(n_sft), benchmarks=list(benchmarks),
                       gate_require=gate_require, output_uri=output_uri, namespace=namespace, config_uri=config_uri)
    settings = resolve(form)
    problems = validate(settings)
    with open(report.path, "w") as f:
        f.write(f"# Run settings ({profile})\n\n" + ("\n".join(f"- {p}" for p in problems) or "all checks passed")
                + "\n\n```json\n" + json.dumps(settings, indent=2, default=str) + "\n```\n")
    if problems:
        raise ValueError(f"the {profile} run cannot start; fix these {len(problems)} problem(s):\n"
                         + "\n".join(f"  - {p}" for p in problems))
    return json.dumps(settings)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def retrain_plan(
    settings: str,
    run_id: str,
) -> NamedTuple("RetrainPlan", [
    ("preset", str), ("policy_base_model", str), ("synth_base_model", str), ("judge", str), ("labeller", str),
    ("tools_url", str), ("n_duetqa", int), ("n_sft", int), ("duetqa_config", str), ("sft_config", str),
    ("filter_limit_per_source", int), ("stage1_config_json", str), ("stage2_config_json", str),
    ("sft_config_json", str), ("dtype", str), ("synth_yarn_factor", float), ("synth_original_max_pos", int),
    ("benchmarks", list), ("eval_config_json", str), ("eval_limit", int), ("baseline_policy", str),
    ("baseline_uri", str), ("gate_require", str), ("gate_min_delta", float), ("gate_max_drop", float),
    ("cluster", bool), ("servers_dir", str), ("ready_timeout_s", float), ("expect", str), ("smoke_agent", bool),
    ("rollback", bool), ("ephemeral", bool),
    ("run_uri", str), ("stage1_checkpoints", str), ("stage2_checkpoints", str), ("sft_checkpoints", str),
    ("policy_uri", str), ("synth_uri", str), ("deploy_config", str), ("baseline_parent", str),
    ("baseline_name", str)]):
    """The body parameters of the run: its settings (JSON configs as strings) and its layout
    (`fathom.retrain.body_arguments`: per-run prefixes, the release's DeployConfig, the next baseline)."""
    import json
    from collections import namedtuple

    from fathom.retrain import body_arguments

    args = body_arguments(json.loads(settings), run_id)
    return namedtuple("RetrainPlan", list(args))(**args)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def convert_trained(
    checkpoint: Input[Model],
    dtype: str,
    yarn_factor: float,
    original_max_pos: int,
    upload_uri: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """`fathom convert` of a trained Model artifact → serving folder `model` (YaRN rope_scaling when `yarn_factor`
    > 0); `upload_uri` (s3://...) also uploads it for KServe's storage initializer."""
    from fathom.convert.convert import ConvertConfig, convert_checkpoint

    yarn = float(yarn_factor) > 0
    cfg = ConvertConfig(src=checkpoint.path, out=model.path, dtype=dtype, yarn_factor=float(yarn_factor) if yarn else None,
                        original_max_pos=int(original_max_pos) if yarn and int(original_max_pos) > 0 else None,
                        upload=upload_uri or None, force=True)
    m = convert_checkpoint(cfg).manifest
    model.metadata.update({"dtype": m["dtype"], "source_kind": m["source_kind"], "rope_scaling": m["rope_scaling"] or {},
                           "uri": upload_uri})
    metrics.log_metric("parameters", m["parameters"])
    metrics.log_metric("bytes", sum(f["bytes"] for f in m["files"].values()))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_candidate(
    candidate: Input[Model],
    benchmark: str,
    config_json: str,
    tools_url: str,
    limit: int,
    run: Output[Dataset],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
):
    """`evaluate_benchmark` with the policy role set to the candidate model: served by vLLM in bf16 inside the step
    when it has a GPU, else in-process (`local:<artifact path>`);
    `config_json` is an EvalConfig without datasets/out (its agent.policy is replaced)."""
    import json
    from pathlib import Path

    from fathom.evaluate.stages import copy_reports, evaluate_stage, headline
    from fathom.llm.gpu import candidate_policy

    cfg = json.loads(config_json or "{}")
    with candidate_policy(candidate.path) as role:  # vLLM bf16 on the step's GPU, else local:<path> on CPU
        cfg.setdefault("agent", {})["policy"] = role
        res = evaluate_stage(benchmark, Path(run.path), cfg, tools_url=tools_url, limit=limit)
    for key, value in headline(res.metrics).items():
        metrics.log_metric(key, value)
    run.metadata.update({"benchmark": benchmark, "rows": res.metrics.overall.n, "accuracy": res.metrics.overall.accuracy})
    copy_reports(Path(run.path), report_html.path, report_md.path)
