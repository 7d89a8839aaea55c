"""The end-to-end retraining pipeline (scheduled weekly, or started from the KFP UI):

    validate ── plan ── DuetQA ── decontaminate ── warm start ── RAPO stage 1 ── stage-2 filter ── RAPO stage 2 ── convert
                                                                          ── evaluate ×benchmarks ── report
         └─ SFT corpus ── synthesizer SFT ── convert (YaRN ×2) ─┐                                            │
                                                                │               quality gate vs baseline ────┘
                                                                └── if passed: deploy (KServe) ── smoke test / rollback
                                                                                                 └─ promote baseline
    exit handler: release what the run started (local servers; with `ephemeral`, the cluster release)

The run form has 15 typed parameters on top of a profile (`fathom/profiles/{paper,smoke,embedded}.yaml`, every
advanced knob) and an optional `config_uri` of overrides; `validate` resolves and checks them first
(`fathom.retrain`), `plan` turns the settings into the body's parameters and the run layout. Stage components are
reused as they are (components/data, train, evaluate, release); components/retrain.py adds only the glue.

The gate compares the candidate's evaluation with the baseline's on the same questions: `baseline_policy` (the
deployed model's endpoint; on the first local run the base model) is evaluated in the run; without it, the run
folder at `baseline_uri` (the deployed model's stored evaluation) is used; with neither, the gate makes an explicit
first-release decision. A released candidate's evaluation is published there
(default `<output_uri>/deployed-eval`), so next week's run is gated against what is now serving.

    fathom pipeline compile retrain --out build/
    fathom pipeline upload retrain --host $KFP
    fathom pipeline schedule retrain --host $KFP --cron "0 0 2 * * 6" --args-file manifests/static/retrain-args.yaml
"""


import inspect

from kfp import dsl

from components.base import ALL_SECRETS, GPU_IMAGE, S3, SECRETS, on_gpu_pool, with_secrets, with_work_volume
from components.data import decontaminate, duetqa_generate, publish_dataset, sft_corpus
from components.evaluate import baseline_evaluation, evaluate_benchmark, evaluation_gate, evaluation_report
from components.release import convert_checkpoint, deploy_release, smoke_test, teardown_release
from components.retrain import retrain_plan, validate_retrain
from components.train import policy_warmstart, rapo_stage1, rapo_stage2, stage2_filter, synthesizer_sft
from fathom.retrain import BODY_PARAMETERS, BODY_SETTINGS, BODY_TYPES, PLAN_OUTPUTS  # noqa: F401 - re-exported
from pipelines.train import GPUS

#: role API keys (judge, labeller, teacher, solvers) and object-store credentials, as env from Kubernetes Secrets
_S3 = S3
_ALL = ALL_SECRETS


def _gpu(task, name: str, gpus: int = GPUS, *, work: bool = False):
    """GPU node pool, secrets, caching off (non-deterministic), retried. `work`: a work volume for a step that holds
    models or checkpoints (a training step resumes a retry from the checkpoints it mirrors to its checkpoint URI)."""
    on_gpu_pool(task, gpus=gpus, secrets=_ALL)
    if work:
        with_work_volume(task)
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


def _retrain_run(*args):
    """A nested pipeline so that the exit handler's teardown can take the planned DeployConfig as an input (an
    exit task may not depend on another task of its own DAG). Its parameters are `fathom.retrain.BODY_TYPES` (the
    signature is generated from that table, as are the plan component's outputs)."""
    p = dict(zip(BODY_PARAMETERS, args))
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    teardown = _cpu(teardown_release(servers_dir=p["servers_dir"], run_id=run_id, ephemeral=p["ephemeral"],
                                     deploy_config=p["deploy_config"], launcher=p["launcher"],
                                     launch_json=p["launch_config_json"]), "release what the run started")
    # how the GPU training steps run: in the step, `accelerate launch` on its GPUs, or a TrainJob of N nodes
    launch = {"launcher": p["launcher"], "launch_json": p["launch_config_json"], "run_id": run_id}

    with dsl.ExitHandler(teardown, name="retrain"):
        # ---- data (independent, in parallel)
        duet = _cpu(duetqa_generate(n=p["n_duetqa"], config_json=p["duetqa_config"], tools_url=p["tools_url"]),
                    "duetqa self-play", secrets=SECRETS, retries=2, cpu="4", memory="16G")
        corpus = _cpu(sft_corpus(n=p["n_sft"], config_json=p["sft_config"], tools_url=p["tools_url"]),
                      "deepresearch-sft corpus", secrets=SECRETS, retries=2, cpu="4", memory="16G")
        clean = _cpu(decontaminate(dataset=duet.outputs["rl_dataset"]), "decontaminate (vs evaluation sets)")
        with dsl.If(p["run_uri"] != "", name="publish-datasets"):
            for task, name in ((duet, "duetqa"), (corpus, "sft")):
                _cpu(publish_dataset(dataset=task.outputs["dataset"], uri=p["run_uri"], name=f"datasets/{name}"),
                     f"publish {name}", secrets=_S3, retries=3)

        # ---- search agent: warm start → RAPO stage 1 → stage-2 filter → RAPO stage 2 (models passed by URI)
        warm = _gpu(policy_warmstart(preset=p["preset"], base_model=p["policy_base_model"], tools_url=p["tools_url"],
                                     config_json="{}", checkpoint_uri=p["warmstart_checkpoints"]),
                    "policy warm start", work=True)
        s1 = _gpu(rapo_stage1(preset=p["preset"], tools_url=p["tools_url"], judge=p["judge"], labeller=p["labeller"],
                              config_json=p["stage1_config_json"], checkpoint_uri=p["stage1_checkpoints"],
                              policy=warm.outputs["model"], dataset=clean.outputs["clean"], **launch),
                  "RAPO stage 1", work=True)
        filt = _gpu(stage2_filter(preset=p["preset"], tools_url=p["tools_url"], judge=p["judge"],
                                  limit_per_source=p["filter_limit_per_source"], policy=s1.outputs["model"],
                                  duetqa=clean.outputs["clean"]), "stage-2 filter", gpus=1, work=True)
        s2 = _gpu(rapo_stage2(preset=p["preset"], tools_url=p["tools_url"], judge=p["judge"], labeller=p["labeller"],
                              config_json=p["stage2_config_json"], checkpoint_uri=p["stage2_checkpoints"],
                              policy=s1.outputs["model"], dataset=filt.outputs["kept"], **launch),
                  "RAPO stage 2", work=True)

        # ---- synthesizer SFT (parallel to the search branch)
        sft = _gpu(synthesizer_sft(preset=p["preset"], base_model=p["synth_base_model"],
                                   config_json=p["sft_config_json"], checkpoint_uri=p["sft_checkpoints"],
                                   dataset=corpus.outputs["dataset"], **launch),
                   "synthesizer SFT", work=True)

        # ---- convert (uploaded to the run's models/ prefix for KServe; the artifact then carries that URI)
        policy = _cpu(convert_checkpoint(src="", checkpoint=s2.outputs["model"], dtype=p["dtype"], yarn_factor=0.0,
                                         original_max_pos=0, upload_uri=p["policy_uri"]),
                      "convert search model", secrets=_S3, retries=1, cpu="4", memory="32G")
        synth = _cpu(convert_checkpoint(src="", checkpoint=sft.outputs["model"], dtype=p["dtype"],
                                        yarn_factor=p["synth_yarn_factor"],
                                        original_max_pos=p["synth_original_max_pos"], upload_uri=p["synth_uri"]),
                     "convert synthesizer (YaRN)", secrets=_S3, retries=1, cpu="4", memory="32G")

        # ---- evaluate the candidate, then gate it against the deployed model's evaluation
        with dsl.ParallelFor(p["benchmarks"], parallelism=4, name="benchmarks") as bench:
            ev = _gpu(evaluate_benchmark(candidate=policy.outputs["model"], benchmark=bench,
                                         config_json=p["eval_config_json"], tools_url=p["tools_url"],
                                         limit=p["eval_limit"]),
                      "evaluate candidate", gpus=1, work=True)
            ev.set_container_image(GPU_IMAGE)  # the candidate runs in-process on the GPU
        report = evaluation_report(runs=dsl.Collected(ev.outputs["run"]), name="candidate")
        report.set_display_name("evaluation report")
        base = _gpu(baseline_evaluation(policy=p["baseline_policy"], baseline_uri=p["baseline_uri"],
                                        benchmarks=p["benchmarks"], config_json=p["eval_config_json"],
                                        tools_url=p["tools_url"], limit=p["eval_limit"]),
                    "evaluate baseline", gpus=1)
        gate = _cpu(evaluation_gate(candidate=report.outputs["combined"], baseline=base.outputs["run"],
                                    require=p["gate_require"], min_delta=p["gate_min_delta"],
                                    max_drop=p["gate_max_drop"]),
                    "quality gate", secrets=_S3, retries=2)

        # ---- release only a better candidate; promote its evaluation to the next baseline
        with dsl.If(gate.outputs["Output"] == True, name="deploy-if-better"):  # a KFP condition on the task output
            deploy = _cpu(deploy_release(model=policy.outputs["model"], deploy_config=p["deploy_config"],
                                         cluster=p["cluster"], servers_dir=p["servers_dir"], run_id=run_id,
                                         ready_timeout_s=p["ready_timeout_s"]),
                          "deploy", secrets=_S3, retries=1)
            deploy.after(synth)
            smoke = _cpu(smoke_test(release=deploy.outputs["release"], expect=p["expect"], agent=p["smoke_agent"],
                                    rollback=p["rollback"]),
                         "smoke test / rollback")
            with dsl.If(p["baseline_parent"] != "", name="promote-baseline"):
                promote = publish_dataset(dataset=report.outputs["combined"], uri=p["baseline_parent"],
                                          name=p["baseline_name"])
                _cpu(promote, "promote evaluation to baseline", secrets=_S3, retries=3).after(smoke)


_retrain_run.__signature__ = inspect.Signature(
    [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t) for k, t in BODY_TYPES.items()])
retrain_run = dsl.pipeline(name="fathom-retrain-run",
                           description="The retraining run inside its exit handler (see fathom-retrain).")(_retrain_run)


@dsl.pipeline(name="fathom-retrain",
              description="DuetQA → RAPO stage 1 → stage-2 filter → RAPO stage 2 and SFT corpus → synthesizer SFT; "
                          "convert, evaluate, gate against the deployed model, deploy with smoke test and rollback.")
def retrain_pipeline(
    profile: str = "paper",
    policy_base_model: str = "",
    synth_base_model: str = "",
    judge: str = "",
    labeller: str = "",
    query_llm: str = "",
    teacher: str = "",
    solvers: list = [],  # noqa: B006 - KFP reads the default
    n_duetqa: int = 0,
    n_sft: int = 0,
    benchmarks: list = [],  # noqa: B006
    gate_require: str = "",
    output_uri: str = "",
    namespace: str = "",
    config_uri: str = "",
):
    """The run form (`fathom.retrain.RetrainForm`; empty / 0 = the profile's value). `profile`: paper | smoke |
    embedded, a versioned file in `fathom/profiles/` holding every advanced knob (presets, budgets, stage configs,
    evaluation config, release). Roles are `URL#model@KEY_ENV` (`judge` 'exact' and `labeller` 'heuristic' need no
    model); `solvers` the DuetQA roles [M1, M2, M3] or one for all. `config_uri`: a YAML/JSON of advanced
    overrides of the profile's settings (local or s3://). The first step validates everything (roles, keys,
    endpoints, tool server, object store, base models, baseline) and fails with one list of problems before any
    GPU is requested."""
    check = validate_retrain(profile=profile, policy_base_model=policy_base_model, synth_base_model=synth_base_model,
                             judge=judge, labeller=labeller, query_llm=query_llm, teacher=teacher, solvers=solvers,
                             n_duetqa=n_duetqa, n_sft=n_sft, benchmarks=benchmarks, gate_require=gate_require,
                             output_uri=output_uri, namespace=namespace, config_uri=config_uri)
    _cpu(check, "validate (endpoints, secrets, buckets, base models)", secrets=_ALL, retries=1)
    plan = _cpu(retrain_plan(settings=check.outputs["Output"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "plan",
                secrets=_ALL)
    body = retrain_run(**{k: plan.outputs[k] for k in BODY_PARAMETERS})
    body.set_display_name("retrain")


PIPELINE = retrain_pipeline

#: The embedded run (`fathom pipeline run retrain --local`): the `embedded` profile (fathom/profiles/embedded.yaml):
#: SmolLM2 on 2 CPU cores, the offline web, the world sources, the `cpu` presets, the gate against the base model on
#: held-out questions of another world, a local release answering a smoke question. Tests shrink it further with
#: a `config_uri` of overrides (e.g. `preset: cpu-smoke`).
LOCAL_ARGUMENTS: dict = {"profile": "embedded"}
