"""GPU inference steps: vLLM in bf16 when the step has a GPU (a fake `vllm` module stands in for the real one:
what the step asks of it — dtype, token-id prompts, per-row budgets, EOS stops — is the contract), the transformers
CPU path otherwise."""

import sys
import types
from typing import ClassVar

import pytest

from fathom.errors import ConfigError
from fathom.llm import gpu


class _Out:
    def __init__(self, ids):
        self.outputs = [types.SimpleNamespace(token_ids=ids)]


class FakeLLM:
    instances: ClassVar[list] = []

    def __init__(self, **kw):
        self.kw, self.calls = kw, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        return [_Out(list(range(100, 110)) + [2, 7, 7]) for _ in prompts]  # 10 tokens, EOS (2), junk after


class FakeParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)


@pytest.fixture()
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(gpu, "vllm_installed", lambda: True)
    FakeLLM.instances.clear()
    return mod


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(gpu, "gpu_available", lambda: False)
    monkeypatch.setattr(gpu, "vllm_installed", lambda: True)
    assert gpu.resolve_backend("auto") == "transformers"  # the embedded default: CPU, unchanged
    monkeypatch.setattr(gpu, "gpu_available", lambda: True)
    assert gpu.resolve_backend("auto") == "vllm"
    monkeypatch.setattr(gpu, "vllm_installed", lambda: False)
    assert gpu.resolve_backend("auto") == "transformers"
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        gpu.resolve_backend("vllm")


def test_policy_rollouts_on_vllm_bf16_from_token_ids(fake_vllm, monkeypatch, embedded_model_dir):
    monkeypatch.setattr(gpu, "gpu_available", lambda: True)
    gen, tok, backend = gpu.policy_generator(embedded_model_dir, temperature=0.6, max_model_len=40960, seed=3)
    assert backend == "vllm"
    [llm] = FakeLLM.instances
    assert llm.kw["dtype"] == "bfloat16" and llm.kw["max_model_len"] == 40960 and llm.kw["seed"] == 3
    rows, lps = gen([[1, 2, 3], [4, 5]], [64, 4])
    prompts, params = llm.calls[0]
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4, 5]}]
    assert [p.max_tokens for p in params] == [64, 4] and params[0].temperature == 0.6
    assert tok.eos_token_id in params[0].stop_token_ids
    assert 2 in params[0].stop_token_ids and rows[0] == [*range(100, 110), 2]  # cut after the first EOS
    assert len(rows[1]) == 4 and lps is None  # the row's own budget


def test_candidate_policy_serves_a_folder_with_vllm_on_gpu_and_in_process_on_cpu(tmp_path, monkeypatch):
    folder = tmp_path / "candidate"
    folder.mkdir()
    monkeypatch.setattr(gpu, "gpu_available", lambda: False)
    with gpu.candidate_policy(str(folder)) as role:
        assert role == f"local:{folder}"
    with gpu.candidate_policy("http://isvc.example/v1#fathom-search") as role:
        assert role == "http://isvc.example/v1#fathom-search"  # the deployed endpoint
    cmd = gpu.vllm_server_command(folder, host="127.0.0.1", port=8011, name="candidate", max_model_len=40960)
    def flag(name):
        return cmd[cmd.index(name) + 1]

    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert flag("--dtype") == "bfloat16" and flag("--max-model-len") == "40960"
    assert flag("--model") == str(folder) and flag("--served-model-name") == "candidate"
