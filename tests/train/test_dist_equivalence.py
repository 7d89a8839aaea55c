"""One RAPO step on 2 CPU processes (torchrun, gloo) equals the same step on 1 process for the same global batch
(4 prompts × G = 2, scripted rollouts): the loss within 1e-6 absolute and every updated weight within 1e-6 absolute
— 1 % of the step's learning rate (1e-4), the size of one AdamW update — while the step moved the weights by ≈ lr."""

import pytest
from rapo_testkit import template_file, tiny_model_dir

LR = 1e-4


@pytest.mark.slow
def test_two_workers_match_one_worker_on_the_same_global_batch(tmp_path, embedded_model_dir):
    from fathom.rl.dist_check import compare, run_world

    model = tiny_model_dir(tmp_path, embedded_model_dir)
    template = template_file(tmp_path)
    one = run_world(1, model=model, out=tmp_path / "w1", template=template, lr=LR, timeout_s=400)
    two = run_world(2, model=model, out=tmp_path / "w2", template=template, lr=LR, timeout_s=400)
    assert (one["world_size"], two["world_size"]) == (1, 2) and one["steps"] == two["steps"] == 1
    diff = compare(tmp_path / "w1", tmp_path / "w2", initial=model)
    print(diff)
    assert diff["same_batch"]
    assert abs(one["losses"][0]) > 1e-3  # a loss that says something (token-weighted advantages)
    assert diff["max_loss_diff"] <= 1e-6
    assert diff["max_weight_diff"] <= 0.01 * LR
    assert diff["max_weight_change"] >= 0.5 * LR  # the step did move the weights
