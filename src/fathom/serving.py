"""Run any ASGI app with real uvicorn on loopback in a background thread (servers in tests, benchmarks, the
in-process offline stack)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, *, ready_timeout_s: float = 180.0,
                    name: str = "uvicorn") -> Iterator[str]:
    """Run a real uvicorn server in a daemon thread; yield its base URL once it accepts requests; stop it cleanly.

    The socket is bound here (port 0 = any free port), so the URL is known before the server starts."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"{name}-{bound}")
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                err = getattr(getattr(app, "state", None), "startup_error", None)
                server.should_exit = True
                if err is not None:
                    raise err
                raise RuntimeError(f"server on {host}:{bound} did not start")
            time.sleep(0.01)
        url_host = f"[{host}]" if ":" in host else host
        yield f"http://{url_host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()


def run_server(app, host: str = "127.0.0.1", port: int = 8000, *, drain_s: float = 30.0, log_level: str = "info",
               on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `app` in the foreground (the main thread) until SIGTERM/SIGINT — the production path of a pod.

    This is `uvicorn.run` with the socket bound here (so port 0 works and `on_ready` gets the URL once the server
    accepts requests). uvicorn installs the signal handlers: on SIGTERM it stops accepting connections, lets
    in-flight requests finish for up to `drain_s` seconds, runs the app's lifespan shutdown, then re-raises the
    signal (SIGINT surfaces as KeyboardInterrupt). Keep the pod's terminationGracePeriodSeconds above `drain_s`."""
    import uvicorn

    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready(url)

    config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False,
                            timeout_graceful_shutdown=drain_s)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
