"""The search-agent training stage (stage 1 or stage 2) as a library function: typed spec in, a folder out.

Output folder::

    OUT/checkpoint-N/        model, optimizer, scheduler, RNG (TRL) + rapo_state.json (schedule, pruned set, replay)
    OUT/runs/                TensorBoard events
    OUT/metrics.jsonl        one row per logged step
    OUT/plots/*.png          Fig. 5–7 style curves
    OUT/final/               the trained policy (safetensors + tokenizer), `.complete` when finished
    OUT/summary.json         what ran and the last metrics

Resumable: ``resume=True`` continues from the newest checkpoint (same next batch); a finished stage is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from fathom.errors import ConfigError

log = logging.getLogger(__name__)


class SearchTrainSpec(BaseModel):
    """One RAPO training stage of the search agent."""

    out_dir: Path = Field(description="Output folder (checkpoints, metrics, plots, final model).")
    preset: str = Field(default="cpu-smoke", description="RAPOConfig preset: gpu | cpu | cpu-smoke, or a YAML file of "
                        "RAPOConfig fields (`fathom train search --config FILE`).")
    stage: Literal[1, 2] = Field(default=1, description="1 = Eq. 4 reward on DuetQA; 2 = Eq. 8 on the filtered mix.")
    model: str = Field(default="local:smollm2", description="Policy to start from: local:smollm2 or a HF folder.")
    data: Path | None = Field(default=None, description="Prompt rows {id, prompt, answer}; None = offline-web "
                                                        "ground-truth questions.")
    n_prompts: int = Field(default=4, ge=1, description="Prompts drawn from the offline web when data is None.")
    tools_url: str | None = Field(default=None, description="Tool server; None = start the offline stack.")
    judge: str = Field(default="exact", description="Answer judge role ('exact' offline).")
    labeller: str = Field(default="heuristic", description="Step labeller role ('heuristic' offline).")
    resume: bool = Field(default=False, description="Continue from the newest checkpoint in out_dir (or mirrored at "
                         "checkpoint_uri).")
    checkpoint_uri: str | None = Field(default=None, description="Mirror every checkpoint here as it is saved "
                                       "(s3:// or a folder) and resume from the newest complete one "
                                       "(fathom.checkpoints).")
    allow_config_change: bool = Field(default=False, description="Resume even when the settings differ from the "
                                      "checkpoint's run (the differences are logged and recorded).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="RAPOConfig field overrides.")


def resolve_model_dir(model: str) -> Path:
    from fathom.llm.embedded import resolve_local_model

    return Path(resolve_local_model(model.removeprefix("local:")))


@contextlib.contextmanager
def tool_backend(tools_url: str | None, **stack_kw) -> Iterator[str]:
    """The tool server URL: the given one, or the offline stack started for the duration of the block."""
    if tools_url:
        yield tools_url
        return
    try:
        from fathom.web.stack import offline_stack
    except ImportError as exc:  # pragma: no cover - depends on the web package
        raise ConfigError("no --tools URL and the offline stack (fathom.web.stack) is unavailable") from exc
    with offline_stack(**stack_kw) as stack:
        yield stack.tools_url


CONFIG_FILE = "rapo_config.json"


def _check_resume_config(out: Path, args, checkpoint: str | None, allow_change: bool) -> dict:
    """Record the run's settings (`rapo_config.json`); on resume, refuse settings that differ from the recorded
    ones (a silent mix of two configs in one run) unless `allow_change`, which logs and returns the differences."""
    from fathom.rl.config import config_diff, config_fingerprint

    current = config_fingerprint(args)
    path = out / CONFIG_FILE
    changes: dict = {}
    if checkpoint and path.is_file():
        diff = config_diff(json.loads(path.read_text()), current)
        if diff and not allow_change:
            lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"resume of {out} with settings that differ from its checkpoint's run ({lines}); "
                              "use the same preset/overrides, or allow_config_change=True (--allow-config-change)")
        if diff:
            log.warning("resuming %s with changed settings: %s", out, diff)
            changes = {k: list(v) for k, v in diff.items()}
    from fathom.storage import atomic_write_json

    atomic_write_json(path, current, default=str)
    return changes


def load_policy(model_dir: Path, *, bf16: bool = False):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32)
    return model, tok


def train_search(spec: SearchTrainSpec) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one RAPO stage. Returns the summary written to summary.json."""
    from fathom.checkpoints import mirror_callbacks, prepare_resume
    from fathom.rl.config import rapo_config
    from fathom.rl.data import load_rl_rows, offline_rows
    from fathom.rl.metrics import MetricsFileCallback, plot_metrics
    from fathom.rl.rewards import AnswerJudge
    from fathom.rl.rollout import RolloutEngine, http_tools_factory
    from fathom.rl.trainer import RAPOTrainer

    out = Path(spec.out_dir)
    final = out / "final"
    if (final / ".complete").exists() and not spec.resume:
        log.info("%s is complete; skipping (pass resume=True to continue training)", final)
        return json.loads((out / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rl_rows(spec.data) if spec.data else offline_rows(spec.n_prompts, hops=3 if spec.stage == 2 else 2)
    stage_defaults: dict[str, Any] = {"reward_mode": "step" if spec.stage == 2 else "vanilla",
                                      "judge": spec.judge, "labeller": spec.labeller, "tools_url": spec.tools_url}
    if spec.preset == "gpu":
        stage_defaults["rapo_epochs"] = 2.0 if spec.stage == 2 else 10.0
    args = rapo_config(spec.preset, str(out), **{**stage_defaults, **spec.overrides})
    model_dir = resolve_model_dir(spec.model)
    metrics_path, checkpoint = prepare_resume(out, resume=spec.resume, mirror_uri=spec.checkpoint_uri)
    config_changes = _check_resume_config(out, args, checkpoint, spec.allow_config_change)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    t0 = time.time()
    model, tok = load_policy(model_dir, bf16=bool(args.bf16))
    if args.freeze_layers:
        from fathom.rl.warmstart import freeze_bottom

        freeze_bottom(model, args.freeze_layers)
    with tool_backend(spec.tools_url) as tools_url:
        engine = RolloutEngine(http_tools_factory(tools_url, args.tool_preset), args.rollout_config())
        try:
            trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok,
                                  judge=AnswerJudge.from_role(args.judge),
                                  callbacks=[MetricsFileCallback(metrics_path),
                                             *mirror_callbacks(spec.checkpoint_uri)])
            trainer.train(resume_from_checkpoint=checkpoint)
        finally:
            engine.close()
    if trainer.is_world_process_zero():
        final.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(final))
        tok.save_pretrained(final)
        (final / ".complete").write_text(f"stage {spec.stage}\n")
        plots = plot_metrics(metrics_path, out / "plots", title=f"RAPO stage {spec.stage} ({spec.preset})") \
            if args.plots else []
        trainer.curriculum.finish()
        last = next((r for r in reversed(trainer.state.log_history) if "reward" in r), {})
        summary = {"stage": spec.stage, "preset": spec.preset, "model_in": str(model_dir), "final": str(final),
                   "steps": trainer.state.global_step, "prompts": len(rows), "seconds": round(time.time() - t0, 1),
                   "pruned": len(trainer.curriculum.pruned), "replay_buffer": len(trainer.replay),
                   "replay_insertions": trainer.replay.insertions, "epochs": trainer.curriculum.epoch,
                   "epoch_history": trainer.curriculum.history,
                   "exhausted": trainer.curriculum.exhausted, "plots": [str(p) for p in plots],
                   "metrics": str(metrics_path), "last": last,
                   "rapo": {"prune": args.rapo_prune, "scale": args.rapo_scale_advantages, "replay": args.rapo_replay},
                   "reward_mode": args.reward_mode, "config_changes_on_resume": config_changes}
        from fathom.storage import atomic_write_json

        atomic_write_json(out / "summary.json", summary, default=str)
        return summary
    return {}


# ---------------------------------------------------------------------------------------------------------------
# The pipeline step (paths and URIs only; components/train.py maps KFP artifacts onto it)


def materialise_model(spec: str, work: Path) -> str:
    """`local:...` and folders pass through; an s3:// URI is downloaded next to the working folder (once: a
    retried step reuses the download)."""
    if spec.startswith("s3://"):
        from fathom import storage

        dest = Path(str(work) + ".base-model")
        return str(dest if dest.is_dir() else storage.download(spec, dest))
    return spec


def search_stage(work: Path, *, stage: int, preset: str, base_model: str, data: Path, tools_url: str = "",
                 judge: str = "", labeller: str = "", overrides: dict[str, Any] | None = None,
                 checkpoint_uri: str = "", launch=None) -> dict[str, Any]:
    """One RAPO stage as a pipeline step: the base policy by role, folder or s3:// URI; `data` a prompt file or a
    folder holding `rl.jsonl`; with `checkpoint_uri`, every checkpoint is mirrored there as it is saved, a retry
    resumes from the newest complete one, and the final model is published to `<checkpoint_uri>/final` (the
    summary's `uri`; the model is passed on by reference, not copied). `launch`: a
    :class:`fathom.launch.config.LaunchConfig` (None: in this process)."""
    data = Path(data)
    data = data / "rl.jsonl" if (data / "rl.jsonl").exists() else data
    spec = SearchTrainSpec(out_dir=work, preset=preset, stage=stage, model=materialise_model(base_model, work),
                           data=data, tools_url=tools_url or None, judge=judge or "exact",
                           labeller=labeller or "heuristic", resume=True, checkpoint_uri=checkpoint_uri or None,
                           overrides=overrides or {})
    return run_training("search", spec, launch, train_search, checkpoint_uri=checkpoint_uri, step=f"rapo-stage{stage}")


def run_training(kind: str, spec, launch, train, *, checkpoint_uri: str, step: str) -> dict[str, Any]:
    """Run a training spec in this process (`launch` None or `inprocess`) or through its launcher (`accelerate
    launch` on the pod's GPUs, a Kubeflow Trainer TrainJob: :mod:`fathom.launch`); the final model is published
    to `<checkpoint_uri>/final`, the summary's `uri` (a TrainJob's node 0 has already published the working
    folder, final model included)."""
    from fathom.checkpoints import publish_final

    if launch is None or launch.launcher == "inprocess":
        summary = train(spec)
    else:
        from fathom.launch.run import run_stage

        summary = run_stage(kind, spec, launch, checkpoint_uri=checkpoint_uri, step=step)
    if not summary:  # not the main process
        return summary
    if launch is not None and launch.launcher == "trainjob":
        return {**summary, "uri": f"{checkpoint_uri.rstrip('/')}/final"}
    return {**summary, "uri": publish_final(Path(summary["final"]), checkpoint_uri)}
