"""GPU inference inside a pipeline step: vLLM in bf16 when the step has a GPU (and vLLM is installed, as in the
fathom-trainer image), the existing transformers path on CPU otherwise (the embedded default stays as it is).

* :func:`policy_generator` — a token-exact :data:`fathom.rl.rollout.TurnGenerator` for the RolloutEngine (the
  stage-2 filter's rollouts): ``vllm.LLM(model, dtype="bfloat16")`` generating from token ids, or
  ``transformers.generate`` in float32 on CPU.
* :func:`candidate_policy` — the policy role of an evaluation: a vLLM OpenAI server started in the step on the
  candidate folder (bf16; `http://127.0.0.1:PORT/v1#candidate`) or ``local:<folder>`` on CPU; a deployed endpoint
  role passes through unchanged.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fathom.errors import ConfigError

log = logging.getLogger(__name__)

Backend = Literal["auto", "vllm", "transformers"]


def gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: Backend = "auto") -> Literal["vllm", "transformers"]:
    """`auto` = vLLM when this step has a GPU and vLLM is installed, else transformers on CPU."""
    if backend == "auto":
        return "vllm" if gpu_available() and vllm_installed() else "transformers"
    if backend == "vllm" and not vllm_installed():
        raise ConfigError("backend vllm: vLLM is not installed in this image (the fathom-trainer image has it)")
    return backend


def vllm_turn_generator(llm, tokenizer, *, temperature: float, top_p: float, eos_ids: list[int] | None = None):
    """A TurnGenerator over a `vllm.LLM`: prompts are token ids (the rollout's exact context), one SamplingParams
    per row (its own token budget), generation stops at the tokenizer's EOS ids."""
    from vllm import SamplingParams

    from fathom.rl.rollout import _eos_ids

    eos = list(eos_ids or _eos_ids(tokenizer))

    def generate(contexts: list[list[int]], max_new: list[int]):
        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=int(m), stop_token_ids=eos,
                                 detokenize=False) for m in max_new]
        outs = llm.generate([{"prompt_token_ids": list(c)} for c in contexts], params, use_tqdm=False)
        rows = []
        for o, m in zip(outs, max_new):
            ids = list(o.outputs[0].token_ids)
            cut = next((j + 1 for j, t in enumerate(ids) if t in eos), len(ids))
            rows.append(ids[: min(cut, m)])
        return rows, None

    return generate


def policy_generator(model_dir: str | Path, *, temperature: float, top_p: float = 1.0, backend: Backend = "auto",
                     max_model_len: int | None = None, gpu_memory_utilization: float = 0.85,
                     seed: int = 0) -> tuple[Any, Any, str]:
    """(turn generator, tokenizer, backend used) of a policy folder for RolloutEngine.generate."""
    chosen = resolve_backend(backend)
    if chosen == "vllm":
        from transformers import AutoTokenizer
        from vllm import LLM

        tok = AutoTokenizer.from_pretrained(model_dir)
        kw: dict[str, Any] = {"model": str(model_dir), "dtype": "bfloat16", "seed": seed,
                              "gpu_memory_utilization": gpu_memory_utilization}
        if max_model_len:
            kw["max_model_len"] = int(max_model_len)
        log.info("policy rollouts on vLLM (bf16): %s", model_dir)
        return vllm_turn_generator(LLM(**kw), tok, temperature=temperature, top_p=top_p), tok, "vllm"
    from fathom.rl.rollout import transformers_generator
    from fathom.rl.stage import load_policy

    model, tok = load_policy(Path(model_dir))
    model.eval()
    return transformers_generator(model, tok, temperature=temperature, top_p=top_p), tok, "transformers"


def vllm_server_command(model_dir: str | Path, *, host: str, port: int, name: str,
                        max_model_len: int | None = None, gpu_memory_utilization: float = 0.85) -> list[str]:
    """The in-step vLLM OpenAI server of a model folder (bf16, this image's vLLM)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", name, "--host", host, "--port", str(port), "--dtype", "bfloat16",
           "--gpu-memory-utilization", str(gpu_memory_utilization), "--disable-log-requests"]
    if max_model_len:
        cmd += ["--max-model-len", str(int(max_model_len))]
    return cmd


@contextmanager
def candidate_policy(model: str, *, backend: Backend = "auto", name: str = "candidate",
                     max_model_len: int | None = 40960, ready_timeout_s: float = 1200.0,
                     log_dir: str | Path | None = None) -> Iterator[str]:
    """The policy role to evaluate `model` with, for the duration of the block: an endpoint role (`http...`) is
    returned as is; a folder is served by vLLM in bf16 on this step's GPU, or run in-process (`local:<folder>`)
    on CPU."""
    if not Path(model).is_dir():  # an endpoint role (http...#name, local:<name>): as given
        yield model
        return
    if resolve_backend(backend) != "vllm":
        yield f"local:{model}"
        return
    import os
    import subprocess

    from fathom.deploy.local import free_port, stop_local_server, wait_ready

    host, port = "127.0.0.1", free_port()
    log_path = Path(log_dir or Path(model).parent) / f".vllm-{name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = vllm_server_command(model, host=host, port=port, name=name, max_model_len=max_model_len)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
    try:
        waited = wait_ready(f"http://{host}:{port}", proc, timeout_s=ready_timeout_s, log_path=log_path)
        log.info("vLLM (bf16) serving %s as %s after %.0f s", model, name, waited)
        yield f"http://{host}:{port}/v1#{name}"
    finally:
        stop_local_server(proc.pid)
