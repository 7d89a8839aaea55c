"""The end-to-end retraining pipeline (scheduled weekly, or started from the KFP UI):

    plan ── DuetQA ── decontaminate ── warm start ── RAPO stage 1 ── stage-2 filter ── RAPO stage 2 ── convert
                                                                          ── evaluate ×benchmarks ── report
         └─ SFT corpus ── synthesizer SFT ── convert (YaRN ×2) ─┐                                            │
                                                                │               quality gate vs baseline ────┘
                                                                └── if passed: deploy (KServe) ── smoke test / rollback
                                                                                                 └─ promote baseline
    exit handler: release what the run started (local servers; with `ephemeral`, the cluster release)

Stage components are reused as they are (components/data, train, evaluate, release); components/retrain.py adds
only the glue: per-run object-store prefixes + the release's DeployConfig (`retrain_plan`), conversion and
evaluation of a Model *artifact* (`convert_trained`, `evaluate_candidate`).

The gate compares the candidate's evaluation with the baseline's on the same questions: `baseline_policy` (the
deployed model's endpoint; on the first local run the base model) is evaluated in the run; without it, the run
folder at `baseline_uri` (the deployed model's stored evaluation) is used; with neither, the gate makes an explicit
first-release decision. A released candidate's evaluation is published there
(default `<output_uri>/deployed-eval`), so next week's run is gated against what is now serving.

    fathom pipeline compile retrain --out build/
    fathom pipeline schedule retrain --host $KFP --cron "0 0 2 * * 6"   # or manifests/static/recurring-run-retrain.yaml
"""


import json

from kfp import dsl

from components.base import ALL_SECRETS, S3, SECRETS, on_gpu_pool, with_secrets
from components.data import decontaminate, duetqa_generate, publish_dataset, sft_corpus
from components.evaluate import baseline_evaluation, evaluation_gate, evaluation_report
from components.release import deploy_release, smoke_test, teardown_release
from components.retrain import convert_trained, evaluate_candidate, retrain_plan
from components.train import policy_warmstart, rapo_stage1, rapo_stage2, stage2_filter, synthesizer_sft
from pipelines.evaluate import DEFAULT_BENCHMARKS
from pipelines.release import LOCAL_ARGUMENTS as _RELEASE_LOCAL
from pipelines.train import GPUS

from fathom.evaluate.heldout import heldout_eval_config

#: role API keys (judge, labeller, teacher, solvers) and object-store credentials, as env from Kubernetes Secrets
_S3 = S3
_ALL = ALL_SECRETS


def _gpu(task, name: str, gpus: int = GPUS):
    """GPU node pool, secrets, caching off (non-deterministic), retried (resumes from its checkpoint URI)."""
    on_gpu_pool(task, gpus=gpus, secrets=_ALL)
    return task.set_display_name(name).set_caching_options(False).set_retry(num_retries=2, backoff_duration="60s")


def _cpu(task, name: str, *, secrets=None, retries: int = 0, cpu: str | None = None, memory: str | None = None):
    with_secrets(task, secrets)
    task.set_display_name(name).set_caching_options(False)
    if retries:
        task.set_retry(num_retries=retries)
    if cpu:
        task.set_cpu_limit(cpu)
    if memory:
        task.set_memory_limit(memory)
    return task


#: outputs of `retrain_plan` the body receives (its `deploy_config` replaces the parameter: namespace + model URIs set)
PLAN_OUTPUTS = ("run_uri", "stage1_checkpoints", "stage2_checkpoints", "sft_checkpoints", "policy_uri", "synth_uri",
                "deploy_config", "baseline_parent", "baseline_name")


@dsl.pipeline(name="fathom-retrain-run", description="The retraining run inside its exit handler (see fathom-retrain).")
def retrain_run(
    preset: str, policy_base_model: str, synth_base_model: str, judge: str, labeller: str, tools_url: str,
    n_duetqa: int, n_sft: int, duetqa_config: str, sft_config: str, filter_limit_per_source: int,
    stage1_config_json: str, stage2_config_json: str, sft_config_json: str,
    dtype: str, synth_yarn_factor: float, synth_original_max_pos: int,
    benchmarks: list, eval_config_json: str, eval_limit: int, baseline_policy: str, baseline_uri: str,
    gate_require: str,
    gate_min_delta: float, gate_max_drop: float,
    cluster: bool, servers_dir: str, ready_timeout_s: float, expect: str, rollback: bool, ephemeral: bool,
    run_uri: str, stage1_checkpoints: str, stage2_checkpoints: str, sft_checkpoints: str, policy_uri: str,
    synth_uri: str, deploy_config: str, baseline_parent: str, baseline_name: str,
):
    """A nested pipeline so that the exit handler's teardown can take the planned DeployConfig as an input (an
    exit task may not depend on another task of its own DAG)."""
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    teardown = _cpu(teardown_release(servers_dir=servers_dir, run_id=run_id, ephemeral=ephemeral,
                                     deploy_config=deploy_config), "release what the run started")

    with dsl.ExitHandler(teardown, name="retrain"):
        # ---- data (independent, in parallel)
        duet = _cpu(duetqa_generate(n=n_duetqa, config_json=duetqa_config, tools_url=tools_url), "duetqa self-play",
                    secrets=SECRETS, retries=2, cpu="4", memory="16G")
        corpus = _cpu(sft_corpus(n=n_sft, config_json=sft_config, tools_url=tools_url), "deepresearch-sft corpus",
                      secrets=SECRETS, retries=2, cpu="4", memory="16G")
        clean = _cpu(decontaminate(dataset=duet.outputs["rl_dataset"]), "decontaminate (vs evaluation sets)")
        with dsl.If(run_uri != "", name="publish-datasets"):
            for task, name in ((duet, "duetqa"), (corpus, "sft")):
                _cpu(publish_dataset(dataset=task.outputs["dataset"], uri=run_uri, name=f"datasets/{name}"),
                     f"publish {name}", secrets=_S3, retries=3)

        # ---- search agent: RAPO stage 1 → stage-2 filter → RAPO stage 2
        warm = _gpu(policy_warmstart(preset=preset, base_model=policy_base_model, tools_url=tools_url,
                                     config_json="{}"), "policy warm start")
        s1 = _gpu(rapo_stage1(preset=preset, tools_url=tools_url, judge=judge, labeller=labeller,
                              config_json=stage1_config_json, checkpoint_uri=stage1_checkpoints,
                              policy=warm.outputs["model"], dataset=clean.outputs["clean"]), "RAPO stage 1")
        filt = _gpu(stage2_filter(preset=preset, tools_url=tools_url, judge=judge,
                                  limit_per_source=filter_limit_per_source, policy=s1.outputs["model"],
                                  duetqa=clean.outputs["clean"]), "stage-2 filter", gpus=1)
        s2 = _gpu(rapo_stage2(preset=preset, tools_url=tools_url, judge=judge, labeller=labeller,
                              config_json=stage2_config_json, checkpoint_uri=stage2_checkpoints,
                              policy=s1.outputs["model"], dataset=filt.outputs["kept"]), "RAPO stage 2")

        # ---- synthesizer SFT (parallel to the search branch)
        sft = _gpu(synthesizer_sft(preset=preset, base_model=synth_base_model, config_json=sft_config_json,
                                   checkpoint_uri=sft_checkpoints, dataset=corpus.outputs["dataset"]),
                   "synthesizer SFT")

        # ---- convert (uploaded to the run's models/ prefix for KServe)
        policy = _cpu(convert_trained(checkpoint=s2.outputs["model"], dtype=dtype, yarn_factor=0.0,
                                      original_max_pos=0, upload_uri=policy_uri),
                      "convert search model", secrets=_S3, retries=1, cpu="4", memory="32G")
        synth = _cpu(convert_trained(checkpoint=sft.outputs["model"], dtype=dtype, yarn_factor=synth_yarn_factor,
                                     original_max_pos=synth_original_max_pos, upload_uri=synth_uri),
                     "convert synthesizer (YaRN)", secrets=_S3, retries=1, cpu="4", memory="32G")

        # ---- evaluate the candidate, then gate it against the deployed model's evaluation
        with dsl.ParallelFor(benchmarks, parallelism=4, name="benchmarks") as bench:
            ev = _gpu(evaluate_candidate(candidate=policy.outputs["model"], benchmark=bench,
                                         config_json=eval_config_json, tools_url=tools_url, limit=eval_limit),
                      "evaluate candidate", gpus=1)
        report = evaluation_report(runs=dsl.Collected(ev.outputs["run"]), name="candidate")
        report.set_display_name("evaluation report")
        base = _gpu(baseline_evaluation(policy=baseline_policy, baseline_uri=baseline_uri, benchmarks=benchmarks,
                                        config_json=eval_config_json, tools_url=tools_url, limit=eval_limit),
                    "evaluate baseline", gpus=1)
        gate = _cpu(evaluation_gate(candidate=report.outputs["combined"], baseline=base.outputs["run"],
                                    require=gate_require, min_delta=gate_min_delta, max_drop=gate_max_drop),
                    "quality gate", secrets=_S3, retries=2)

        # ---- release only a better candidate; promote its evaluation to the next baseline
        with dsl.If(gate.outputs["passed"] == True, name="deploy-if-better"):  # a KFP condition on the task output
            deploy = _cpu(deploy_release(model=policy.outputs["model"], deploy_config=deploy_config, cluster=cluster,
                                         servers_dir=servers_dir, run_id=run_id, ready_timeout_s=ready_timeout_s),
                          "deploy", secrets=_S3, retries=1)
            deploy.after(synth)
            smoke = _cpu(smoke_test(release=deploy.outputs["release"], expect=expect, rollback=rollback),
                         "smoke test / rollback")
            with dsl.If(baseline_parent != "", name="promote-baseline"):
                promote = publish_dataset(dataset=report.outputs["combined"], uri=baseline_parent, name=baseline_name)
                _cpu(promote, "promote evaluation to baseline", secrets=_S3, retries=3).after(smoke)


@dsl.pipeline(name="fathom-retrain",
              description="DuetQA → RAPO stage 1 → stage-2 filter → RAPO stage 2 and SFT corpus → synthesizer SFT; "
                          "convert, evaluate, gate against the deployed model, deploy with smoke test and rollback.")
def retrain_pipeline(
    # training presets and role specs
    preset: str = "gpu",
    policy_base_model: str = "s3://fathom/models/base/qwen3-4b",
    synth_base_model: str = "s3://fathom/models/base/qwen3-4b",
    judge: str = "exact",
    labeller: str = "heuristic",
    tools_url: str = "http://fathom-tools.fathom.svc.cluster.local",
    # data
    n_duetqa: int = 5000,
    n_sft: int = 2500,
    duetqa_config: str = "{}",
    sft_config: str = "{}",
    filter_limit_per_source: int = 0,
    stage1_config_json: str = "{}",
    stage2_config_json: str = "{}",
    sft_config_json: str = "{}",
    # conversion
    dtype: str = "bf16",
    synth_yarn_factor: float = 2.0,
    synth_original_max_pos: int = 40960,
    # evaluation and quality gate
    benchmarks: list = DEFAULT_BENCHMARKS,
    eval_config_json: str = "{}",
    eval_limit: int = 0,
    baseline_policy: str = "",
    baseline_uri: str = "s3://fathom/retrain/deployed-eval",
    gate_require: str = "better",
    gate_min_delta: float = 0.0,
    gate_max_drop: float = 0.0,
    # outputs and release
    output_uri: str = "s3://fathom/retrain",
    namespace: str = "fathom",
    deploy_config: str = "{}",
    cluster: bool = True,
    servers_dir: str = "",
    ready_timeout_s: float = 1800.0,
    expect: str = "",
    rollback: bool = True,
    ephemeral: bool = False,
):
    """`preset`: gpu | cpu-smoke (RAPO and SFT). `*_base_model`: local:<name>, a folder or s3:// URI. `judge` /
    `labeller`: RAPO roles ('exact' / 'heuristic' offline, else `URL#model@KEY_ENV`); DuetQA and SFT-corpus roles
    (solvers, obfuscator, teacher) live in `duetqa_config` / `sft_config`, the eval judge in `eval_config_json`.
    `tools_url`: the tool server (empty: each step starts the offline stack). `filter_limit_per_source` <= 0 and
    `eval_limit` <= 0 mean all. `baseline_policy`: role of the deployed model (its endpoint), evaluated in this run
    on the candidate's questions; else `baseline_uri`: a stored evaluation run folder of it; neither: first release.
    `output_uri`: S3 prefix; the run writes `runs/<run id>/{checkpoints,models,datasets}` there (empty: pipeline root
    only). `namespace` overrides the one in `deploy_config` (JSON DeployConfig). `ephemeral`: the exit handler also
    deletes the cluster release (a staging namespace)."""
    params = dict(locals())
    plan = _cpu(retrain_plan(output_uri=output_uri, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, baseline_uri=baseline_uri,
                             deploy_config=deploy_config, namespace=namespace), "plan",
                secrets=_ALL)
    body = retrain_run(**{k: v for k, v in params.items() if k not in ("output_uri", "namespace", "deploy_config")},
                       **{k: plan.outputs[k] for k in PLAN_OUTPUTS})
    body.set_display_name("retrain")


PIPELINE = retrain_pipeline

#: The embedded run (`fathom pipeline run retrain --local`): SmolLM2 on 2 CPU cores, the offline web, the world
#: sources for DuetQA and the SFT corpus, the `cpu` presets (the warm start is reused from `fathom models
#: --prepare-policy` when its inputs are the same), the gate against the base model on held-out questions of
#: another world, a local release answering a smoke question. Tests shrink it further with `preset=cpu-smoke`.
LOCAL_ARGUMENTS: dict = {
    "preset": "cpu",
    "policy_base_model": "local:smollm2",
    "synth_base_model": "local:smollm2",
    "judge": "exact",
    "labeller": "heuristic",
    "tools_url": "",
    "n_duetqa": 12,
    "n_sft": 8,
    "duetqa_config": "{}",
    "sft_config": "{}",
    "filter_limit_per_source": 4,
    "stage1_config_json": json.dumps({"rapo_epochs": 1.0}),
    "stage2_config_json": json.dumps({"rapo_epochs": 1.0, "max_steps": 2}),
    "benchmarks": ["offline-web"],
    "eval_config_json": json.dumps({k: v for k, v in heldout_eval_config(40).items() if k != "limit"}),
    "eval_limit": 40,
    "baseline_policy": "local:smollm2",
    "baseline_uri": "",
    "output_uri": "",
    "namespace": "",
    "deploy_config": _RELEASE_LOCAL["deploy_config"],
    "cluster": False,
    "expect": "",
    "ephemeral": False,
}
