"""KFP components of the training stages (thin wrappers over fathom.rl / fathom.sft).

No `from __future__ import annotations` here: KFP reads the real annotation objects. Bodies import `fathom` inside
the function. GPU placement, secrets and caching are set where the pipeline composes these (see
pipelines/train.py and components.base.on_gpu_pool).

With a `checkpoint_uri` (S3-compatible), every checkpoint is mirrored there as it is saved (a retried or restarted
pod resumes from the newest complete one) and the trained model is published to `<checkpoint_uri>/final`: the Model
artifact carries that URI (`metadata["uri"]`), not a copy. Without one (the embedded run), the Model artifact holds
the model folder. The working folder sits on the task's work volume (`components.artifacts.work_dir`).

The GPU training steps (RAPO stage 1/2, synthesizer SFT) take `launcher` = inprocess | accelerate | trainjob and
`launch_json` (fathom.launch.config.LaunchConfig fields): in the component's process, `accelerate launch` on all GPUs
of the pod, or a Kubeflow Trainer TrainJob of num_nodes × gpus_per_node (`run_id` labels it for the exit handler).
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.base import GPU_IMAGE

_PRESET_DOC = "preset: gpu | cpu | cpu-smoke"


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def prepare_rl_prompts(uri: str, n: int, hops: int, dataset: Output[Dataset]):
    """RL prompt rows {id, prompt, answer}: downloaded from `uri` (a dataset folder/file, local or s3://) or, when
    empty, `n` ground-truth questions of the offline web."""
    from pathlib import Path

    from fathom.rl.data import load_rl_rows, offline_rows, write_jsonl

    if uri:
        from fathom import storage

        local = storage.download(uri, Path(dataset.path + ".src"))
        rows = load_rl_rows(local)
    else:
        rows = offline_rows(int(n), hops=int(hops))
    Path(dataset.path).mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, Path(dataset.path) / "rl.jsonl")
    dataset.metadata.update({"rows": len(rows), "columns": "id,prompt,answer,source"})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def prepare_sft_rows(uri: str, dataset: Output[Dataset]):
    """Synthesizer SFT rows (`messages`): downloaded from `uri`, or a tiny synthetic set when empty."""
    from pathlib import Path

    from fathom.rl.data import write_jsonl
    from fathom.sft.trainer import load_sft_rows, tiny_sft_rows

    if uri:
        from fathom import storage

        rows = load_sft_rows(storage.download(uri, Path(dataset.path + ".src")))
    else:
        rows = tiny_sft_rows()
    Path(dataset.path).mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, Path(dataset.path) / "sft.jsonl")
    dataset.metadata.update({"rows": len(rows)})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def policy_warmstart(preset: str, base_model: str, tools_url: str, config_json: str, model: Output[Model],
                     metrics: Output[Metrics], curves: Output[HTML], checkpoint_uri: str = ""):
    """Policy warm start: SFT on the offline-web expert's trajectories, tool responses masked out of the loss
    (`preset` cpu | cpu-smoke; `gpu` = off, the paper's RL-Zero: the base policy passes through by reference).
    `checkpoint_uri`: checkpoints mirrored there as saved (a retry resumes), the policy published to `.../final`."""
    import json
    from pathlib import Path

    from components.artifacts import export_model, work_dir
    from fathom.rl.metrics import plots_html
    from fathom.rl.warmstart import warmstart_stage

    summary = warmstart_stage(work_dir(model), preset=preset, base_model=base_model, tools_url=tools_url,
                              overrides=json.loads(config_json or "{}"), checkpoint_uri=checkpoint_uri)
    export_model(model, final=summary["final"], uri=summary.get("model_uri") or "",
                 metadata={"enabled": bool(summary.get("enabled")), "cached_from": summary.get("cached_from", "")})
    for key in ("trajectories", "tokens", "trained_tokens", "steps", "first_loss", "last_loss", "seconds"):
        if isinstance(summary.get(key), (int, float)):
            metrics.log_metric(key, float(summary[key]))
    Path(curves.path).write_text(plots_html([Path(p) for p in summary.get("plots", []) if Path(p).is_file()]))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def rapo_stage1(preset: str, tools_url: str, judge: str, labeller: str, config_json: str, checkpoint_uri: str,
                policy: Input[Model], dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
                curves: Output[HTML], launcher: str = "inprocess", launch_json: str = "{}", run_id: str = ""):
    """RAPO stage 1 (Eq. 4 reward) from the warm-start step's policy (its folder, or its URI when passed by
    reference). `checkpoint_uri`: checkpoints mirrored there as saved (a retry resumes), the model published to
    `.../final` and passed on by reference."""
    import json

    from components.artifacts import export_training, launch_of, model_source, work_dir
    from fathom.rl.stage import search_stage

    summary = search_stage(work_dir(model), stage=1, preset=preset, base_model=model_source(policy),
                           data=dataset.path, tools_url=tools_url, judge=judge, labeller=labeller,
                           overrides=json.loads(config_json or "{}"), checkpoint_uri=checkpoint_uri,
                           launch=launch_of(launcher, launch_json, run_id))
    export_training(summary, model, metrics, curves)


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def stage2_filter(preset: str, tools_url: str, judge: str, limit_per_source: int, policy: Input[Model],
                  duetqa: Input[Dataset], kept: Output[Dataset], metrics: Output[Metrics]):
    """Stage-2 data: DuetQA + math + ≥3-hop MuSiQue, filtered against the stage-1 policy (keep the unsolved)."""
    import json
    from pathlib import Path

    from components.artifacts import model_source, work_dir
    from fathom.rl.data import read_records, write_jsonl
    from fathom.rl.filter import build_and_filter
    from fathom.rl.stage import materialise_model

    src = Path(duetqa.path)
    duet_file = src / "rl.jsonl" if (src / "rl.jsonl").exists() else src
    stats = build_and_filter(Path(kept.path), model=materialise_model(model_source(policy), work_dir(kept)), tools_url=tools_url or None, preset=preset,
                             duetqa=duet_file, limit_per_source=int(limit_per_source) or None, judge=judge)
    write_jsonl(read_records(Path(kept.path) / "kept.jsonl"), Path(kept.path) / "rl.jsonl")
    for key in ("total", "kept", "dropped"):
        metrics.log_metric(key, stats[key])
    kept.metadata.update({"rows": stats["kept"], "filter": json.dumps(stats["by_source"])})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def rapo_stage2(preset: str, tools_url: str, judge: str, labeller: str, config_json: str, checkpoint_uri: str,
                policy: Input[Model], dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
                curves: Output[HTML], launcher: str = "inprocess", launch_json: str = "{}", run_id: str = ""):
    """RAPO stage 2 (Eq. 8 step-level reward) continuing from the stage-1 policy on the filtered mixture."""
    import json

    from components.artifacts import export_training, launch_of, model_source, work_dir
    from fathom.rl.stage import search_stage

    summary = search_stage(work_dir(model), stage=2, preset=preset, base_model=model_source(policy),
                           data=dataset.path, tools_url=tools_url, judge=judge, labeller=labeller,
                           overrides=json.loads(config_json or "{}"), checkpoint_uri=checkpoint_uri,
                           launch=launch_of(launcher, launch_json, run_id))
    export_training(summary, model, metrics, curves)


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def synthesizer_sft(preset: str, base_model: str, config_json: str, checkpoint_uri: str, dataset: Input[Dataset],
                    model: Output[Model], metrics: Output[Metrics], curves: Output[HTML], launcher: str = "inprocess",
                    launch_json: str = "{}", run_id: str = ""):
    """Synthesizer SFT (assistant-only loss, YaRN ×2 in the saved config, packing, gradient checkpointing)."""
    import json

    from components.artifacts import export_training, launch_of, work_dir
    from fathom.sft.trainer import sft_stage

    summary = sft_stage(work_dir(model), preset=preset, base_model=base_model, data=dataset.path,
                        overrides=json.loads(config_json or "{}"), checkpoint_uri=checkpoint_uri,
                        launch=launch_of(launcher, launch_json, run_id))
    export_training(summary, model, metrics, curves)
