"""`fathom pipeline list|compile|run|upload|submit|schedule`: the KFP pipelines of `pipelines/` from the command line.

Every module of the `pipelines` package that defines ``PIPELINE`` (a ``@dsl.pipeline`` function) is a pipeline,
named after its module (``pipelines/data.py`` -> ``data``); ``LOCAL_ARGUMENTS`` (a dict) are the arguments of its
embedded one-box run.
"""

from __future__ import annotations

import contextlib
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
from fathom.storage import atomic_write_json

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
    """`k=v` pairs; values are parsed as JSON when they parse (numbers, booleans, lists, objects), else kept as
    strings. `coerce_arguments` then fits them to the pipeline's parameter types."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--arg {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parameter_types(name: str) -> dict[str, str]:
    """{parameter: IR type} of a pipeline's inputs (STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT)."""
    from google.protobuf import json_format

    spec = json_format.MessageToDict(get_pipeline(name).PIPELINE.pipeline_spec)
    return {k: v["parameterType"] for k, v in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()}


def coerce_arguments(types: dict[str, str], args: dict[str, Any]) -> dict[str, Any]:
    """Fit parsed arguments to the pipeline's parameter types: LIST / STRUCT parameters get JSON values (a list, an
    object; a JSON string is parsed), STRING parameters get strings (an object or list is serialised: the JSON
    config parameters), numbers and booleans are checked. Unknown names are an error."""
    unknown = sorted(set(args) - set(types))
    if unknown:
        raise ConfigError(f"not parameters of the pipeline: {', '.join(unknown)}; known: {', '.join(sorted(types))}")
    out: dict[str, Any] = {}
    for key, value in args.items():
        kind = types[key]
        if kind in ("LIST", "STRUCT"):
            want = list if kind == "LIST" else dict
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: expected a JSON {want.__name__}, got {value!r}") from exc
            if not isinstance(value, want):
                raise ConfigError(f"{key}: expected a JSON {want.__name__}, got {value!r}")
        elif kind == "STRING":
            if isinstance(value, (dict, list, bool)):
                value = json.dumps(value)
            elif not isinstance(value, str):
                value = str(value)
        elif kind == "BOOLEAN":
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: expected true or false, got {value!r}")
        elif kind == "NUMBER_INTEGER":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
        elif kind == "NUMBER_DOUBLE":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key}: expected a number, got {value!r}")
            value = float(value)
        out[key] = value
    return out


class StepTimes(list):
    """The time of every task attempt of a `kfp.local` run, in order: dicts of step, status, seconds, started (UTC
    ISO) and run (the run folder under the pipeline root). Filled by :func:`timed_tasks`."""

    def run_dirs(self) -> list[str]:
        return sorted({r["run"] for r in self})

    def table_rows(self) -> list[tuple[str, str, str]]:
        """(step, status, seconds) per step, retries summed and counted."""
        steps: dict[str, dict] = {}
        for r in self:
            s = steps.setdefault(r["step"], {"seconds": 0.0, "attempts": 0, "status": ""})
            s["seconds"] += r["seconds"]
            s["attempts"] += 1
            s["status"] = r["status"]
        return [(k, v["status"] + (f" ({v['attempts']} attempts)" if v["attempts"] > 1 else ""),
                 f"{v['seconds']:.0f}") for k, v in steps.items()]


@contextlib.contextmanager
def timed_tasks(root: Path, times: StepTimes | None = None):
    """Time every task `kfp.local` runs in this block (its orchestrator calls
    `task_dispatcher.run_single_task_implementation` once per attempt) into `times` (a new one when None); on exit,
    success or failure, write them to `<root>/<run>/step-times.json`. Yields the :class:`StepTimes` as they fill."""
    import time

    from kfp.local import executor_input_utils, task_dispatcher

    times = StepTimes() if times is None else times
    real = task_dispatcher.run_single_task_implementation

    def timed(*args, **kw):
        t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = "FAILURE"
        try:
            outputs, task_status = real(*args, **kw)
            status = getattr(task_status, "name", str(task_status))
            return outputs, task_status
        finally:
            times.append({"step": executor_input_utils.get_local_task_resource_name(kw["component_name"]),
                          "status": status, "seconds": round(time.perf_counter() - t0, 1), "started": started,
                          "run": kw["pipeline_resource_name"]})

    task_dispatcher.run_single_task_implementation = timed
    try:
        yield times
    finally:
        task_dispatcher.run_single_task_implementation = real
        for run in times.run_dirs():
            if (Path(root) / run).is_dir():
                atomic_write_json(Path(root) / run / "step-times.json", [r for r in times if r["run"] == run])


def run_local(name: str, args: dict[str, Any] | None = None, root: Path | None = None,
              times: StepTimes | None = None):
    """Run the pipeline function under `kfp.local` (SubprocessRunner, no per-task venv) with its LOCAL_ARGUMENTS
    overridden by `args`. Returns the pipeline's result object (raises if a task fails). Every task attempt is timed
    into `times` (when given) and into `<root>/<run>/step-times.json`."""
    from kfp import local

    mod = get_pipeline(name)
    arguments = {**getattr(mod, "LOCAL_ARGUMENTS", {}), **coerce_arguments(parameter_types(name), args or {})}
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
    import builtins

    real_print = builtins.print  # kfp.local swaps it to indent task output; never leave it swapped
    try:
        with timed_tasks(root, times):
            return mod.PIPELINE(**arguments)
    finally:
        builtins.print = real_print


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


DEFAULT_SERVICE_ACCOUNT = os.environ.get("FATHOM_KFP_SERVICE_ACCOUNT", "pipeline-runner")


def _name_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def git_revision(repo: Path | None = None) -> str:
    """Short git revision of the checkout (`-dirty` with uncommitted changes); $FATHOM_GIT_REVISION when set (an
    image build without .git), else "nogit"."""
    import subprocess

    if os.environ.get("FATHOM_GIT_REVISION"):
        return os.environ["FATHOM_GIT_REVISION"]
    repo = repo or Path(get_pipeline.__code__.co_filename).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    return f"{rev}-dirty" if dirty else rev


def version_name(now: float | None = None) -> str:
    """A new pipeline-version name per upload: `<project version>-<git revision>-<UTC time>`."""
    import time

    from fathom import __version__

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{__version__}-{git_revision()}-{stamp}"


def display_name(name: str) -> str:
    """The KFP pipeline name of a pipeline module (its `@dsl.pipeline(name=...)`, e.g. `fathom-retrain`)."""
    return get_pipeline(name).PIPELINE.name


def upload(name: str, client, *, version: str | None = None, description: str | None = None,
           namespace: str | None = None) -> tuple[str, str, str]:
    """Compile and upload a pipeline to KFP: the pipeline once (by its display name), then a new version per call.
    Returns (pipeline id, version id, version name)."""
    import kfp_server_api

    pname = display_name(name)
    version = version or version_name()
    desc = description or (get_pipeline(name).PIPELINE.description or "")
    pipeline_id = client.get_pipeline_id(pname)
    if pipeline_id is None:  # the pipeline itself, without a version: every version is named by `version_name`
        created = client._pipelines_api.pipeline_service_create_pipeline(
            pipeline=kfp_server_api.V2beta1Pipeline(display_name=pname, description=desc, namespace=namespace))
        pipeline_id = created.pipeline_id
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(name, Path(tmp))
        v = client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=pipeline_id,
                                           description=f"fathom {version}")
    return pipeline_id, v.pipeline_version_id, version


def resolve_version(name: str, client, version: str | None = None) -> tuple[str, str]:
    """(pipeline id, version id) of an uploaded pipeline: the version named `version`, else the newest."""
    pname = display_name(name)
    pipeline_id = client.get_pipeline_id(pname)
    if pipeline_id is None:
        raise ConfigError(f"pipeline {pname!r} is not uploaded to this KFP: run `fathom pipeline upload {name} "
                          f"--host ...` first (or pass --upload)")
    if version:
        found = client.list_pipeline_versions(pipeline_id, page_size=10,
                                              filter=_name_filter("display_name", version)).pipeline_versions
        if not found:
            raise ConfigError(f"pipeline {pname!r} has no version {version!r}")
        return pipeline_id, found[0].pipeline_version_id
    found = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc").pipeline_versions
    if not found:
        raise ConfigError(f"pipeline {pname!r} has no version: run `fathom pipeline upload {name}`")
    return pipeline_id, found[0].pipeline_version_id


def experiment_id(client, experiment: str, namespace: str | None = None) -> str:
    """The id of the experiment named `experiment`, created when missing."""
    found = client.list_experiments(filter=_name_filter("display_name", experiment), namespace=namespace,
                                    page_size=2).experiments
    if found:
        return found[0].experiment_id
    return client.create_experiment(experiment, namespace=namespace).experiment_id


def submit(name: str, client, *, arguments: dict[str, Any] | None = None, experiment: str = "fathom",
           run_name: str | None = None, version: str | None = None, pipeline_root: str | None = None,
           service_account: str | None = DEFAULT_SERVICE_ACCOUNT, namespace: str | None = None) -> str:
    """Start one run of an uploaded pipeline version (the newest unless `version`); returns the run id. Arguments
    are fitted to the parameter types (lists and objects travel as JSON values)."""
    pipeline_id, version_id = resolve_version(name, client, version)
    params = coerce_arguments(parameter_types(name), arguments or {})
    run = client.run_pipeline(experiment_id=experiment_id(client, experiment, namespace),
                              job_name=run_name or f"fathom-{name}", params=params, pipeline_id=pipeline_id,
                              version_id=version_id, pipeline_root=pipeline_root or None,
                              service_account=service_account or None)
    return run.run_id


def schedule(name: str, client, *, cron: str, arguments: dict[str, Any] | None = None, experiment: str = "fathom",
             job_name: str | None = None, version: str | None = None, pipeline_root: str | None = None,
             service_account: str | None = DEFAULT_SERVICE_ACCOUNT, max_concurrency: int = 1,
             no_catchup: bool = True, namespace: str | None = None) -> tuple[str, str]:
    """Create or update, by name, the recurring run of an uploaded pipeline version (6-field cron, e.g.
    "0 0 3 * * 0" = Sundays 03:00), one run at a time, no catch-up. The KFP v2beta1 API has no update call: an
    existing recurring run of that name in the experiment is replaced (deleted, then created with the new
    version and settings), so there is never more than one. Returns (recurring run id, "created" | "updated")."""
    if len(cron.split()) != 6:
        raise ConfigError(f"cron {cron!r}: KFP expects 6 fields (seconds first), e.g. '0 0 3 * * 0'")
    job_name = job_name or f"fathom-{name}-weekly"
    pipeline_id, version_id = resolve_version(name, client, version)
    params = coerce_arguments(parameter_types(name), arguments or {})
    exp = experiment_id(client, experiment, namespace)
    existing = client.list_recurring_runs(experiment_id=exp, page_size=100,
                                          filter=_name_filter("display_name", job_name)).recurring_runs or []
    for old in existing:
        client.delete_recurring_run(old.recurring_run_id)
    rr = client.create_recurring_run(
        experiment_id=exp, job_name=job_name, cron_expression=cron, max_concurrency=max_concurrency,
        no_catchup=no_catchup, params=params, pipeline_id=pipeline_id, version_id=version_id,
        pipeline_root=pipeline_root or None, service_account=service_account or None, enabled=True,
        description=f"fathom pipeline schedule {name}")
    return rr.recurring_run_id, "updated" if existing else "created"


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
    import time

    from rich.console import Console
    from rich.table import Table

    times, t0 = StepTimes(), time.perf_counter()
    try:
        result = run_local(name, parse_args(arg), root, times=times)
    finally:
        if times:
            table = Table("step", "status", "seconds", title=f"pipeline {name}: time of each step")
            for row in times.table_rows():
                table.add_row(*row)
            table.add_section()
            table.add_row("total (wall)", "", f"{time.perf_counter() - t0:.0f}")
            Console(stderr=True).print(table)
    typer.echo(f"pipeline {name} finished")
    outputs = getattr(result, "outputs", None)
    if outputs:
        for k, v in outputs.items():
            typer.echo(f"  {k}: {getattr(v, 'uri', v)}")


_HOST = typer.Option(..., "--host", help="KFP API URL (token from $FATHOM_KFP_TOKEN if set).")
_ARG = typer.Option([], "--arg", help="Pipeline argument key=value, the value JSON when it parses (repeatable).")
_ARGS_FILE = typer.Option(None, "--args-file", help="YAML/JSON file of pipeline arguments (--arg overrides).")
_VERSION = typer.Option(None, "--version", help="Uploaded pipeline version (default: the newest).")
_ROOT = typer.Option(None, "--pipeline-root", help="Pipeline root of the run (e.g. s3://fathom/pipeline-root).")
_SA = typer.Option(DEFAULT_SERVICE_ACCOUNT, "--service-account", help="Kubernetes service account of the run.")


def _arguments(arg: list[str], args_file: Path | None) -> dict[str, Any]:
    import yaml

    base = yaml.safe_load(args_file.read_text()) if args_file else {}
    if not isinstance(base, dict):
        raise typer.BadParameter(f"--args-file {args_file}: expected a mapping of parameter: value")
    return {**base, **parse_args(arg)}


@pipeline_app.command("upload")
def upload_cmd(name: str = typer.Argument(..., help="Pipeline name (see `fathom pipeline list`)."), host: str = _HOST,
               version: str | None = typer.Option(None, "--version",
                                                  help="Version name (default: <project version>-<git rev>-<time>)."),
               namespace: str | None = typer.Option(None, "--namespace")) -> None:
    """Upload a pipeline to KFP (once) and a new version of it (every call): it appears in the KFP UI."""
    pid, vid, vname = upload(name, make_kfp_client(host, namespace=namespace), version=version, namespace=namespace)
    typer.echo(f"uploaded {display_name(name)} version {vname} (pipeline {pid}, version {vid})")


@pipeline_app.command("submit")
def submit_cmd(name: str = typer.Argument(...), host: str = _HOST, arg: list[str] = _ARG,
               args_file: Path | None = _ARGS_FILE, version: str | None = _VERSION,
               upload_first: bool = typer.Option(False, "--upload", help="Upload a new version first."),
               experiment: str = typer.Option("fathom", "--experiment"),
               run_name: str | None = typer.Option(None, "--run-name"), pipeline_root: str | None = _ROOT,
               service_account: str = _SA, namespace: str | None = typer.Option(None, "--namespace")) -> None:
    """Run an uploaded version of a pipeline (the newest unless --version)."""
    client = make_kfp_client(host, namespace=namespace)
    if upload_first:
        version = upload(name, client, namespace=namespace)[2]
    run_id = submit(name, client, arguments=_arguments(arg, args_file), experiment=experiment, run_name=run_name,
                    version=version, pipeline_root=pipeline_root, service_account=service_account,
                    namespace=namespace)
    typer.echo(f"submitted run {run_id}")


@pipeline_app.command("schedule")
def schedule_cmd(name: str = typer.Argument(...), host: str = _HOST,
                 cron: str = typer.Option("0 0 3 * * 0", "--cron", help="6-field cron (default Sundays 03:00)."),
                 arg: list[str] = _ARG, args_file: Path | None = _ARGS_FILE, version: str | None = _VERSION,
                 experiment: str = typer.Option("fathom", "--experiment"),
                 job_name: str | None = typer.Option(None, "--job-name", help="Default: fathom-<name>-weekly."),
                 pipeline_root: str | None = _ROOT, service_account: str = _SA,
                 namespace: str | None = typer.Option(None, "--namespace")) -> None:
    """Create or update (by name) the recurring run of an uploaded pipeline version: one run at a time, no
    catch-up."""
    rid, what = schedule(name, make_kfp_client(host, namespace=namespace), cron=cron,
                         arguments=_arguments(arg, args_file), experiment=experiment, job_name=job_name,
                         version=version, pipeline_root=pipeline_root, service_account=service_account,
                         namespace=namespace)
    typer.echo(f"{what} recurring run {rid} ({cron})")
