"""Glue components of the retraining pipeline (pipelines/retrain.py) — only what the stage components cannot
express on their own:

- `retrain_plan`: where a run writes (per-run object-store prefixes) and the deploy config of its release;
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
def retrain_plan(
    output_uri: str,
    run_id: str,
    baseline_uri: str,
    deploy_config: str,
    namespace: str,
) -> NamedTuple("RetrainPlan", [("run_uri", str), ("stage1_checkpoints", str), ("stage2_checkpoints", str),
                                ("sft_checkpoints", str), ("policy_uri", str), ("synth_uri", str),
                                ("deploy_config", str), ("baseline_parent", str), ("baseline_name", str)]):
    """Per-run prefixes under `output_uri` (`<output_uri>/runs/<run_id>/...`; all empty when `output_uri` is empty:
    checkpoints stay in the pipeline root and nothing is uploaded; models go to `.../models/<InferenceService name>`),
    the DeployConfig of the release (`namespace` and the converted models' storage URIs set), and where a released candidate's evaluation becomes the next baseline
    (`baseline_uri`, else `<output_uri>/deployed-eval`; empty: not promoted)."""
    import json
    from collections import namedtuple

    from fathom.deploy.manifests import DeployConfig

    base = output_uri.rstrip("/")
    run = f"{base}/runs/{run_id or 'manual'}" if base else ""

    def under(rel: str) -> str:
        return f"{run}/{rel}" if run else ""

    cfg = DeployConfig.model_validate(json.loads(deploy_config or "{}")).model_dump()
    policy_uri = under(f"models/{cfg['policy']['name']}")
    synth_uri = under(f"models/{cfg['synthesizer']['name']}") if cfg.get("synthesizer") else ""
    if namespace:
        cfg["namespace"] = namespace
    if policy_uri:
        cfg["policy"]["storage_uri"] = policy_uri
    if synth_uri:
        cfg["synthesizer"]["storage_uri"] = synth_uri
    release = DeployConfig.model_validate(cfg)  # re-validated: a bad namespace fails here, before any training
    target = (baseline_uri or (f"{base}/deployed-eval" if base else "")).rstrip("/")
    parent, _, name = target.rpartition("/") if target else ("", "", "")
    plan = namedtuple("RetrainPlan", ["run_uri", "stage1_checkpoints", "stage2_checkpoints", "sft_checkpoints",
                                      "policy_uri", "synth_uri", "deploy_config", "baseline_parent", "baseline_name"])
    return plan(run, under("checkpoints/rapo-stage1"), under("checkpoints/rapo-stage2"),
                under("checkpoints/synthesizer-sft"), policy_uri, synth_uri, release.model_dump_json(), parent, name)


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
    """`evaluate_benchmark` with the policy role set to the candidate model in-process (`local:<artifact path>`);
    `config_json` is an EvalConfig without datasets/out (its agent.policy is replaced)."""
    import json
    from pathlib import Path

    from fathom.evaluate.stages import copy_reports, evaluate_stage, headline

    cfg = json.loads(config_json or "{}")
    cfg.setdefault("agent", {})["policy"] = f"local:{candidate.path}"
    res = evaluate_stage(benchmark, Path(run.path), cfg, tools_url=tools_url, limit=limit)
    for key, value in headline(res.metrics).items():
        metrics.log_metric(key, value)
    run.metadata.update({"benchmark": benchmark, "rows": res.metrics.overall.n, "accuracy": res.metrics.overall.accuracy})
    copy_reports(Path(run.path), report_html.path, report_md.path)
