"""bench_learning's account of what RAPO changed: weights (relative L2, tensors touched) and greedy behaviour
(transcripts, answers, questions gained and lost), from worked examples."""

from __future__ import annotations

from pathlib import Path

import benchutil  # noqa: F401  (puts benchmarks/ on sys.path)
import bench_learning as B
import pytest
import torch
from safetensors.torch import save_file


def _save(folder: Path, tensors: dict) -> Path:
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_weight_change_measures_the_move_and_the_tensors_touched(tmp_path):
    before = _save(tmp_path / "a", {"w": torch.tensor([3.0, 4.0]), "frozen": torch.tensor([1.0])})
    after = _save(tmp_path / "b", {"w": torch.tensor([3.0, 4.5]), "frozen": torch.tensor([1.0])})
    w = B.weight_change(before, after)
    # |delta| = 0.5, |before| = sqrt(9 + 16 + 1) = sqrt(26)
    assert w["relative_l2"] == pytest.approx(0.5 / 26 ** 0.5)
    assert w["max_abs"] == pytest.approx(0.5) and (w["changed"], w["tensors"]) == (1, 2)
    assert B.weight_change(before, before)["changed"] == 0


def test_behaviour_change_counts_on_the_shared_questions():
    def row(i, pred, ok, text="t"):
        return {"id": i, "prediction": pred, "correct": ok, "transcript": text}

    warm = [row("q1", "a", True), row("q2", "b", False), row("q3", "c", False), row("q4", "d", True)]
    rapo = [row("q1", "a", True), row("q2", "x", True, "u"), row("q3", "c", False, "u"), row("q5", "e", True)]
    assert B.behaviour_change(warm, rapo) == {"n": 3, "transcripts": 2, "predictions": 1, "gained": 1, "lost": 0}


def test_accuracy_by_hop_count_from_the_question_ids():
    rows = [{"id": f"ow-h{h}-atlas-{i}", "correct": ok, "tool_calls": 1, "transcript": ""}
            for i, (h, ok) in enumerate([(1, True), (1, False), (2, True), (3, False)])]
    s = B.summarise(rows)
    assert s["by_hop"] == {1: (2, 0.5), 2: (1, 1.0), 3: (1, 0.0)} and s["acc"] == 0.5
