"""`fathom sft-corpus`: the DeepResearch-SFT corpus for the synthesizer."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="sft-corpus")(sft_corpus)


def sft_corpus(
    out: Path = typer.Option(..., "--out", help="Output folder (resumes if it holds an unfinished run)."),
    n: int = typer.Option(4, "--n", help="Items to plan."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON SFTCorpusConfig; flags override it."),
    tools: str | None = typer.Option(None, "--tools", help="Tool server URL (default: start the offline stack)."),
    policy: str | None = typer.Option(None, "--policy", help="Search agent role."),
    teacher: str | None = typer.Option(None, "--teacher", help="Report teacher role."),
    rewriter: str | None = typer.Option(None, "--rewriter", help="Question rewriter role (default: teacher)."),
    seeds: Path | None = typer.Option(None, "--seeds", help="Open-ended seed questions JSONL."),
    themes: Path | None = typer.Option(None, "--themes", help="Theme bank file."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed of the item plans."),
    max_items: int | None = typer.Option(None, "--max-items", help="Budget: items processed in this run."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Budget: total model tokens in this run."),
    max_turns: int | None = typer.Option(None, "--max-turns", help="Agent turns per trace."),
    teacher_max_tokens: int | None = typer.Option(None, "--teacher-max-tokens", help="Tokens for plan + report."),
    min_words: int | None = typer.Option(None, "--min-words", help="Minimum report words."),
    upload: str | None = typer.Option(None, "--upload", help="Also upload the output folder to this URI."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Collect search traces, have the teacher write plan-then-write reports, filter them, and write chat SFT rows
    (datasets folder, JSONL, card) under OUT."""
    from rich.console import Console

    from fathom.datasets_io import load_config_file, print_funnel
    from fathom.sftdata.config import SFTCorpusConfig
    from fathom.sftdata.runner import run_sft_corpus

    console = Console(stderr=True)
    data = load_config_file(config)
    overrides = {"n": n, "policy": policy, "teacher": teacher, "rewriter": rewriter, "seeds_path": seeds,
                 "themes_path": themes, "seed": seed, "max_items": max_items, "max_tokens": max_tokens,
                 "teacher_max_tokens": teacher_max_tokens}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if max_turns is not None:
        data.setdefault("agent", {})["max_turns"] = max_turns
    if min_words is not None:
        data.setdefault("filters", {})["min_words"] = min_words
    cfg = SFTCorpusConfig.model_validate(data)
    res = run_sft_corpus(cfg, out, tools_url=tools, show_progress=not quiet)
    print_funnel(console, "SFT corpus", "accepted", res.accepted, res, out, upload)
