"""`fathom eval ...`: run benchmarks, compare runs (the quality gate), score reports.

    fathom eval --dataset simpleqa --limit 20 --out runs/simpleqa
    fathom eval --dataset offline-web --limit 5 --agent no-search --out runs/ow-nosearch
    fathom eval compare runs/baseline runs/candidate --out runs/cmp      # exit 1 when the candidate is not better
    fathom eval reports tasks.jsonl --out runs/rq --judge URL#model@KEY  # RACE-like + FACT-like report scoring
    fathom eval list                                                     # benchmarks and agents
"""

from __future__ import annotations

from pathlib import Path

import typer

eval_app = typer.Typer(help="Evaluate agents on benchmarks, compare runs, score reports.",
                       invoke_without_command=True, no_args_is_help=False)


def _embedded(policy: str) -> bool:
    return policy.startswith("local:")


@eval_app.callback()
def eval_run(
    ctx: typer.Context,
    dataset: list[str] = typer.Option(None, "--dataset", "-d", help="Benchmark name, JSONL path, or offline-web "
                                      "(repeatable)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (results.jsonl, metrics.json, reports)."),
    agent: str = typer.Option("fathom", "--agent", help="Agent adapter: fathom, legacy, no-search, zerosearch, "
                              "r1-searcher, search-o1."),
    policy: str = typer.Option("local:smollm2", "--policy",
                               help="Policy role: local:<model>, URL#model or URL#model@KEY_ENV."),
    tools: str | None = typer.Option(None, "--tools", help="Tool server URL (default: in-process offline stack)."),
    judge: str = typer.Option("none", "--judge", help="Judge role (URL#model@KEY_ENV or local:<model>) for "
                              "free-text answers, or none for the deterministic graders."),
    grader: str | None = typer.Option(None, "--grader", help="Force a grader: mc|number|em|f1|auto|judge."),
    limit: int | None = typer.Option(None, "--limit", help="First N examples (after --sample and --shard)."),
    sample: int | None = typer.Option(None, "--sample", help="Seeded random subset of N examples."),
    seed: int = typer.Option(0, "--seed", help="Seed of --sample and of the bootstrap."),
    shard: str | None = typer.Option(None, "--shard", help="i/n: every n-th example from offset i."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", help="Examples in flight."),
    judge_concurrency: int = typer.Option(8, "--judge-concurrency", help="Judge calls in flight."),
    max_turns: int | None = typer.Option(None, "--max-turns", help="Max turns (default 32; 4 on local models)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Max new tokens per turn (default 8192; "
                                             "256 on local models)."),
    max_total_tokens: int | None = typer.Option(None, "--max-total-tokens", help="Context budget (default "
                                                   "40960; 4096 on local models)."),
    temperature: float = typer.Option(0.6, "--temperature", help="Policy sampling temperature."),
    offline_n: int = typer.Option(50, "--offline-n", help="Size of the generated offline-web benchmark."),
    web_seed: int = typer.Option(0, "--web-seed", help="Seed of the offline web."),
    timeout: float = typer.Option(3600.0, "--example-timeout", help="Wall-clock cap per example (s)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Run the error rows again."),
    max_error_rate: float = typer.Option(0.5, "--max-error-rate", min=0.0, max=1.0,
                                         help="Exit 3 (after writing metrics and reports) when more than this share "
                                         "of the rows are errors (agent failures, timeouts, grading errors)."),
    name: str | None = typer.Option(None, "--name", help="Run label in reports."),
    no_transcripts: bool = typer.Option(False, "--no-transcripts", help="Do not store transcripts."),
) -> None:
    """Run (or resume) an evaluation: every example yields a graded row; metrics and reports under --out."""
    if ctx.invoked_subcommand is not None:
        return
    if not dataset or out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2 if (dataset or out) else 0)
    from rich.console import Console

    from fathom.errors import FathomError
    from fathom.evaluate.agents import AgentSettings
    from fathom.evaluate.runner import EvalConfig, run_eval

    console = Console(stderr=True)
    small = _embedded(policy)
    try:
        settings = AgentSettings(
            agent=agent, policy=policy, tools_url=tools, temperature=temperature, seed=seed,
            max_turns=max_turns or (4 if small else 32), max_tokens_per_turn=max_tokens or (256 if small else 8192),
            max_total_tokens=max_total_tokens or (4096 if small else 40960))
        cfg = EvalConfig(datasets=list(dataset), out=out, name=name, agent=settings,
                         judge=None if judge.lower() == "none" else judge, grader=grader, limit=limit, sample=sample,
                         seed=seed, shard=shard, concurrency=concurrency, judge_concurrency=judge_concurrency,
                         offline_n=offline_n, web_seed=web_seed, example_timeout_s=timeout, retry_errors=retry_errors,
                         store_transcripts=not no_transcripts, max_error_rate=max_error_rate)
        result = run_eval(cfg)
    except (FathomError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if result.nothing_to_do:
        console.print(f"nothing to do: {result.skipped} rows already in {out}")
    _print_metrics(result.metrics)
    console.print(f"[green]wrote[/green] {out}/results.jsonl, metrics.json, report.md, report.html "
                  f"({result.new_rows} new rows, {result.skipped} resumed)")
    if result.failed:
        console.print(f"[red]error:[/red] {result.errors} of {result.rows} rows are errors "
                      f"({result.error_rate:.0%} > --max-error-rate {max_error_rate:.0%})")
        raise typer.Exit(3)


def _print_metrics(metrics) -> None:
    from rich.console import Console
    from rich.table import Table

    from fathom.evaluate.report import METRIC_COLUMNS, metric_row

    if metrics is None:
        return
    table = Table(*METRIC_COLUMNS[:8], title=metrics.run)
    for m in list(metrics.benchmarks.values()) + [metrics.overall]:
        table.add_row(*metric_row(m, None if m.dataset != "all" else "all (pooled)")[:8])
    Console().print(table)


@eval_app.command("compare")
def eval_compare(
    runs: list[Path] = typer.Argument(..., help="Run folders: BASELINE [OTHERS...] CANDIDATE."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for comparison.json/.md/.html."),
    require: str = typer.Option("better", "--require", help="better | non-inferior."),
    min_delta: float = typer.Option(0.0, "--min-delta", help="Required improvement (fraction, CI low end)."),
    max_drop: float = typer.Option(0.0, "--max-drop", help="Tolerated drop per benchmark (fraction)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Side-by-side report and quality gate; exits 1 when the candidate (last run) does not pass."""
    from rich.console import Console

    from fathom.errors import FathomError
    from fathom.evaluate.compare import GateConfig, compare_runs

    console = Console(stderr=True)
    try:
        comp = compare_runs(runs, out, gate=GateConfig(require=require, min_delta=min_delta, max_drop=max_drop,
                                                       seed=seed))
    except (FathomError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    mark = "[green]PASS[/green]" if comp.passed else "[red]FAIL[/red]"
    console.print(f"{mark} {comp.candidate} vs {comp.baseline}: {comp.reason}")
    console.print(f"wrote {out}/comparison.md, comparison.html, comparison.json")
    if not comp.passed:
        raise typer.Exit(1)


@eval_app.command("reports")
def eval_reports(
    tasks: Path = typer.Argument(..., help="JSONL of {id, prompt, report, reference?, criteria?}."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report_quality.jsonl/.json/.md."),
    judge: str = typer.Option("none", "--judge", help="Judge role (RACE scoring and citation support); 'none' "
                              "uses deterministic heuristics."),
    tools: str | None = typer.Option(None, "--tools", help="Tool server URL for citation fetches (default: "
                                        "in-process offline stack)."),
    max_citations: int = typer.Option(40, "--max-citations", help="Citations checked per report."),
) -> None:
    """DeepResearch-Bench style report scoring: RACE-like quality vs a reference, FACT-like citation checks."""
    from rich.console import Console

    from fathom.errors import FathomError
    from fathom.evaluate.report_quality import ReportQualityConfig, run_report_quality

    console = Console(stderr=True)
    try:
        summary = run_report_quality(ReportQualityConfig(
            tasks=tasks, out=out, judge=None if judge.lower() == "none" else judge, tools_url=tools,
            max_citations=max_citations))
    except (FathomError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(summary.model_dump_json(indent=2))


@eval_app.command("list")
def eval_list() -> None:
    """Named benchmarks (with their files) and registered agents."""
    from rich.console import Console
    from rich.table import Table

    from fathom.evaluate.agents import list_agents
    from fathom.evaluate.datasets import BENCHMARKS, OFFLINE_WEB, available_benchmarks

    avail = available_benchmarks()
    t = Table("benchmark", "file", "grader (no judge / judge)", "reference size")
    for name, info in BENCHMARKS.items():
        t.add_row(name, str(avail.get(name, "[dim]missing[/dim]")), f"{info.grader} / {info.judge_grader}",
                  str(info.expected_count or ""))
    for name, path in avail.items():
        if name not in BENCHMARKS:
            t.add_row(name, str(path), "auto / judge", "")
    t.add_row(OFFLINE_WEB, "generated from the offline web", "auto / judge", "")
    a = Table("agent", "needs tools", "description")
    for spec in list_agents():
        a.add_row(spec.name, "yes" if spec.needs_tools else "no", spec.description)
    Console().print(t)
    Console().print(a)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
