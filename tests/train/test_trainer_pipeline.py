"""The training pipeline compiles, its IR places the GPU steps on the GPU pool with caching off; the components'
stage bodies run end to end on the tiny random model and the stub-free offline path (slow)."""

import json
from pathlib import Path

import pytest
import yaml
from rapo_testkit import tiny_model_dir


def test_pipeline_compiles_with_gpu_placement(tmp_path):
    from kfp import compiler

    from pipelines.train import LOCAL_ARGUMENTS, PIPELINE

    path = tmp_path / "train.yaml"
    compiler.Compiler().compile(PIPELINE, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    ir, platform = docs[0], (docs[1] if len(docs) > 1 else {})
    execs = ir["deploymentSpec"]["executors"]
    gpu_steps = {k: v for k, v in execs.items() if any(s in k for s in ("rapo-stage", "stage2-filter",
                                                                        "synthesizer-sft"))}
    assert len(gpu_steps) == 4
    for name, ex in gpu_steps.items():
        res = ex["container"]["resources"]
        assert res["accelerator"]["resourceType"] == "nvidia.com/gpu", name
        assert ex["container"]["image"].endswith(":0.1.0")
    kube = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in gpu_steps:
        cfg = kube[name]
        assert cfg["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert cfg["nodeSelector"]
        assert cfg["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        assert cfg["secretAsEnv"][0]["keyToEnv"][0]["envVar"] == "OPENAI_API_KEY"
        assert cfg["genericEphemeralVolume"][0]["mountPath"] == "/fathom-work"  # the work folder, bounded
    tasks = ir["root"]["dag"]["tasks"]
    assert all(not t.get("cachingOptions", {}).get("enableCache", False) for t in tasks.values())
    assert set(LOCAL_ARGUMENTS) <= set(ir["root"]["inputDefinitions"]["parameters"])


class _Art:
    def __init__(self, path):
        self.path, self.metadata, self.logged = str(path), {}, {}

    def log_metric(self, k, v):
        self.logged[k] = v


@pytest.mark.slow
def test_component_bodies_on_tiny_model(tmp_path, embedded_model_dir):
    """stage 1 → filter → stage 2 and SFT through the components' bodies (artifacts as plain folders), with the
    real offline stack as the tool server."""
    from components.train import rapo_stage1, rapo_stage2, synthesizer_sft
    from fathom.rl.data import write_jsonl
    from fathom.rl.filter import build_and_filter
    from fathom.sft.trainer import tiny_sft_rows

    model = tiny_model_dir(tmp_path, embedded_model_dir)
    data = tmp_path / "prompts"
    data.mkdir()
    write_jsonl([{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(3)],
                data / "rl.jsonl")
    cfg = json.dumps({"max_steps": 1, "save_steps": 1, "max_tokens_per_turn": 8, "report_to": []})
    base, m1, met, html = _Art(model), _Art(tmp_path / "m1"), _Art(tmp_path / "met"), _Art(tmp_path / "c.html")
    rapo_stage1.python_func(preset="cpu-smoke", tools_url="", judge="exact", labeller="heuristic", config_json=cfg,
                            checkpoint_uri="", policy=base, dataset=_Art(data), model=m1, metrics=met, curves=html)
    assert met.logged["steps"] == 1 and (Path(m1.path) / "config.json").exists()
    assert "data:image/png;base64," in Path(html.path).read_text()
    stats = build_and_filter(tmp_path / "kept", model=m1.path, tools_url=None, preset="cpu-smoke",
                             duetqa=data / "rl.jsonl", limit_per_source=2)
    # 2 DuetQA + 2 synthetic math + 2 offline-web 3-hop rows (the MuSiQue evaluation file is never used)
    assert stats["total"] == 6 and stats["kept"] >= 4
    assert set(stats["by_source"]) - {"data", "duetqa"} == {"math-synthetic", "offline-web-3hop"}
    assert stats["mixture"]["math"] == 2 and stats["mixture"]["multihop_in"] == 2
    m2 = _Art(tmp_path / "m2")
    rapo_stage2.python_func(preset="cpu-smoke", tools_url="", judge="exact", labeller="heuristic", config_json=cfg,
                            checkpoint_uri="", policy=m1, dataset=_Art(tmp_path / "kept" / "kept.jsonl"), model=m2,
                            metrics=_Art(tmp_path / "x"), curves=_Art(tmp_path / "c2.html"))
    assert m2.metadata["reward_mode"] == "step" and m2.metadata["stage"] == 2
    sft_dir = tmp_path / "sft"
    sft_dir.mkdir()
    write_jsonl(tiny_sft_rows(2), sft_dir / "sft.jsonl")
    ms, sm = _Art(tmp_path / "ms"), _Art(tmp_path / "y")
    synthesizer_sft.python_func(preset="cpu-smoke", base_model=str(model), config_json=json.dumps(
        {"max_steps": 1, "save_steps": 1, "max_length": 256, "report_to": []}), checkpoint_uri="",
        dataset=_Art(sft_dir), model=ms, metrics=sm, curves=_Art(tmp_path / "c3.html"))
    saved = json.loads((Path(ms.path) / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "yarn" and saved["rope_parameters"]["factor"] == 2.0
    assert sm.logged["steps"] == 1
