"""Glue components of the retraining pipeline (pipelines/retrain.py) — only what the stage components cannot
express on their own:

- `validate_retrain`: the run form on its profile, checked (fails fast with one list of problems);
- `retrain_plan`: the body parameters: settings + where a run writes and the deploy config of its release (its
  outputs are `fathom.retrain.RetrainPlan`, the same table as the body's signature).

Each is a thin wrapper over an existing fathom function. No `from __future__ import annotations` here: KFP reads
the real annotation objects. Bodies import `fathom` inside the function.
"""

from kfp import dsl
from kfp.dsl import Markdown, Output

from components.base import CPU_IMAGE


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
) -> __import__("fathom.retrain", fromlist=["RetrainPlan"]).RetrainPlan:  # evaluated in the task too
    """The body parameters of the run (`fathom.retrain.RetrainPlan`, generated from `BODY_TYPES`): its settings
    (JSON configs as strings) and its layout (`fathom.retrain.body_arguments`: per-run prefixes, the release's
    DeployConfig, the next baseline)."""
    import json

    from fathom.retrain import RetrainPlan, body_arguments

    return RetrainPlan(**body_arguments(json.loads(settings), run_id))
