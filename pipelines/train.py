"""The training pipeline: policy warm start → RAPO stage 1 → stage-2 filter → RAPO stage 2, and synthesizer SFT in
parallel. The warm start (SFT on the offline-web expert's trajectories) is on in the CPU presets and off in `gpu`
(the paper's RL-Zero: the base model passes through by reference).

GPU steps (both RAPO stages, the filter's rollouts and SFT) are placed on the GPU node pool (accelerator type and
limit, node selector, toleration, /dev/shm emptyDir, judge/labeller API keys as env from a Secret); all of that
compiles into the IR and is ignored by `kfp.local`. Generation and training are non-deterministic: caching is off.
"""

import os

from kfp import dsl

from components.base import ALL_SECRETS, SECRETS, on_gpu_pool, with_s3, with_work_volume  # noqa: F401 - SECRETS re-exported
from components.launch import release_trainjobs
from components.train import (
    policy_warmstart,
    prepare_rl_prompts,
    prepare_sft_rows,
    rapo_stage1,
    rapo_stage2,
    stage2_filter,
    synthesizer_sft,
)

GPUS = int(os.environ.get("FATHOM_TRAIN_GPUS", "8"))


def _gpu(task, gpus: int = GPUS):
    """GPU pool, role keys + object store (base model, checkpoint mirror), caching off, and a work volume for the
    models and checkpoints (a training step mirrors its checkpoints to its checkpoint URI as they are saved, so a
    retry resumes)."""
    on_gpu_pool(task, gpus=gpus, secrets=ALL_SECRETS)
    task.set_caching_options(False)
    with_work_volume(task)
    return task


@dsl.pipeline(name="fathom-train", description="RAPO stage 1 + stage-2 filter + RAPO stage 2; synthesizer SFT.")
def train_pipeline(
    preset: str = "cpu-smoke",
    base_model: str = "local:smollm2",
    rl_data_uri: str = "",
    sft_data_uri: str = "",
    n_prompts: int = 4,
    tools_url: str = "",
    judge: str = "exact",
    labeller: str = "heuristic",
    warmstart_config_json: str = "{}",
    stage1_config_json: str = "{}",
    stage2_config_json: str = "{}",
    sft_config_json: str = "{}",
    filter_limit_per_source: int = 4,
    warmstart_checkpoint_uri: str = "",
    stage1_checkpoint_uri: str = "",
    stage2_checkpoint_uri: str = "",
    sft_checkpoint_uri: str = "",
    launcher: str = "inprocess",
    launch_config_json: str = "{}",
):
    """`*_checkpoint_uri`: where each training step mirrors its checkpoints (s3://...) as they are saved, so that a
    retried or restarted step resumes from the newest complete one, and publishes its model (`.../final`, passed on
    by URI); one folder per step, never shared. `launcher` (inprocess | accelerate | trainjob) and
    `launch_config_json` (fathom.launch.config.LaunchConfig fields) choose how the RAPO and SFT steps run: in the
    step's process, `accelerate launch` on the step pod's GPUs, or a Kubeflow Trainer TrainJob of num_nodes ×
    gpus_per_node (the exit handler deletes the run's TrainJobs)."""
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    release = release_trainjobs(launcher=launcher, launch_json=launch_config_json, run_id=run_id)
    release.set_display_name("release the run's TrainJobs").set_caching_options(False)
    launch = {"launcher": launcher, "launch_json": launch_config_json, "run_id": run_id}
    with dsl.ExitHandler(release, name="train"):
        prompts = with_s3(prepare_rl_prompts(uri=rl_data_uri, n=n_prompts, hops=2).set_caching_options(False))
        warm = _gpu(policy_warmstart(preset=preset, base_model=base_model, tools_url=tools_url,
                                     config_json=warmstart_config_json, checkpoint_uri=warmstart_checkpoint_uri))
        warm.set_display_name("policy warm start")
        s1 = _gpu(rapo_stage1(preset=preset, tools_url=tools_url, judge=judge, labeller=labeller,
                              config_json=stage1_config_json, checkpoint_uri=stage1_checkpoint_uri,
                              policy=warm.outputs["model"], dataset=prompts.outputs["dataset"], **launch))
        s1.set_display_name("RAPO stage 1")
        filt = _gpu(stage2_filter(preset=preset, tools_url=tools_url, judge=judge,
                                  limit_per_source=filter_limit_per_source, policy=s1.outputs["model"],
                                  duetqa=prompts.outputs["dataset"]), gpus=1)
        filt.set_display_name("stage-2 filter")
        s2 = _gpu(rapo_stage2(preset=preset, tools_url=tools_url, judge=judge, labeller=labeller,
                              config_json=stage2_config_json, checkpoint_uri=stage2_checkpoint_uri,
                              policy=s1.outputs["model"], dataset=filt.outputs["kept"], **launch))
        s2.set_display_name("RAPO stage 2")
        sft_rows = with_s3(prepare_sft_rows(uri=sft_data_uri).set_caching_options(False))
        sft = _gpu(synthesizer_sft(preset=preset, base_model=base_model, config_json=sft_config_json,
                                   checkpoint_uri=sft_checkpoint_uri, dataset=sft_rows.outputs["dataset"], **launch))
        sft.set_display_name("synthesizer SFT")


PIPELINE = train_pipeline
#: The embedded run: CPU smoke presets on SmolLM2 and the offline web (checkpoints stay in the local root).
LOCAL_ARGUMENTS: dict = {"preset": "cpu-smoke", "base_model": "local:smollm2", "n_prompts": 2,
                         "filter_limit_per_source": 2}
