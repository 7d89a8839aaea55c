"""State that survives a crash: a checkpoint holds optimizer, scheduler, RNG and the RAPO state (schedule, pruned
set, replay buffer); resuming from it gives the same next batch (prompts and sampled tokens)."""

import json

import pytest
from rapo_testkit import make_trainer, template_file, tiny_model_dir
from transformers import TrainerCallback

from fathom.rl.rewards import AnswerJudge


class EvenJudge(AnswerJudge):
    async def judge_many(self, items):
        return [i % 2 == 0 for i, _ in enumerate(list(items))]


class Recorder(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.batches = trainer, {}

    def on_step_end(self, args, state, control, **kw):
        self.batches[state.global_step] = list(self.trainer.last_batch_pids)


def _spy(trainer, sink):
    inner = trainer.rollout_func

    def spy(prompts, tr):
        out = inner(prompts, tr)
        sink.append(out["completion_ids"])
        return out

    trainer.rollout_func = spy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedded_model_dir):
    root = tmp_path_factory.mktemp("tiny")
    return tiny_model_dir(root, embedded_model_dir), template_file(root)


def test_resume_gives_the_same_next_batch(tiny, tmp_path):
    model_dir, template = tiny
    out = tmp_path / "run"
    a, eng = make_trainer(model_dir, out, template, judge=EvenJudge(None))
    rec_a, comp_a = Recorder(a), []
    a.add_callback(rec_a)
    _spy(a, comp_a)
    try:
        a.train()
    finally:
        eng.close()
    ck = out / "checkpoint-1"
    for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "rapo_state.json"):
        assert (ck / f).exists(), f
    state = json.loads((ck / "rapo_state.json").read_text())
    assert state["replay"]["entries"], "the even judge's successes must be buffered"
    assert state["curriculum"]["cursor"] == 2 and state["last_batch_pids"] == rec_a.batches[1]

    b, eng = make_trainer(model_dir, out, template, judge=EvenJudge(None))
    rec_b, comp_b = Recorder(b), []
    b.add_callback(rec_b)
    _spy(b, comp_b)
    try:
        b.train(resume_from_checkpoint=str(ck))
    finally:
        eng.close()
    assert list(rec_b.batches) == [2]
    assert rec_b.batches[2] == rec_a.batches[2]  # same prompts
    assert comp_b[0] == comp_a[1]  # same sampled tokens (RNG restored)
    assert b.replay.state_dict()["entries"].keys() == a.replay.state_dict()["entries"].keys()
    assert b.curriculum.state_dict() == a.curriculum.state_dict()


def test_resume_refuses_a_foreign_checkpoint(tiny, tmp_path):
    model_dir, template = tiny
    t, eng = make_trainer(model_dir, tmp_path / "x", template)
    try:
        (tmp_path / "foreign").mkdir()
        with pytest.raises(FileNotFoundError, match="rapo_state.json"):
            t._load_optimizer_and_scheduler(str(tmp_path / "foreign"))
    finally:
        eng.close()
