"""A training step under the `trainjob` and `accelerate` launchers, at the process boundary: the component stages its
inputs beside the checkpoint URI, the TrainJob's nodes (run by the fake Trainer API with the torch runtime's PET_*
env) stage them in, start `accelerate launch ... -m fathom.cli train search ...`, node 0 publishes the working
folder, and the component gets it back. `fathom train` itself is replaced by a stand-in that writes a finished run;
the real one under 2 processes is tests/train/test_dist_equivalence.py."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml
from fake_trainer_api import FakeTrainerAPI, Scenario, Served

from fathom.errors import ConfigError
from fathom.launch import node as node_mod
from fathom.launch import run as run_mod
from fathom.launch.config import LaunchConfig
from fathom.launch.node import NodePlan, run_node
from fathom.launch.trainjob import TrainJobFailed, trainer_client
from fathom.rl.stage import SearchTrainSpec


def _fake_train(calls: list, fail_rank: int | None = None):
    """Stands for `accelerate launch -m fathom.cli train ...`: checks the staged inputs, writes a finished run."""

    def call(argv, env=None):
        calls.append((list(argv), {k: v for k, v in (env or {}).items() if k.startswith("PET_")}))
        fathom = argv[argv.index("fathom.cli") + 1:]
        out = Path(fathom[fathom.index("--out") + 1])
        rank = int(argv[argv.index("--machine_rank") + 1])
        print(f"rank {rank}: training {' '.join(fathom[:2])}", flush=True)
        if rank == fail_rank:
            print("RuntimeError: NCCL timeout", flush=True)
            return 1
        assert json.loads(Path(fathom[fathom.index("--data") + 1]).read_text().splitlines()[0])["id"] == "q0"
        assert (Path(fathom[fathom.index("--model") + 1]) / "config.json").is_file()
        if rank == 0:
            (out / "final").mkdir(parents=True, exist_ok=True)
            (out / "final" / ".complete").write_text("stage 1\n")
            (out / "checkpoint-3").mkdir(exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"final": str(out / "final"), "steps": 3, "plots": [],
                                                          "metrics": str(out / "metrics.jsonl")}))
        return 0

    return call


def _executor(tmp_path):
    def run(job, i, env):
        plan = NodePlan.model_validate_json(job["spec"]["trainer"]["command"][-1])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = run_node(plan, root=tmp_path / f"node{i}", env=env)
        return rc, buf.getvalue().splitlines()

    return run


def _spec(tmp_path) -> SearchTrainSpec:
    data = tmp_path / "in" / "rl.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text('{"id": "q0", "prompt": "What is 1 plus one?", "answer": "2"}\n')
    policy = tmp_path / "in" / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    return SearchTrainSpec(out_dir=tmp_path / "component-work", preset="gpu", stage=1, model=str(policy), data=data,
                           overrides={"max_steps": 3, "report_to": []})


def _launch(**kw):
    return LaunchConfig(**{"launcher": "trainjob", "num_nodes": 2, "gpus_per_node": 8, "namespace": "ml",
                           "poll_s": 0.05, "timeout_s": 60, "run_id": "run-7", **kw})


def test_trainjob_stage_runs_on_two_nodes_and_returns_the_published_folder(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(node_mod.subprocess, "call", _fake_train(calls))
    store = tmp_path / "store"  # the object store (storage treats paths and s3:// URIs alike)
    fake = FakeTrainerAPI(Scenario(executor=_executor(tmp_path)))
    lines: list[str] = []
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        summary = run_mod.run_trainjob_stage("search", _spec(tmp_path), _launch(), checkpoint_uri=str(store / "s1"),
                                             step="rapo-stage1", client=client, on_log=lines.append)
    work = tmp_path / "component-work"
    assert summary["steps"] == 3 and summary["final"] == str(work / "final")
    assert (work / "final" / ".complete").is_file() and (work / "checkpoint-3").is_dir()
    assert (store / "s1.inputs" / "data" / "rl.jsonl").is_file() and (store / "s1.inputs" / "model").is_dir()
    # one launcher per node: accelerate (ZeRO-3 config with an absolute DeepSpeed path) across 2 machines
    assert len(calls) == 2
    for rank, (argv, pet) in enumerate(calls):
        assert argv[1:3] == ["-m", "accelerate.commands.launch"]
        flags = dict(zip(argv[3::2], argv[4::2]))
        assert flags["--num_machines"] == "2" and flags["--machine_rank"] == str(rank)
        assert flags["--num_processes"] == "2" and flags["--main_process_ip"] == "127.0.0.1"
        assert flags["--deepspeed_multinode_launcher"] == "standard"  # no pdsh/ssh between pods
        cfg = yaml.safe_load(Path(flags["--config_file"]).read_text())
        assert Path(cfg["deepspeed_config"]["deepspeed_config_file"]).is_file()
        fathom = argv[argv.index("fathom.cli") + 1:]
        assert fathom[:2] == ["train", "search"] and "--resume" in fathom and "max_steps=3" in fathom
        assert pet["PET_NODE_RANK"] == str(rank)
    assert "rank 0: training train search" in [line.strip() for line in lines]
    assert any("published" in line for line in lines) and fake.deleted


def test_a_failed_node_fails_the_step_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setattr(node_mod.subprocess, "call", _fake_train([], fail_rank=0))
    fake = FakeTrainerAPI(Scenario(executor=_executor(tmp_path)))
    with Served(fake) as srv:
        client = trainer_client("ml", client_configuration=srv.configuration)
        with pytest.raises(TrainJobFailed) as err:
            run_mod.run_trainjob_stage("search", _spec(tmp_path), _launch(), checkpoint_uri=str(tmp_path / "s"),
                                       step="rapo-stage1", client=client, on_log=lambda _: None)
    assert "node-0 exited with code 1" in err.value.message
    assert any("NCCL timeout" in line for line in err.value.logs) and fake.deleted


def test_trainjob_needs_a_checkpoint_uri(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint_uri"):
        run_mod.run_trainjob_stage("search", _spec(tmp_path), _launch(), checkpoint_uri="", step="s")


def test_accelerate_mode_launches_on_the_pods_devices(tmp_path, monkeypatch):
    seen: list = []

    def fake_run(argv, *, what, tail=60):
        seen.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        (out / "summary.json").write_text(json.dumps({"final": str(out / "final"), "steps": 1}))

    monkeypatch.setattr(run_mod, "_run_streaming", fake_run)
    spec = _spec(tmp_path)
    with pytest.raises(ConfigError, match="no GPU"):
        run_mod.run_accelerate("search", spec, LaunchConfig(launcher="accelerate"))
    summary = run_mod.run_accelerate("search", spec, LaunchConfig(launcher="accelerate", accelerate_config="cpu_ddp",
                                                                  num_processes=2))
    argv = seen[0]
    assert summary["steps"] == 1
    # CPU processes: torchrun (accelerate's MULTI_CPU launch needs MPI), gloo
    assert argv[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert argv[argv.index("--nproc_per_node") + 1] == "2" and "ddp_backend=gloo" in argv
    assert argv[argv.index("fathom.cli") + 1:][:2] == ["train", "search"]
    summary = run_mod.run_accelerate("search", spec, LaunchConfig(launcher="accelerate", accelerate_config="zero2",
                                                                  num_processes=8))
    argv = seen[1]
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and argv[argv.index("--num_processes") + 1] == "8"
    cfg = yaml.safe_load(Path(argv[argv.index("--config_file") + 1]).read_text())
    assert cfg["deepspeed_config"]["deepspeed_config_file"].endswith("ds_zero2.json")


@pytest.mark.slow
def test_accelerate_launcher_trains_on_two_cpu_processes(tmp_path, embedded_model_dir):
    """The real thing: `fathom train search` under the launcher with 2 CPU processes (gloo), one step; the global
    batch spans both processes (2 prompts × G = 2 with a per-process batch of 2 rollouts)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from rapo_testkit import template_file, tiny_model_dir

    model = tiny_model_dir(tmp_path, embedded_model_dir)
    data = tmp_path / "rl.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)})
                            + "\n" for i in range(4)))
    spec = SearchTrainSpec(out_dir=tmp_path / "work", preset="cpu-smoke", stage=1, model=str(model), data=data,
                           overrides={"max_steps": 1, "save_steps": 1, "report_to": [], "max_tokens_per_turn": 8,
                                      "prompt_template": str(template_file(tmp_path)), "plots": False})
    summary = run_mod.run_accelerate("search", spec, LaunchConfig(launcher="accelerate", accelerate_config="cpu_ddp",
                                                                  num_processes=2))
    assert summary["steps"] == 1 and (tmp_path / "work" / "final" / ".complete").is_file()
    state = json.loads((tmp_path / "work" / "checkpoint-1" / "rapo_state.json").read_text())
    assert len(state["last_batch_pids"]) == 2  # world size 2: 2 processes × 2 rollouts = 2 groups of G = 2


class _Art:
    def __init__(self, path):
        self.path, self.metadata, self.logged = str(path), {}, {}

    def log_metric(self, k, v):
        self.logged[k] = v


def test_rapo_component_body_with_the_trainjob_launcher(tmp_path, monkeypatch):
    """The component body (`search_stage` + `components.artifacts`) with `launcher=trainjob`: the SDK client comes
    from a kubeconfig (here: the fake API's), the Model artifact refers to the final model node 0 published."""
    from kubernetes import client as k8s

    from components.artifacts import export_training, launch_of
    from fathom.rl.stage import search_stage

    monkeypatch.setattr(node_mod.subprocess, "call", _fake_train([]))
    spec = _spec(tmp_path)
    fake = FakeTrainerAPI(Scenario(executor=_executor(tmp_path)))
    saved = k8s.Configuration.get_default_copy()
    try:
        with Served(fake) as srv:
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "fake", "cluster": {"server": srv.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u", "namespace": "ml"}}]}))
            model, metrics, curves = _Art(tmp_path / "model"), _Art(tmp_path / "m"), _Art(tmp_path / "c.html")
            launch = launch_of("trainjob", json.dumps({"num_nodes": 1, "namespace": "ml", "poll_s": 0.05,
                                                       "timeout_s": 60, "kubeconfig": str(kubeconfig)}), "run-9")
            summary = search_stage(
                Path(model.path + ".work"), stage=1, preset="gpu", base_model=str(spec.model), data=spec.data.parent,
                judge="exact", labeller="heuristic", overrides={"max_steps": 3},
                checkpoint_uri=str(tmp_path / "store" / "s1"), launch=launch)
            export_training(summary, model, metrics, curves)
    finally:
        k8s.Configuration.set_default(saved)
    assert summary["steps"] == 3 and model.metadata["uri"] == str(tmp_path / "store" / "s1" / "final")
    assert (tmp_path / "store" / "s1" / "final" / ".complete").is_file()
    assert metrics.logged["steps"] == 3.0
    [body] = fake.created
    assert body["metadata"]["labels"] == {"fathom.ai/step": "rapo-stage1", "fathom.ai/run-id": "run-9"}
    assert fake.deleted == [body["metadata"]["name"]]
