"""`fathom web ...` (the offline web) and `fathom corpus ...` (local BM25 indexes). Heavy imports stay inside
the commands so that `fathom --help` is fast."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

web_app = typer.Typer(help="The offline web: a generated encyclopedia served on loopback, with ground truth.",
                      no_args_is_help=True)
corpus_app = typer.Typer(help="Local BM25 search indexes over folders of HTML/Markdown/PDF/text or JSONL dumps.",
                         no_args_is_help=True)
err = Console(stderr=True)
out = Console()


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


@web_app.command("build")
def web_build(
    seed: int = typer.Option(0, "--seed", help="World seed (same seed, same site)."),
    pages: int = typer.Option(120, "--pages", min=12, help="Number of entity pages."),
    out_dir: Path | None = typer.Option(None, "--out", help="Output folder (default: the cache under FATHOM_HOME)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if a complete site exists."),
) -> None:
    """Generate the offline web for a seed and size (cached; atomic)."""
    from fathom.web.offline import build_offline_web

    web = build_offline_web(seed, pages, out_dir, force=force, show_progress=True)
    m = web.manifest
    out.print(f"[green]offline web ready[/green] at {web.root}: {m['files']['html']} HTML pages, "
              f"{m['files']['pdf']} PDFs (built in {m['build_seconds']} s)")


@web_app.command("serve")
def web_serve(
    port: int = typer.Option(8088, "--port", help="TCP port (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    seed: int = typer.Option(0, "--seed"),
    pages: int = typer.Option(120, "--pages", min=12),
    root: Path | None = typer.Option(None, "--root", help="A generated site folder (default: the cached one)."),
) -> None:
    """Serve the offline web over HTTP (routes by path; pages live under http://atlas.fathom.test/)."""
    import uvicorn

    from fathom.web.offline import OfflineWeb, create_site_app, ensure_offline_web

    web = OfflineWeb(root) if root else ensure_offline_web(seed, pages)
    err.print(f"serving {web.root} on http://{host}:{port} (virtual host {web.host}); Ctrl-C stops")
    uvicorn.run(create_site_app(web), host=host, port=port, log_level="info", lifespan="off")


@web_app.command("questions")
def web_questions(
    n: int = typer.Option(5, "--n", min=1, help="How many questions."),
    hops: int = typer.Option(2, "--hops", min=1, max=6, help="Facts chained per question."),
    seed: int = typer.Option(0, "--seed", help="World seed."),
    pages: int = typer.Option(120, "--pages", min=12),
    question_seed: int = typer.Option(0, "--question-seed", help="Seed of the question sampler."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (with the evidence hops)."),
) -> None:
    """Print ground-truth questions about the offline web, with answers and evidence pages."""
    from fathom.web.offline import ensure_offline_web

    qs = ensure_offline_web(seed, pages).questions(n, hops=hops, seed=question_seed)
    if as_json:
        for q in qs:
            print(json.dumps(q.model_dump(), ensure_ascii=False))
        return
    table = Table("id", "question", "answer", "evidence", show_lines=True)
    for q in qs:
        table.add_row(q.id, q.question, q.answer, "\n".join(h["url"] for h in q.hops))
    out.print(table)


@corpus_app.command("index")
def corpus_index(
    src: Path = typer.Argument(..., help="A folder of HTML/Markdown/PDF/text files, or a .jsonl dump "
                               "({id, title?, url?, contents|text} per line)."),
    out_dir: Path = typer.Option(..., "--out", help="Index folder to write."),
    base_url: str | None = typer.Option(None, "--base-url", help="URL prefix of the files (url = base + relative "
                                        "path); default file:// paths."),
    chunk_chars: int = typer.Option(1200, "--chunk-chars", min=100, help="Target passage length in characters."),
    stemmer: str = typer.Option("light", "--stemmer", help="light | snowball (PyStemmer) | none"),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes extracting files in parallel."),
) -> None:
    """Build a BM25 index from a folder or a JSONL dump, and save it."""
    from fathom.errors import FathomError
    from fathom.web.index import CorpusIndex

    try:
        idx = CorpusIndex.from_source(src, base_url=base_url, chunk_chars=chunk_chars, stemmer=stemmer,
                                      workers=workers, show_progress=True)
    except FathomError as exc:
        _fail(str(exc))
    idx.save(out_dir)
    m = idx.meta
    out.print(f"[green]indexed[/green] {m['n_docs']} documents as {m['n_passages']} passages in "
              f"{m['build_seconds']} s -> {out_dir}")
    if m["skipped"]:
        err.print(f"[yellow]skipped {len(m['skipped'])} files[/yellow] (listed in {out_dir / 'meta.json'}):")
        for s in m["skipped"][:10]:
            err.print(f"  {s}")


@corpus_app.command("search")
def corpus_search(
    index_dir: Path = typer.Argument(..., help="An index folder written by `fathom corpus index`."),
    query: str = typer.Argument(..., help="Search query."),
    top_k: int = typer.Option(5, "--top-k", min=1, max=100),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON lines."),
) -> None:
    """Search a saved index; one hit per URL, best first."""
    from fathom.errors import FathomError
    from fathom.web.index import CorpusIndex

    try:
        idx = CorpusIndex.load(index_dir)
    except FathomError as exc:
        _fail(str(exc))
    hits = idx.search(query, top_k=top_k)
    if as_json:
        for h in hits:
            print(h.model_dump_json())
        return
    if not hits:
        err.print("no results")
    for i, h in enumerate(hits, 1):
        out.print(f"[bold]{i}. {h.title}[/bold]\n   {h.url}\n   {h.snippet}\n")


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")
    app.add_typer(corpus_app, name="corpus")
