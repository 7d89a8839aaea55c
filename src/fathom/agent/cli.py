"""``fathom research "question"``: the search agent (and with --deepresearch the synthesizer) from the command line.

By default everything runs in-process and offline: the offline web + its index + the tool server on loopback
(``fathom.web.stack.offline_stack``) and the embedded model for every role. ``--tools URL`` uses a running tool
server instead; ``--policy`` / ``--synthesizer`` take any role (``local:...`` or ``http://host/v1#model[@KEY_ENV]``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import typer


class ProgressPrinter:
    """Renders agent events as live progress lines on stderr (rich), with a spinner while generating."""

    def __init__(self, console, *, max_arg_chars: int = 90):
        self.console = console
        self.max_arg_chars = max_arg_chars
        self.status = console.status("starting...")

    def __enter__(self) -> Self:
        self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        self.status.stop()

    def _args(self, args: dict) -> str:
        from rich.markup import escape

        text = ", ".join(f"{k}={v!r}" for k, v in args.items())
        if len(text) > self.max_arg_chars:
            text = text[: self.max_arg_chars - 3] + "..."
        return escape(text)

    def __call__(self, ev: dict[str, Any]) -> None:
        from rich.markup import escape

        kind, turn = ev.get("type"), ev.get("turn", 0) + 1
        c = self.console
        if kind == "turn_start":
            label = "forced final answer" if ev.get("forced") else "generating"
            self.status.update(f"turn {turn}: {label} (≤ {ev['max_new_tokens']} tokens, "
                               f"{ev['used_tokens']} used)")
        elif kind == "turn_end":
            c.print(f"[bold]turn {turn}[/bold]: {ev.get('completion_tokens', 0)} tokens in "
                    f"{ev.get('latency_s', 0):.1f} s, {ev['n_calls']} call(s)")
            if ev["n_calls"]:
                self.status.update(f"turn {turn}: running {ev['n_calls']} tool call(s)")
        elif kind == "call_start":
            c.print(f"  [cyan]→ {escape(ev['name'])}[/cyan]({self._args(ev['arguments'])})")
        elif kind == "call_end":
            if ev.get("error"):
                c.print(f"  [red]← {escape(ev['name'])} error:{escape(str(ev['error']))}[/red] "
                        f"({ev['latency_s']:.2f} s)")
            else:
                c.print(f"  [green]← {escape(ev['name'])}[/green] {ev['chars']} chars ({ev['latency_s']:.2f} s)")
        elif kind == "call_error":
            c.print(f"  [red]✗ malformed call: {escape(ev['code'])}[/red] {escape(' '.join(ev['message'].split()))[:120]}")
        elif kind == "retry":
            c.print(f"  [yellow]retry {ev['attempt']} of turn {turn}: {escape(ev['error'])[:160]}[/yellow]")
        elif kind == "force_answer":
            c.print(f"  [yellow]token budget low ({ev['tokens_left']} left): forcing a final answer[/yellow]")
        elif kind == "done":
            colour = "green" if ev["status"] == "answered" else ("red" if ev["status"] == "error" else "yellow")
            c.print(f"[{colour}]status: {ev['status']}[/{colour}] after {ev['turns']} turn(s), "
                    f"{ev['tool_calls']} call(s), {ev['latency_s']:.1f} s")


@contextmanager
def _tool_server(tools_url: str | None, *, seed: int, n_pages: int, query_llm: str, console) -> Iterator[str]:
    if tools_url:
        yield tools_url.rstrip("/")
        return
    try:
        from fathom.web.stack import offline_stack
    except ImportError as exc:
        raise typer.BadParameter(f"the in-process offline stack is not available ({exc}); pass --tools URL of a "
                                 "running `fathom serve tools`") from exc
    with console.status("starting the offline web and the tool server on loopback..."):
        cm = offline_stack(seed=seed, n_pages=n_pages, query_llm=query_llm)
        stack = cm.__enter__()
    try:
        console.print(f"[dim]offline stack: tools {stack.tools_url}, site {getattr(stack, 'site_url', '?')}[/dim]")
        yield stack.tools_url
    finally:
        cm.__exit__(*sys.exc_info())


def _write_atomic(path: Path, text: str) -> None:
    from fathom.storage import atomic_write_text

    atomic_write_text(path, text)


#: A local synthesizer's report ends once one block of its output repeats this many times (a looping 135M model
#: would otherwise write the same sentence until its token budget runs out: minutes on a CPU).
LOCAL_SYNTH_LOOP_REPEATS = 4


async def _research(question: str, tools_url: str, *, policy_role: str, preset: str, config, deepresearch: bool,
                    synth_role: str, synth_max_tokens: int | None, progress, synth_attempts: int | None = None,
                    synth_seed: int | None = None) -> dict[str, Any]:
    from fathom.agent.loop import run_agent
    from fathom.agent.tools import HttpTools
    from fathom.config import RoleConfig
    from fathom.llm import make_client
    from fathom.web.client import ToolClient

    policy = make_client(RoleConfig.parse(policy_role))
    out: dict[str, Any] = {}
    async with ToolClient(tools_url) as client:
        try:
            traj = await run_agent(question, policy, HttpTools(client, preset), config, on_event=progress)
        finally:
            await policy.aclose()
    out["trajectory"] = traj
    if deepresearch:
        from fathom.sftdata.config import ReportFilterConfig
        from fathom.sftdata.filters import check_report
        from fathom.synth import synthesize

        local = synth_role.startswith("local:")
        synth = make_client(RoleConfig.parse(synth_role), stop_loops=LOCAL_SYNTH_LOOP_REPEATS if local else None)
        max_tokens = synth_max_tokens or (2048 if local else 10_000)
        attempts = synth_attempts or (3 if local else 1)
        seed = synth_seed if synth_seed is not None else (0 if local else None)  # a local report is reproducible
        best, best_rank, notes = None, None, []
        try:  # sample until a report passes the SFT corpus's report checks; keep the one with the fewest failures
            for k in range(attempts):
                progress.status.update(f"synthesizing the report with {synth_role} (≤ {max_tokens} tokens, attempt "
                                       f"{k + 1} of {attempts})...")
                rep = await synthesize(question, traj, synth, max_tokens=max_tokens,
                                       seed=None if seed is None else seed + k)
                failed = check_report(rep, ReportFilterConfig())
                rank = (len(failed), rep.finish_reason == "length")
                if best_rank is None or rank < best_rank:
                    best, best_rank = rep, rank
                if rank == (0, False):
                    break
                cut = " (cut: a loop or the token limit)" if rep.finish_reason == "length" else ""
                notes.append(f"report attempt {k + 1} of {attempts}: {', '.join(failed) or 'complete'}{cut}")
        finally:
            await synth.aclose()
        out["report"], out["report_notes"] = best, notes
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def research(
        question: str = typer.Argument(..., help="The question to research."),
        tools: str | None = typer.Option(None, "--tools", help="Base URL of a running tool server; default: start "
                                         "the offline stack in-process."),
        policy: str = typer.Option("auto", "--policy", help="Search agent role; auto = the prepared embedded search "
                                   "policy (local:smollm2-search, `fathom models --prepare-policy`), else "
                                   "local:smollm2."),
        preset: str = typer.Option("fathom", "--preset", help="Tool preset: fathom (search_urls, query_url) or "
                                   "legacy (web_search, web_visit)."),
        template: str = typer.Option("fathom", "--template", help="System prose: 'fathom' or a path to a file "
                                     "(e.g. the released prompt) with a {func_schemas} field."),
        max_turns: int = typer.Option(32, "--max-turns", min=1, help="Maximum model turns."),
        max_tokens: int = typer.Option(40960, "--max-tokens", help="Token budget of the whole transcript (capped "
                                       "by the policy's context length)."),
        max_tokens_per_turn: int | None = typer.Option(None, "--max-tokens-per-turn",
                                                       help="New tokens per turn (default 512 local, 8192 remote)."),
        temperature: float | None = typer.Option(None, "--temperature",
                                                 help="Sampling temperature (default 0 local, 0.6 remote)."),
        seed: int | None = typer.Option(None, "--seed", help="Sampling seed (the agent's; report attempt k samples "
                                        "with seed + k, default 0 + k for a local synthesizer)."),
        deepresearch: bool = typer.Option(False, "--deepresearch", help="Write a cited report with the synthesizer."),
        synthesizer: str = typer.Option("auto", "--synthesizer", help="Synthesizer role; auto = the prepared "
                                        "embedded synthesizer (local:smollm2-synth, `fathom models "
                                        "--prepare-synthesizer`), else local:smollm2."),
        synth_max_tokens: int | None = typer.Option(None, "--synth-max-tokens",
                                                    help="Report tokens (default 2048 local, 10000 remote)."),
        synth_attempts: int | None = typer.Option(None, "--synth-attempts", min=1, help="Reports to sample until "
                                                  "one passes the report checks (sections, plan, citations in the "
                                                  "trace); the best is printed (default 3 local, 1 remote)."),
        web_seed: int = typer.Option(0, "--web-seed", help="Seed of the offline web (in-process stack)."),
        web_pages: int = typer.Option(120, "--web-pages", help="Pages of the offline web (in-process stack)."),
        query_llm: str = typer.Option("none", "--query-llm", help="Query-LLM role of the in-process tool server "
                                      "('none': the deterministic passage reader the embedded policy is trained "
                                      "with)."),
        as_json: bool = typer.Option(False, "--json", help="Print the trajectory (and report) as JSON on stdout."),
        save: Path | None = typer.Option(None, "--save", help="Also write the trajectory (and report) JSON here."),
    ) -> None:
        """Answer a question with the search agent; with --deepresearch, write a cited report."""
        import asyncio

        from rich.console import Console
        from rich.markdown import Markdown
        from rich.panel import Panel

        from fathom.agent.format import PRESETS
        from fathom.agent.loop import AgentConfig
        from fathom.errors import FathomError

        err = Console(stderr=True)
        out = Console()
        if preset not in PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}", param_hint="--preset")
        if policy == "auto":
            from fathom.llm.embedded import EMBEDDED_POLICY, is_prepared, policy_dir

            policy = f"local:{EMBEDDED_POLICY}" if is_prepared(policy_dir()) else "local:smollm2"
            if policy == "local:smollm2":
                err.print("[yellow]note:[/yellow] the untrained embedded model rarely calls a tool; prepare the "
                          "embedded search policy once with `fathom models --prepare-policy`")
        if deepresearch and synthesizer == "auto":
            from fathom.llm.embedded import EMBEDDED_SYNTH, is_prepared, synth_dir

            synthesizer = f"local:{EMBEDDED_SYNTH}" if is_prepared(synth_dir()) else "local:smollm2"
            if synthesizer == "local:smollm2":
                err.print("[yellow]note:[/yellow] the untrained embedded model cannot write a cited report; prepare "
                          "the embedded synthesizer once with `fathom models --prepare-synthesizer`")
        local = policy.startswith("local:")
        per_turn = max_tokens_per_turn or (256 if local else 8192)
        from fathom.web.stack import EMBEDDED_RESULT_CHARS

        cfg = AgentConfig(max_turns=max_turns, max_total_tokens=max_tokens,
                          temperature=(0.0 if local else 0.6) if temperature is None else temperature, seed=seed,
                          template=template, max_tokens_per_turn=per_turn,
                          max_result_chars=EMBEDDED_RESULT_CHARS if local else AgentConfig().max_result_chars)
        try:
            with (_tool_server(tools, seed=web_seed, n_pages=web_pages, query_llm=query_llm, console=err) as url,
                  ProgressPrinter(err) as progress):
                result = asyncio.run(_research(question, url, policy_role=policy, preset=preset, config=cfg,
                                               deepresearch=deepresearch, synth_role=synthesizer,
                                               synth_max_tokens=synth_max_tokens, progress=progress,
                                               synth_attempts=synth_attempts, synth_seed=seed))
        except (FathomError, FileNotFoundError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc

        traj, report = result["trajectory"], result.get("report")
        for note in result.get("report_notes", []):
            err.print(f"[dim]{note}[/dim]")
        payload = {"trajectory": traj.model_dump(mode="json"),
                   "report": report.model_dump(mode="json") if report else None}
        if save:
            _write_atomic(save, json.dumps(payload, ensure_ascii=False, indent=2))
            err.print(f"[dim]saved to {save}[/dim]")
        if as_json:
            sys.stdout.write(json.dumps(payload if report else payload["trajectory"], ensure_ascii=False,
                                        indent=2) + "\n")
        else:
            if traj.answer is not None:
                out.print(Panel(traj.answer, title="answer", expand=False))
            else:
                out.print(Panel(traj.final_text or "(no answer)", title=f"no boxed answer ({traj.status})",
                                expand=False))
            if report is not None:
                out.print(Markdown(report.report or "_(the synthesizer wrote no report)_"))
                err.print(f"[dim]report: {report.word_count} words, {len(report.cited_urls)} cited URL(s), "
                          f"unsupported citation rate {report.unsupported_rate:.0%}, missing sections: "
                          f"{', '.join(report.missing_sections) or 'none'}[/dim]")
        if traj.status == "error":
            err.print(f"[red]{traj.error}[/red]")
            raise typer.Exit(1)
