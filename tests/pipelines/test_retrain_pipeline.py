"""The retraining pipeline at compile level: tasks and their wiring, the gate condition, the exit handler, caching,
GPU placement and secrets in the IR; discovery by `fathom pipeline`; the plan glue; the recurring-run examples.
(No local run of the whole pipeline: on CPU it trains and evaluates twice over.)"""

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TRAINING = {"rapo-stage1", "stage2-filter", "rapo-stage2", "synthesizer-sft"}
GENERATION = {"duetqa-generate", "sft-corpus", "evaluate-benchmark"}


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    from kfp import compiler

    from pipelines.retrain import PIPELINE

    out = tmp_path_factory.mktemp("retrain") / "retrain.yaml"
    compiler.Compiler().compile(PIPELINE, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    return {"spec": docs[0], "platform": docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]}


def _dag(spec, comp):
    return spec["components"][comp]["dag"]["tasks"]


def _all_tasks(spec, comp="comp-fathom-retrain-run", parents=()):
    """{task name: (task spec, [enclosing components])} of a DAG and every sub-DAG."""
    out = {}
    for name, task in _dag(spec, comp).items():
        out[name] = (task, list(parents))
        sub = task["componentRef"]["name"]
        if "dag" in spec["components"][sub]:
            out.update(_all_tasks(spec, sub, (*parents, sub)))
    return out


def test_retrain_ir_tasks_and_wiring(ir):
    spec = ir["spec"]
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"validate-retrain", "retrain-plan", "fathom-retrain-run"}
    # validate first (nothing else before it), then the plan from its settings, then the body from the plan
    assert "dependentTasks" not in root["validate-retrain"]
    assert root["retrain-plan"]["inputs"]["parameters"]["settings"]["taskOutputParameter"] == {
        "producerTask": "validate-retrain", "outputParameterKey": "Output"}
    assert all(v.get("taskOutputParameter", {}).get("producerTask") == "retrain-plan"
               for v in root["fathom-retrain-run"]["inputs"]["parameters"].values())
    tasks = _all_tasks(spec)
    stages = {"duetqa-generate", "decontaminate", "sft-corpus", "policy-warmstart", "rapo-stage1", "stage2-filter",
              "rapo-stage2", "synthesizer-sft", "convert-checkpoint", "convert-checkpoint-2", "evaluate-benchmark",
              "evaluation-report", "baseline-evaluation", "evaluation-gate", "deploy-release", "smoke-test",
              "teardown-release"}
    assert stages <= set(tasks)

    def artifact_from(task, name):
        return tasks[task][0]["inputs"]["artifacts"][name]["taskOutputArtifact"]

    # the search branch: DuetQA → decontaminate → (warm start →) stage 1 → filter → stage 2 → convert → evaluate
    # → report → gate against the baseline run
    assert artifact_from("decontaminate", "dataset") == {"producerTask": "duetqa-generate",
                                                         "outputArtifactKey": "rl_dataset"}
    assert artifact_from("rapo-stage1", "dataset") == {"producerTask": "decontaminate", "outputArtifactKey": "clean"}
    assert artifact_from("stage2-filter", "duetqa") == {"producerTask": "decontaminate", "outputArtifactKey": "clean"}
    assert artifact_from("rapo-stage1", "policy") == {"producerTask": "policy-warmstart", "outputArtifactKey": "model"}
    assert artifact_from("evaluation-gate", "baseline") == {"producerTask": "baseline-evaluation",
                                                            "outputArtifactKey": "run"}
    assert artifact_from("stage2-filter", "policy")["producerTask"] == "rapo-stage1"
    assert artifact_from("rapo-stage2", "dataset") == {"producerTask": "stage2-filter", "outputArtifactKey": "kept"}
    assert artifact_from("convert-checkpoint", "checkpoint")["producerTask"] == "rapo-stage2"
    assert artifact_from("evaluation-gate", "candidate")["producerTask"] == "evaluation-report"
    # the synthesizer branch in parallel: SFT corpus → SFT → convert with YaRN
    assert artifact_from("synthesizer-sft", "dataset")["producerTask"] == "sft-corpus"
    assert artifact_from("convert-checkpoint-2", "checkpoint")["producerTask"] == "synthesizer-sft"
    assert "sft-corpus" not in str(tasks["rapo-stage1"][0]) and "duetqa" not in str(tasks["synthesizer-sft"][0])
    # the candidate is evaluated per benchmark in a ParallelFor
    assert any(p.startswith("comp-for-loop") for p in tasks["evaluate-benchmark"][1])
    # each training stage mirrors to its own per-run checkpoint prefix from the plan (no shared resume folder)
    body_in = spec["root"]["dag"]["tasks"]["fathom-retrain-run"]["inputs"]["parameters"]
    for key in ("warmstart_checkpoints", "stage1_checkpoints", "stage2_checkpoints", "sft_checkpoints",
                "deploy_config", "policy_uri"):
        assert body_in[key]["taskOutputParameter"] == {"producerTask": "retrain-plan", "outputParameterKey": key}
    ckpts = {t: tasks[t][0]["inputs"]["parameters"]["checkpoint_uri"]["componentInputParameter"]
             for t in ("policy-warmstart", "rapo-stage1", "rapo-stage2", "synthesizer-sft")}
    assert len(set(ckpts.values())) == 4, ckpts


def test_retrain_exit_handler_wraps_the_run(ir):
    spec = ir["spec"]
    body = _dag(spec, "comp-fathom-retrain-run")
    assert set(body) == {"exit-handler-1", "teardown-release"}
    teardown = body["teardown-release"]
    assert teardown["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert teardown["dependentTasks"] == ["exit-handler-1"]
    # the teardown gets the planned DeployConfig (namespace applied), so `ephemeral` deletes the right release
    assert teardown["inputs"]["parameters"]["deploy_config"]["componentInputParameter"] == "deploy_config"
    tasks = _all_tasks(spec)
    for name in ("duetqa-generate", "rapo-stage1", "convert-checkpoint", "evaluation-gate", "deploy-release"):
        assert "comp-exit-handler-1" in tasks[name][1], name


def test_retrain_deploy_only_if_the_gate_passed(ir):
    spec = ir["spec"]
    tasks = _all_tasks(spec)
    cond_comp = tasks["deploy-release"][1][-1]
    assert tasks["smoke-test"][1][-1] == cond_comp
    cond_task = next(t for t, (task, _) in tasks.items() if task["componentRef"]["name"] == cond_comp)
    condition = tasks[cond_task][0]["triggerPolicy"]["condition"]
    # the gate's single output: its channel name (`evaluation-gate-Output`) is one kfp.local's condition evaluator
    # resolves as a task output (a named output of a multi-output component is not, and the branch never runs)
    assert condition == "inputs.parameter_values['pipelinechannel--evaluation-gate-Output'] == true"
    assert tasks[cond_task][0]["inputs"]["parameters"]["pipelinechannel--evaluation-gate-Output"][
        "taskOutputParameter"] == {"producerTask": "evaluation-gate", "outputParameterKey": "Output"}
    assert producer(tasks, "deploy-release", "model") == "convert-checkpoint"  # the evaluated model is deployed
    assert {"convert-checkpoint-2", "evaluation-gate"} <= set(tasks[cond_task][0]["dependentTasks"])  # + synthesizer
    assert tasks["smoke-test"][0]["dependentTasks"] == ["deploy-release"]
    # a released candidate's evaluation is promoted to the next baseline, after the smoke test, nested in the gate
    promote = next(t for t, (task, parents) in tasks.items()
                   if t.startswith("publish-dataset") and cond_comp in parents)
    promote_cond = next(t for t, (task, _) in tasks.items()
                        if task["componentRef"]["name"] == tasks[promote][1][-1])
    assert tasks[promote_cond][0]["dependentTasks"] == ["smoke-test"]
    assert "baseline_parent" in tasks[promote_cond][0]["triggerPolicy"]["condition"]
    assert producer(tasks, promote, "dataset") == "evaluation-report"
    # nothing else is conditional on the gate
    gated = {t for t, (_, parents) in tasks.items() if cond_comp in parents and not t.startswith("condition")}
    assert gated == {"deploy-release", "smoke-test", promote}


def producer(tasks, task, name):
    """The task that produced input artifact `name` of `task`, followed out of enclosing condition/loop DAGs."""
    src = tasks[task][0]["inputs"]["artifacts"][name]
    if "taskOutputArtifact" in src:
        return src["taskOutputArtifact"]["producerTask"]
    parent = next(t for t, (spec, _) in tasks.items() if spec["componentRef"]["name"] == tasks[task][1][-1])
    return producer(tasks, parent, src["componentInputArtifact"])


def test_retrain_caching_off_for_nondeterministic_steps(ir):
    tasks = _all_tasks(ir["spec"])
    for name in TRAINING | GENERATION | {"retrain-plan", "convert-checkpoint", "evaluation-gate", "deploy-release"}:
        task = tasks.get(name, (ir["spec"]["root"]["dag"]["tasks"].get(name), None))[0]
        assert task["cachingOptions"].get("enableCache") is not True, name
    assert tasks["evaluation-report"][0]["cachingOptions"] == {"enableCache": True}  # deterministic: cached
    for name in TRAINING | {"duetqa-generate", "sft-corpus"}:
        assert tasks[name][0]["retryPolicy"]["maxRetryCount"] >= 1, name  # resumable and retried


def test_retrain_gpu_placement_and_secrets(ir):
    from components.base import GPU_NODE_LABEL, GPU_TYPE, WORK_DIR, WORK_VOLUME_SIZE
    from pipelines.data import S3_SECRET
    from pipelines.train import GPUS, SECRETS

    executors = ir["spec"]["deploymentSpec"]["executors"]
    for name in TRAINING | {"evaluate-benchmark"}:
        acc = executors[f"exec-{name}"]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == GPU_TYPE
        assert int(acc["resourceCount"]) == (1 if name in {"stage2-filter", "evaluate-benchmark"} else GPUS), name
        assert "fathom-trainer" in executors[f"exec-{name}"]["container"]["image"]
        plat = ir["platform"][f"exec-{name}"]
        assert GPU_NODE_LABEL in plat["nodeSelector"]["labels"]
        assert plat["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert plat["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        # role keys (judge, labeller) and object-store credentials for the checkpoint mirror
        assert {s["secretName"] for s in plat["secretAsEnv"]} == {S3_SECRET, *SECRETS}, name
        # the work folder (models, checkpoints) on a generic ephemeral volume, not unbounded node storage
        vol = plat["genericEphemeralVolume"][0]
        assert vol["mountPath"] == WORK_DIR and vol["size"] == WORK_VOLUME_SIZE, name
        env = executors[f"exec-{name}"]["container"]["env"]
        assert {"name": "FATHOM_WORK_DIR", "value": WORK_DIR} in env, name
    for name in ("duetqa-generate", "sft-corpus", "convert-checkpoint", "evaluation-gate", "retrain-plan", "smoke-test"):
        assert "accelerator" not in executors[f"exec-{name}"]["container"].get("resources", {}), name
    for e in executors.values():
        assert "pip install" not in " ".join(e["container"].get("command", []))  # install_kfp_package=False


def test_retrain_form_is_small_and_typed(ir):
    """The KFP UI form: at most 15 typed parameters, the profile first; no JSON-in-a-string; no local-only knobs."""
    from pipelines.retrain import LOCAL_ARGUMENTS

    params = ir["spec"]["root"]["inputDefinitions"]["parameters"]
    assert len(params) <= 15, sorted(params)
    assert params["profile"]["defaultValue"] == "paper"
    assert params["benchmarks"]["parameterType"] == "LIST" and params["solvers"]["parameterType"] == "LIST"
    assert params["n_duetqa"]["parameterType"] == "NUMBER_INTEGER"
    assert not {"cluster", "servers_dir", "ephemeral", "deploy_config", "preset"} & set(params)
    assert not any(k.endswith("_json") or k.endswith("_config") for k in params)
    for key in ("policy_base_model", "judge", "labeller", "teacher", "query_llm", "output_uri", "namespace",
                "config_uri", "gate_require", "n_sft"):
        assert key in params, key
    assert LOCAL_ARGUMENTS == {"profile": "embedded"}


#: the embedded run's body arguments (2 CPU cores: 3 DuetQA items → 2 kept → stage 1 is one RAPO step, an epoch)
EMBEDDED_LOCAL = {
    "preset": "cpu", "policy_base_model": "local:smollm2", "synth_base_model": "local:smollm2", "judge": "exact",
    "labeller": "heuristic", "tools_url": "", "n_duetqa": 3, "n_sft": 2, "duetqa_config": "{}", "sft_config": "{}",
    "filter_limit_per_source": 2, "stage1_config_json": json.dumps({"rapo_epochs": 1.0}),
    "stage2_config_json": json.dumps({"rapo_epochs": 1.0, "max_steps": 1}),
    "sft_config_json": json.dumps({"max_steps": 2}),
    "dtype": "bf16", "synth_yarn_factor": 2.0, "synth_original_max_pos": 40960, "benchmarks": ["offline-web"],
    "eval_limit": 20, "baseline_policy": "local:smollm2", "baseline_uri": "", "gate_require": "better",
    "gate_min_delta": 0.0, "gate_max_drop": 0.0, "cluster": False, "servers_dir": "", "ready_timeout_s": 1800.0,
    "expect": "", "rollback": True, "ephemeral": False,
}


def test_embedded_profile_keeps_the_local_run():
    """`fathom pipeline run retrain --local` resolves to exactly the arguments the embedded run had."""
    from fathom.evaluate.heldout import HELD_OUT_WORLD_SEED, heldout_eval_config
    from fathom.retrain import body_arguments, resolve
    from fathom.deploy.manifests import DeployConfig

    args = body_arguments(resolve({"profile": "embedded"}), "run-1")
    for key, value in EMBEDDED_LOCAL.items():
        assert args[key] == value, key
    ev = json.loads(args["eval_config_json"])
    assert ev == {k: v for k, v in heldout_eval_config(20, local_dtype="auto").items() if k != "limit"}
    assert ev["web_seed"] == HELD_OUT_WORLD_SEED
    assert args["run_uri"] == args["stage1_checkpoints"] == args["policy_uri"] == args["baseline_parent"] == ""
    deploy = DeployConfig.model_validate_json(args["deploy_config"])
    assert deploy.policy.name == "fathom-search" and deploy.policy.max_model_len == 8192


def test_plan_outputs_match_the_body_and_the_library():
    """The plan component's outputs are the body's parameters, in the order the library produces them."""
    import typing

    from components.retrain import retrain_plan
    from fathom.retrain import body_arguments, resolve
    from pipelines.retrain import BODY_PARAMETERS, retrain_run

    ann = typing.get_type_hints(retrain_plan.python_func)["return"]
    args = body_arguments(resolve({"profile": "embedded"}), "r")
    assert list(ann._fields) == list(args) == list(BODY_PARAMETERS)
    assert set(retrain_run.component_spec.inputs) == set(BODY_PARAMETERS)
    out = retrain_plan.python_func(settings=json.dumps(resolve({"profile": "embedded"})), run_id="r")
    assert out._asdict() == args


def test_run_layout():
    """Per-run prefixes, the namespace and model URIs in the DeployConfig, the next baseline (library)."""
    from pydantic import ValidationError

    from fathom.deploy.manifests import DeployConfig
    from fathom.retrain import run_layout

    plan = run_layout({"output_uri": "s3://fathom/retrain/", "baseline_uri": "", "deploy_config": {},
                       "namespace": "staging"}, "run-1")
    assert plan["run_uri"] == "s3://fathom/retrain/runs/run-1"
    assert len({plan["stage1_checkpoints"], plan["stage2_checkpoints"], plan["sft_checkpoints"]}) == 3
    assert plan["stage1_checkpoints"].startswith(plan["run_uri"] + "/checkpoints/")
    cfg = DeployConfig.model_validate_json(plan["deploy_config"])
    assert cfg.namespace == "staging"
    assert cfg.policy.storage_uri == plan["policy_uri"] == "s3://fathom/retrain/runs/run-1/models/fathom-search"
    assert cfg.synthesizer.storage_uri == plan["synth_uri"]
    assert (plan["baseline_parent"], plan["baseline_name"]) == ("s3://fathom/retrain", "deployed-eval")

    explicit = run_layout({"output_uri": "s3://b/x", "baseline_uri": "s3://b/evals/live",
                           "deploy_config": json.dumps({"synthesizer": None}), "namespace": ""}, "r")
    assert (explicit["baseline_parent"], explicit["baseline_name"]) == ("s3://b/evals", "live")
    assert explicit["synth_uri"] == "" and DeployConfig.model_validate_json(explicit["deploy_config"]).namespace == "fathom"

    local = run_layout({"output_uri": "", "baseline_uri": "", "deploy_config": "{}", "namespace": ""}, "r")
    assert local["run_uri"] == local["stage1_checkpoints"] == local["policy_uri"] == local["baseline_parent"] == ""
    assert DeployConfig.model_validate_json(local["deploy_config"]) == DeployConfig()

    with pytest.raises(ValidationError, match="Kubernetes name"):
        run_layout({"output_uri": "", "baseline_uri": "", "deploy_config": "{}", "namespace": "Bad_NS"}, "r")


def test_retrain_discovered_by_fathom_pipeline(tmp_path):
    from kfp.components import load_component_from_file
    from typer.testing import CliRunner

    from fathom import pipeline_cli
    from fathom.cli import app

    assert "retrain" in pipeline_cli.discover()
    res = CliRunner().invoke(app, ["pipeline", "list"])
    assert res.exit_code == 0 and "fathom-retrain" in res.output, res.output
    res = CliRunner().invoke(app, ["pipeline", "compile", "retrain", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert load_component_from_file(str(tmp_path / "retrain.yaml")).name == "fathom-retrain"


@pytest.mark.parametrize("path", sorted((REPO / "manifests" / "static").glob("recurring-run-*.yaml")),
                         ids=lambda p: p.stem)
def test_recurring_run_examples_match_their_pipeline(path, tmp_path):
    """Every recurring-run example is a KFP V2beta1RecurringRun whose parameters exist in its pipeline."""
    from kfp_server_api import ApiClient

    from fathom import pipeline_cli

    body = yaml.safe_load(path.read_text())
    run = ApiClient()._ApiClient__deserialize(body, "V2beta1RecurringRun")
    assert len(run.trigger.cron_schedule.cron.split()) == 6 and run.mode == "ENABLE"
    assert run.no_catchup is True and int(run.max_concurrency) == 1
    name = path.stem.removeprefix("recurring-run-")
    ir = next(yaml.safe_load_all(pipeline_cli.compile_pipeline(name, tmp_path).read_text()))
    unknown = set(run.runtime_config.parameters) - set(ir["root"]["inputDefinitions"]["parameters"])
    assert not unknown, f"{path.name}: not parameters of pipeline {name!r}: {sorted(unknown)}"
