"""One RAPO step under `torchrun --nproc_per_node 2` on CPU (gloo) with the tiny random model."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rapo_testkit import template_file, tiny_model_dir


@pytest.mark.slow
def test_one_step_on_two_cpu_processes(tmp_path, embedded_model_dir):
    model = tiny_model_dir(tmp_path, embedded_model_dir)
    out = tmp_path / "dist"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fathom.rl.dist_smoke", "--model", str(model), "--out", str(out),
           "--template", str(template_file(tmp_path))]
    env["FATHOM_HANG_DUMP_S"] = "240"  # a hung worker dumps its stacks and exits instead of lingering
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers
        _, err = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{err[-4000:]}")
    assert proc.returncode == 0, err[-4000:]
    res = json.loads((out / "dist_result.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 1
    # 2 ranks × 4 rollouts = 4 prompts × G=2; each rank holds whole groups of its slice of the global batch
    assert len(res["batch"]) == 4
    for rank, share in enumerate(res["shares"]):
        assert share == [p for p in res["batch"][rank * 2:(rank + 1) * 2] for _ in range(2)]
    assert (out / "checkpoint-1" / "rapo_state.json").exists()
