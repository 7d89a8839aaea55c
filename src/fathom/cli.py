"""The `fathom` command line. Each area registers its commands from `fathom.<area>.cli:register(app)`."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train, evaluate and serve Fathom-DeepResearch style agents.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
console = Console(stderr=True)

# Areas that add commands. A module that does not exist yet is skipped; a module that fails to import is an error.
AREAS = [
    "fathom.web.cli",  # serve tools
    "fathom.web.offline.cli",  # corpus index|search, web build|serve
    "fathom.agent.cli",  # research
    "fathom.selfplay.cli",  # duetqa
    "fathom.sftdata.cli",  # sft-corpus
    "fathom.rl.cli",  # train search
    "fathom.sft.cli",  # train synthesizer
    "fathom.evaluate.cli",  # eval
    "fathom.convert.cli",  # convert
    "fathom.deploy.cli",  # deploy render|validate|apply|rollback|local|smoke
    "fathom.pipeline_cli",  # pipeline compile/run/submit/schedule
]


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@app.command()
def models(prepare: bool = typer.Option(False, "--prepare", help="Convert the embedded GGUF model now."),
           prepare_policy: bool = typer.Option(False, "--prepare-policy",
                                               help="Warm-start the embedded model as a search policy "
                                               "(local:smollm2-search; a one-off, minutes on 2 cores)."),
           prepare_synthesizer: bool = typer.Option(False, "--prepare-synthesizer",
                                                    help="Fine-tune the embedded model as the synthesizer on the "
                                                    "world report teacher's reports (local:smollm2-synth; a "
                                                    "one-off, minutes on 2 cores)."),
           force: bool = typer.Option(False, "--force", help="Re-convert even if already prepared.")) -> None:
    """List the local models; with --prepare, convert the embedded model to a safetensors folder."""
    from fathom.llm import embedded
    from fathom.llm.embedded import list_models, prepare_embedded

    if prepare or prepare_policy or prepare_synthesizer:
        with console.status("converting the embedded model (one-off)..."):
            path = prepare_embedded(force=force)
        console.print(f"[green]embedded model ready[/green] at {path}")
    if prepare_policy:
        console.print("warm-starting the embedded search policy on the offline web's expert (one-off) ...")
        path = embedded.prepare_policy(force=force)
        console.print(f"[green]embedded search policy ready[/green] at {path} (role local:smollm2-search)")
    if prepare_synthesizer:
        console.print("fine-tuning the embedded synthesizer on the world report teacher's reports (one-off) ...")
        path = embedded.prepare_synthesizer(force=force)
        console.print(f"[green]embedded synthesizer ready[/green] at {path} (role local:smollm2-synth)")
    table = Table("name", "prepared", "path", "source")
    for row in list_models():
        table.add_row(row["name"], "yes" if row["prepared"] else "no", row["path"], row["source"])
    Console().print(table)


def _register_areas() -> None:
    for name in AREAS:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(app)


_register_areas()

if __name__ == "__main__":
    app()
