"""`fathom serve tools`: the search tool server (default: the offline web, its index and the embedded query LLM)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

serve_app = typer.Typer(help="Run servers.", no_args_is_help=True)


@serve_app.command("tools")
def serve_tools(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8765, "--port", help="Port (0 = any free port)."),
    index: Path | None = typer.Option(None, "--index", help="Serve a saved corpus index (`fathom corpus index`)."),
    serper: bool = typer.Option(False, "--serper", help="Google search via Serper (key in SERPER_API_KEY)."),
    offline: bool = typer.Option(False, "--offline", help="The offline web + its index (the default)."),
    query_llm: str = typer.Option("local:smollm2", "--query-llm",
                                  help="Role reading pages: local:<model>, URL#model[@KEY_ENV], or 'none'."),
    seed: int = typer.Option(0, "--seed", help="Offline web seed."),
    pages: int = typer.Option(120, "--pages", help="Offline web size."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Tool cache folder."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Host allowed even if private (repeatable)."),
    from_env: bool = typer.Option(False, "--from-env", help="Production: every setting from FATHOM_TOOLS_* "
                                  "environment variables (the cluster Deployment); other options except --host, "
                                  "--port and --drain-s are ignored."),
    drain_s: float = typer.Option(30.0, "--drain-s", help="On SIGTERM, in-flight requests get this many seconds."),
) -> None:
    """Serve /v1/search, /v1/query_url, /v1/visit, /execute, /healthz and /metrics until Ctrl-C or SIGTERM.

    --from-env, --serper and --index run the production server in the foreground (uvicorn, graceful SIGTERM
    drain); the default offline web is a development stack of in-process servers."""
    import contextlib

    from rich.console import Console

    from fathom.errors import ConfigError
    console = Console(stderr=True)
    if sum([index is not None, serper, offline, from_env]) > 1:
        raise typer.BadParameter("choose one of --offline, --index DIR, --serper, --from-env")
    if from_env or index is not None or serper:
        _serve_production(console, host, port, drain_s, None if from_env else {
            "search_backend": "serper" if serper else "local", "index_dir": index, "query_llm": query_llm,
            "cache_dir": cache_dir, "allow_hosts": allow_host})
        return
    try:
        with contextlib.ExitStack() as running:
            from fathom.web.stack import offline_stack

            with console.status(f"preparing the offline web (seed {seed}, {pages} pages), its index and "
                                "the query model..."):
                stack = running.enter_context(offline_stack(
                    seed=seed, n_pages=pages, query_llm=query_llm, cache_dir=cache_dir, host=host,
                    tools_port=port, allow_hosts_extra=allow_host))
            console.print(f"offline web at {stack.site_url} (its pages are http://atlas.fathom.test/...)")
            url = stack.tools_url
            typer.echo(url)
            console.print(f"[green]tool server ready[/green] at {url}  (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("stopped")


def _serve_production(console, host: str, port: int, drain_s: float, settings: dict | None) -> None:
    """Build the app (settings from the environment when `settings` is None) and run it in the foreground."""
    from pydantic import ValidationError

    from fathom.errors import ConfigError
    from fathom.serving import run_server
    from fathom.web.server import create_app
    from fathom.web.settings import ToolServerSettings

    try:
        cfg = ToolServerSettings() if settings is None else ToolServerSettings(**settings)
        cfg.check()
        app = create_app(cfg)
    except (ConfigError, ValidationError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    def ready(url: str) -> None:
        typer.echo(url)
        console.print(f"[green]tool server ready[/green] ({cfg.search_backend}) at {url}; SIGTERM drains for "
                      f"{drain_s:.0f}s")

    try:
        run_server(app, host=host, port=port, drain_s=drain_s, on_ready=ready, log_level="warning")
    except KeyboardInterrupt:
        console.print("stopped")


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
