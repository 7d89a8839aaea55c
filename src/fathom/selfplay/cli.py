"""`fathom duetqa`: DuetQA self-play generation."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="duetqa")(duetqa)
    app.command(name="decontaminate")(decontaminate)


def duetqa(
    out: Path = typer.Option(..., "--out", help="Output folder (resumes if it holds an unfinished run)."),
    n: int = typer.Option(8, "--n", help="Candidates to plan."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON DuetQAConfig; flags override it."),
    tools: str | None = typer.Option(None, "--tools", help="Tool server URL (default: start the offline stack)."),
    mode: str | None = typer.Option(None, "--mode", help="mixture | seeded | both"),
    source: str | None = typer.Option(None, "--source", help="auto | world | model | truth. auto (default): world "
                                      "when M1 and M2 are the expert (expert:offline-web, the default), else model."),
    m1: str | None = typer.Option(None, "--m1", help="Role M1 (search generator/solver): expert:offline-web "
                                  "(default), local:<model> or URL#model[@KEY_ENV]."),
    m2: str | None = typer.Option(None, "--m2", help="Role M2 (search generator/solver)."),
    m3: str | None = typer.Option(None, "--m3", help="Role M3 (obfuscator, no-search solver)."),
    judge: str | None = typer.Option(None, "--judge", help="Answer judge role."),
    themes: Path | None = typer.Option(None, "--themes", help="Theme bank file (one per line)."),
    seeds: Path | None = typer.Option(None, "--seeds", help="Seed bank JSONL."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed of the item plans."),
    max_items: int | None = typer.Option(None, "--max-items", help="Budget: items processed in this run."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Budget: total model tokens in this run."),
    max_turns: int | None = typer.Option(None, "--max-turns", help="Agent turns per search run."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Items in flight (and per-role requests)."),
    upload: str | None = typer.Option(None, "--upload", help="Also upload the output folder to this URI (s3://...)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Generate DuetQA pairs: generate -> obfuscate -> verify -> dedup; writes a datasets folder, JSONL, RL rows and
    a dataset card under OUT."""
    from rich.console import Console

    from fathom.datasets_io import load_config_file, print_funnel
    from fathom.selfplay.config import DuetQAConfig
    from fathom.selfplay.runner import run_duetqa

    console = Console(stderr=True)
    data = load_config_file(config)
    overrides = {"n": n, "mode": mode, "source": source, "m1": m1, "m2": m2, "m3": m3, "judge": judge,
                 "themes_path": themes, "seeds_path": seeds, "seed": seed, "max_items": max_items,
                 "max_tokens": max_tokens}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if concurrency is not None:
        data.update(max_in_flight=concurrency, role_concurrency=concurrency)
    if max_turns is not None:
        data.setdefault("agent", {})["max_turns"] = max_turns
    cfg = DuetQAConfig.model_validate(data)
    res = run_duetqa(cfg, out, tools_url=tools, show_progress=not quiet)
    print_funnel(console, "DuetQA", "kept", res.kept, res, out, upload)


def decontaminate(
    inp: Path = typer.Option(..., "--in", help="Training rows: a JSONL file or a stage folder (rl.jsonl, rl/rl.jsonl "
                             "or one *.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Output folder (kept rows, decontam/dropped.jsonl, stats, card)."),
    benchmarks: Path | None = typer.Option(None, "--benchmarks", help="Evaluation *.jsonl folder (default: "
                                           "$FATHOM_BENCHMARKS_DIR or data/benchmarks)."),
    heldout_seed: int | None = typer.Option(None, "--heldout-seed", help="World seed of the held-out offline-web "
                                            "evaluation (default 1000)."),
    no_heldout: bool = typer.Option(False, "--no-heldout-world", help="Skip the held-out offline-web check."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON DecontamConfig; flags override it."),
) -> None:
    """Drop every training question that overlaps an evaluation set (exact, near-duplicate, shared rare n-gram,
    held-out world entity) and count them on the dataset card."""
    import json

    from fathom.datasets_io import load_config_file
    from fathom.selfplay.decontam import DecontamConfig, decontaminate_folder

    data = load_config_file(config)
    if benchmarks is not None:
        data["benchmarks_dir"] = benchmarks
    if heldout_seed is not None:
        data["heldout_world_seed"] = heldout_seed
    if no_heldout:
        data["heldout_world"] = False
    res = decontaminate_folder(inp, out, DecontamConfig.model_validate(data))
    typer.echo(json.dumps(res.model_dump(), indent=2))
