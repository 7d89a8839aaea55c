"""Dataset loader: real benchmark files, odd JSONL, selection, name resolution."""

from __future__ import annotations

import json

import pytest

from fathom.evaluate.datasets import DatasetError, load_dataset, parse_jsonl, question_id, select

EXPECTED = {"simpleqa": 4326, "frames": 824, "webwalker": 680, "musique": 2417, "gpqa-diamond": 198, "medqa": 1273}


@pytest.mark.parametrize("name,count", sorted(EXPECTED.items()))
def test_every_repo_benchmark_loads_with_expected_count(name, count):
    ds = load_dataset(name)
    assert ds.total == count == len(ds.examples)
    assert len({e.id for e in ds.examples}) == count
    assert all(e.question and e.answer for e in ds.examples)
    assert ds.sha256 and ds.path


def test_gpqa_int_ids_and_unicode_separators_survive():
    ds = load_dataset("gpqa-diamond")
    assert ds.examples[0].id == "1" and ds.grader == "mc"
    # one question holds a U+2028 line separator inside the string: str.splitlines would have broken the line
    assert any("\u2028" in e.question for e in ds.examples)


def test_odd_jsonl(tmp_path):
    text = (
        '{"id": 7, "question": "Q1\u2028still Q1\u2029and\x85more", "answer": 70, "extra": [1, 2]}\r\n'
        "\n"
        '{"question": "Q2", "answer": "A2"}\n'
        '{"id": "x", "question": "Q3", "answer": 1.0}'  # no trailing newline
    )
    p = tmp_path / "odd.jsonl"
    p.write_text(text, encoding="utf-8")
    ds = load_dataset(str(p))
    assert [e.id for e in ds.examples] == ["7", question_id("Q2"), "x"]
    assert ds.examples[0].question == "Q1\u2028still Q1\u2029and\x85more"
    assert ds.examples[0].answer == "70" and ds.examples[2].answer == "1"
    assert ds.examples[0].meta == {"extra": [1, 2]}
    assert ds.name == "odd" and ds.grader == "auto"


@pytest.mark.parametrize("bad,msg", [
    ('{"question": "ok", "answer": "a"}\n{"question": "broken", \n', ":2: malformed JSON"),
    ('{"question": "ok", "answer": "a"}\n\n["list"]\n', ":3: expected a JSON object"),
    ('{"answer": "a"}\n', ":1: missing or empty 'question'"),
    ('{"question": "q"}\n', ":1: missing or empty 'answer'"),
    ('{"id": 1, "question": "q", "answer": "a"}\n{"id": "1", "question": "r", "answer": "b"}\n',
     ":2: duplicate id '1' (first on line 1)"),
])
def test_malformed_line_rejected_with_line_number(tmp_path, bad, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(DatasetError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_dataset(str(p))


def test_selection_sample_shard_limit():
    exs = parse_jsonl("\n".join(json.dumps({"id": i, "question": f"q{i}", "answer": "a"}) for i in range(100)),
                      dataset="t")
    s1 = select(exs, sample=10, seed=3)
    assert s1 == select(exs, sample=10, seed=3) and s1 != select(exs, sample=10, seed=4)
    assert [int(e.id) for e in s1] == sorted(int(e.id) for e in s1)  # file order kept
    shards = [select(exs, shard=f"{i}/4") for i in range(4)]
    assert sorted(e.id for s in shards for e in s) == sorted(e.id for e in exs)
    assert [e.id for e in select(exs, shard="1/4", limit=3)] == ["1", "5", "9"]
    with pytest.raises(DatasetError, match="0 <= i < n"):
        select(exs, shard="4/4")
    ds = load_dataset("simpleqa", limit=20)
    assert len(ds.examples) == 20 and ds.total == 4326


def test_unknown_name_lists_available(monkeypatch, tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("seal0")
    assert "simpleqa" in str(e.value) and "FATHOM_BENCHMARKS_DIR" in str(e.value)
    (tmp_path / "seal0.jsonl").write_text('{"id": "s-1", "question": "q", "answer": "a"}\n')
    (tmp_path / "AIME25.jsonl").write_text('{"id": 1, "question": "q", "answer": 70}\n')
    monkeypatch.setenv("FATHOM_BENCHMARKS_DIR", str(tmp_path))
    assert load_dataset("seal0").examples[0].id == "s-1"
    aime = load_dataset("aime25")  # case-insensitive file match, numeric grader
    assert aime.grader == "number" and aime.examples[0].answer == "70"
    with pytest.raises(DatasetError, match="Available: .*seal0"):
        load_dataset("simpleqa")
