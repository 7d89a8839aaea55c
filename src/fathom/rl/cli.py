"""`fathom train ...`: RAPO training of the search agent, the stage-2 filter, and synthesizer SFT.

    fathom train search --preset cpu-smoke --out DIR [--data PATH] [--stage 1|2] [--resume]
    fathom train filter --preset cpu-smoke --policy DIR --out DIR [--duetqa P] [--math P] [--musique P]
    fathom train synthesizer --preset cpu-smoke --out DIR [--data PATH] [--resume]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

train_app = typer.Typer(help="Train the search agent (RAPO) and the synthesizer (SFT).", no_args_is_help=True)


def _overrides(items: list[str] | None) -> dict:
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _quiet() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@train_app.command("search")
def search(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    preset: str = typer.Option("cpu-smoke", help="gpu | cpu | cpu-smoke (presets/rapo-<name>.yaml beside the trainer)"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="A YAML file of RAPOConfig fields (replaces --preset)."),
    data: Path | None = typer.Option(None, help="Prompt rows {id, prompt, answer} (JSONL/JSON/Parquet/folder)."),
    stage: int = typer.Option(1, min=1, max=2, help="1 = Eq. 4 reward; 2 = Eq. 8 step-level reward."),
    model: str = typer.Option("local:smollm2", help="Starting policy (stage 2: the stage-1 final folder)."),
    tools: str | None = typer.Option(None, help="Tool server URL (default: start the offline stack)."),
    judge: str = typer.Option("exact", help="Answer judge role ('exact' offline)."),
    labeller: str = typer.Option("heuristic", help="Step labeller role ('heuristic' offline)."),
    n_prompts: int = typer.Option(4, help="Offline-web questions when --data is not given."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    allow_config_change: bool = typer.Option(False, "--allow-config-change",
                                             help="Resume even when the settings differ from the checkpoint's."),
    plain_grpo: bool = typer.Option(False, "--plain-grpo", help="Turn all three RAPO switches off."),
    set_: list[str] | None = typer.Option(None, "--set", help="RAPOConfig override key=value (repeatable)."),
) -> None:
    """RAPO training of the search agent (one stage)."""
    _quiet()
    from fathom.rl.stage import SearchTrainSpec, train_search

    overrides = _overrides(set_)
    if plain_grpo:
        overrides.update(rapo_prune=False, rapo_scale_advantages=False, rapo_replay=False)
    summary = train_search(SearchTrainSpec(out_dir=out, preset=str(config) if config else preset, stage=stage,
                                           model=model, data=data, n_prompts=n_prompts, tools_url=tools,
                                           judge=judge, labeller=labeller, resume=resume,
                                           allow_config_change=allow_config_change, overrides=overrides))
    typer.echo(json.dumps({k: summary.get(k) for k in ("final", "steps", "pruned", "replay_insertions", "plots",
                                                        "metrics")}, indent=2, default=str))


@train_app.command("warmstart")
def warmstart(
    out: Path = typer.Option(..., "--out", help="Output folder (data/expert.jsonl, checkpoints, final/)."),
    preset: str = typer.Option("cpu", help="cpu | cpu-smoke | gpu (off: RL-Zero), or a YAML file "
                               "(presets/warmstart-<name>.yaml beside the trainer)."),
    model: str = typer.Option("local:smollm2", help="Base policy."),
    tools: str | None = typer.Option(None, help="Tool server URL serving the offline world (default: start it)."),
    world_seed: int = typer.Option(0, help="Offline world of the training questions."),
    set_: list[str] | None = typer.Option(None, "--set", help="WarmStartConfig override key=value (repeatable)."),
) -> None:
    """Policy warm start: SFT on the offline-web expert's trajectories (tool responses masked out of the loss)."""
    _quiet()
    from fathom.rl.warmstart import WarmStartSpec, load_preset, train_warmstart

    cfg = load_preset(preset).model_copy(update=_overrides(set_))
    summary = train_warmstart(WarmStartSpec(out_dir=out, model=model, config=cfg, tools_url=tools,
                                            world_seed=world_seed))
    typer.echo(json.dumps({k: summary.get(k) for k in ("final", "trajectories", "steps", "first_loss", "last_loss",
                                                        "seconds")}, indent=2, default=str))


@train_app.command("filter")
def filter_cmd(
    policy: str = typer.Option(..., help="The stage-1 policy (final folder)."),
    out: Path = typer.Option(..., "--out", help="Output folder (kept.jsonl, dropped.jsonl, filter_stats.json)."),
    preset: str = typer.Option("cpu-smoke", help="gpu | cpu | embedded | cpu-smoke"),
    duetqa: Path | None = typer.Option(None, help="DuetQA rows (default: offline-web 3-hop questions)."),
    math: str | None = typer.Option(None, help="Math rows (s1) by path or s3:// URI (default: synthetic arithmetic "
                                    "problems)."),
    musique: str | None = typer.Option(None, help="MuSiQue *train* rows by path or s3:// URI, restricted to ≥3 hops "
                                       "(the evaluation file is refused; default: the offline world's 3-hop "
                                       "questions)."),
    limit: int | None = typer.Option(None, help="At most this many rows per source (default 4 for cpu-smoke)."),
    tools: str | None = typer.Option(None, help="Tool server URL (default: start the offline stack)."),
    attempts: int = typer.Option(1, help="Rollouts per question."),
) -> None:
    """Stage-2 data: the mixture filtered against the stage-1 policy (keep what it does not solve)."""
    _quiet()
    from fathom.rl.filter import build_and_filter

    if limit is None and preset == "cpu-smoke":
        limit = 4
    stats = build_and_filter(out, model=policy, tools_url=tools, preset=preset, duetqa=duetqa, math=math,
                             musique=musique, limit_per_source=limit, n_offline=limit or 4, attempts=attempts)
    typer.echo(json.dumps(stats, indent=2))


@train_app.command("synthesizer")
def synthesizer(
    out: Path = typer.Option(..., "--out", help="Output folder."),
    preset: str = typer.Option("cpu-smoke", help="gpu | cpu | embedded | cpu-smoke"),
    data: Path | None = typer.Option(None, help="SFT rows with `messages` (default: a tiny synthetic set)."),
    model: str = typer.Option("local:smollm2", help="Base model."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint."),
    set_: list[str] | None = typer.Option(None, "--set", help="SFTConfig override key=value (repeatable)."),
) -> None:
    """Synthesizer SFT (assistant-only loss, YaRN ×2, packing)."""
    _quiet()
    from fathom.sft.config import SynthSFTSpec
    from fathom.sft.trainer import train_synthesizer

    summary = train_synthesizer(SynthSFTSpec(out_dir=out, preset=preset, data=data, model=model, resume=resume,
                                             overrides=_overrides(set_)))
    typer.echo(json.dumps({k: summary.get(k) for k in ("final", "steps", "rope_parameters", "plots", "metrics")},
                          indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
