"""Every gold answer of every benchmark file in data/benchmarks/, graded against itself with the grader chosen for
its dataset, is correct (a gold answer the grader can never accept would silently cap the benchmark's score)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fathom.answer import grade
from fathom.evaluate.datasets import load_dataset

BENCH_DIR = Path(__file__).resolve().parents[2] / "data" / "benchmarks"
FILES = sorted(BENCH_DIR.glob("*.jsonl"))


@pytest.mark.skipif(not FILES, reason="no benchmark files")
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_gold_answers_grade_themselves_correct(path):
    ds = load_dataset(str(path))
    graders = {ds.grader, "auto"}  # the dataset's deterministic grader, and the RL / DuetQA rule
    bad = [(ex.id, name, ex.answer[:80]) for ex in ds.examples for name in graders
           if not grade(ex.answer, ex.answer, name, question=ex.question).correct]
    assert not bad, f"{len(bad)} gold answers of {path.name} are not graded correct against themselves: {bad[:5]}"
    # ...and a boxed model answer holding the gold extracts back to it
    from fathom.answer import extract_answer

    for ex in ds.examples[:300]:
        if "{" not in ex.answer and "}" not in ex.answer and "\n" not in ex.answer:
            assert grade(extract_answer(f"so \\boxed{{{ex.answer}}}"), ex.answer, ds.grader,
                         question=ex.question).correct, ex.id
