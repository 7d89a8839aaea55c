"""`fathom pipeline list|compile|run|submit|schedule`: the KFP pipelines of `pipelines/` from the command line.

Every module of the `pipelines` package that defines ``PIPELINE`` (a ``@dsl.pipeline`` function) is a pipeline,
named after its module (``pipelines/data.py`` -> ``data``); ``LOCAL_ARGUMENTS`` (a dict) are the arguments of its
embedded one-box run.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from fathom.errors import ConfigError

log = logging.getLogger(__name__)

KFP_TOKEN_ENV = "FATHOM_KFP_TOKEN"  # bearer token for the KFP API (e.g. a service-account token); never logged


# --------------------------------------------------------------------------------------------------- library
def _ensure_repo_on_path() -> None:
    """`pipelines`/`components` are top-level packages of the repo; make them importable from a checkout too."""
    try:
        importlib.import_module("pipelines")
    except ModuleNotFoundError:
        here = Path(__file__).resolve()
        for parent in here.parents:
            if (parent / "pipelines" / "__init__.py").exists():
                sys.path.insert(0, str(parent))
                break


def discover() -> dict[str, ModuleType]:
    """{name: module} of every pipeline module (sorted by name)."""
    _ensure_repo_on_path()
    pkg = importlib.import_module("pipelines")
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"pipelines.{info.name}")
        if hasattr(mod, "PIPELINE"):
            found[info.name] = mod
    return found


def get_pipeline(name: str) -> ModuleType:
    found = discover()
    if name not in found:
        raise ConfigError(f"no pipeline named {name!r}; available: {', '.join(found) or '(none)'}")
    return found[name]


def compile_pipeline(name: str, out_dir: Path, *, verify: bool = True) -> Path:
    """Compile one pipeline to `out_dir/<name>.yaml` (IR YAML) and check that the file reloads."""
    from kfp import compiler
    from kfp.components import load_component_from_file

    mod = get_pipeline(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    from fathom.storage import atomic_path

    with atomic_path(path, suffix=".tmp.yaml") as tmp:
        compiler.Compiler().compile(mod.PIPELINE, str(tmp))
        if verify:
            load_component_from_file(str(tmp))
    return path


def compile_all(out_dir: Path) -> list[Path]:
    return [compile_pipeline(name, out_dir) for name in discover()]


def parse_args(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; values are parsed as JSON when they parse (numbers, booleans, objects), else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--arg {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        try:
            parsed = json.loads(value)
            out[key] = value if isinstance(parsed, (dict, list)) else parsed  # JSON configs stay strings
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_local(name: str, args: dict[str, Any] | None = None, root: Path | None = None):
    """Run the pipeline function under `kfp.local` (SubprocessRunner, no per-task venv) with its LOCAL_ARGUMENTS
    overridden by `args`. Returns the pipeline's result object (raises if a task fails)."""
    from kfp import local

    mod = get_pipeline(name)
    arguments = {**getattr(mod, "LOCAL_ARGUMENTS", {}), **(args or {})}
    from fathom.config import fathom_home

    root = Path(root) if root else fathom_home() / "pipeline-root"
    root.mkdir(parents=True, exist_ok=True)
    # the tasks run `python -m kfp.dsl.executor_main` in subprocesses: they must import `components`/`fathom`
    repo = str(Path(mod.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [repo, os.environ.get("PYTHONPATH", "")] if p)
    from fathom.llm.embedded import is_prepared, prepare_embedded

    if not is_prepared():
        prepare_embedded()  # once, here, rather than racing inside parallel tasks
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return mod.PIPELINE(**arguments)


def make_kfp_client(host: str, *, namespace: str | None = None, verify_ssl: bool | None = None):
    """A `kfp.Client` for `host`; a bearer token is read from $FATHOM_KFP_TOKEN when set."""
    import kfp

    kw: dict[str, Any] = {"host": host}
    if namespace:
        kw["namespace"] = namespace
    if os.environ.get(KFP_TOKEN_ENV):
        kw["existing_token"] = os.environ[KFP_TOKEN_ENV]
    if verify_ssl is not None:
        kw["verify_ssl"] = verify_ssl
    return kfp.Client(**kw)


def submit(name: str, client, *, arguments: dict[str, Any] | None = None, experiment: str = "fathom",
           run_name: str | None = None, enable_caching: bool | None = None) -> str:
    """Compile and start one run; returns the run id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(name, Path(tmp))
        result = client.create_run_from_pipeline_package(
            str(path), arguments=arguments or {}, run_name=run_name or f"fathom-{name}",
            experiment_name=experiment, enable_caching=enable_caching)
    return result.run_id


def schedule(name: str, client, *, cron: str, arguments: dict[str, Any] | None = None, experiment: str = "fathom",
             job_name: str | None = None, max_concurrency: int = 1, no_catchup: bool = True) -> str:
    """Compile and create a recurring run (6-field cron, e.g. "0 0 3 * * 0" = Sundays 03:00); returns its id."""
    if len(cron.split()) != 6:
        raise ConfigError(f"cron {cron!r}: KFP expects 6 fields (seconds first), e.g. '0 0 3 * * 0'")
    try:
        exp = client.get_experiment(experiment_name=experiment)
    except Exception:  # noqa: BLE001 - KFP raises ValueError or an ApiException when it does not exist
        exp = client.create_experiment(experiment)
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(name, Path(tmp))
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=job_name or f"fathom-{name}-weekly",
            cron_expression=cron, max_concurrency=max_concurrency, no_catchup=no_catchup,
            params=arguments or {}, pipeline_package_path=str(path), enabled=True)
    return rr.recurring_run_id


# --------------------------------------------------------------------------------------------------- CLI
pipeline_app = typer.Typer(help="Compile, run locally, submit and schedule the KFP pipelines.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("list")
def list_cmd() -> None:
    """List the pipelines and their local arguments."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "pipeline", "local arguments")
    for name, mod in discover().items():
        table.add_row(name, getattr(mod.PIPELINE, "name", "?"), json.dumps(getattr(mod, "LOCAL_ARGUMENTS", {}))[:80])
    Console().print(table)


@pipeline_app.command("compile")
def compile_cmd(out: Path = typer.Option(Path("build/pipelines"), "--out", help="Folder for the IR YAML files."),
                name: str | None = typer.Argument(None, help="One pipeline (default: all).")) -> None:
    """Compile pipelines to IR YAML (each file is reloaded to check it)."""
    paths = [compile_pipeline(name, out)] if name else compile_all(out)
    for p in paths:
        typer.echo(str(p))


@pipeline_app.command("run")
def run_cmd(name: str = typer.Argument(..., help="Pipeline name (see `fathom pipeline list`)."),
            local: bool = typer.Option(False, "--local", help="Run under kfp.local (the only mode of `run`)."),
            root: Path | None = typer.Option(None, "--root", help="Local pipeline root (artifacts)."),
            arg: list[str] = typer.Option([], "--arg", help="Pipeline argument key=value (repeatable).")) -> None:
    """Run a pipeline on this machine with kfp.local (SubprocessRunner) on the embedded default."""
    if not local:
        raise typer.BadParameter("use --local to run here, or `fathom pipeline submit` for a KFP endpoint")
    result = run_local(name, parse_args(arg), root)
    typer.echo(f"pipeline {name} finished")
    outputs = getattr(result, "outputs", None)
    if outputs:
        for k, v in outputs.items():
            typer.echo(f"  {k}: {getattr(v, 'uri', v)}")


@pipeline_app.command("submit")
def submit_cmd(name: str = typer.Argument(...), host: str = typer.Option(..., "--host", help="KFP API URL."),
               arg: list[str] = typer.Option([], "--arg", help="key=value (repeatable)."),
               experiment: str = typer.Option("fathom", "--experiment"),
               run_name: str | None = typer.Option(None, "--run-name"),
               namespace: str | None = typer.Option(None, "--namespace")) -> None:
    """Compile and submit one run to a KFP endpoint (token from $FATHOM_KFP_TOKEN if set)."""
    run_id = submit(name, make_kfp_client(host, namespace=namespace), arguments=parse_args(arg),
                    experiment=experiment, run_name=run_name)
    typer.echo(f"submitted run {run_id}")


@pipeline_app.command("schedule")
def schedule_cmd(name: str = typer.Argument(...), host: str = typer.Option(..., "--host", help="KFP API URL."),
                 cron: str = typer.Option("0 0 3 * * 0", "--cron", help="6-field cron (default Sundays 03:00)."),
                 arg: list[str] = typer.Option([], "--arg", help="key=value (repeatable)."),
                 experiment: str = typer.Option("fathom", "--experiment"),
                 job_name: str | None = typer.Option(None, "--job-name"),
                 namespace: str | None = typer.Option(None, "--namespace")) -> None:
    """Create a recurring run of a pipeline on a KFP endpoint."""
    rid = schedule(name, make_kfp_client(host, namespace=namespace), cron=cron, arguments=parse_args(arg),
                   experiment=experiment, job_name=job_name)
    typer.echo(f"scheduled recurring run {rid} ({cron})")
