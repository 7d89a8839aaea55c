"""`fathom corpus ...` and `fathom web ...` through the real typer app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fathom.cli import app

runner = CliRunner()


def test_corpus_index_and_search(tmp_path):
    dump = tmp_path / "d.jsonl"
    dump.write_text(json.dumps({"id": "1", "title": "Kelp", "text": "Kelp forests shelter sea otters."}) + "\n"
                    + json.dumps({"id": "2", "title": "Coral", "text": "Coral reefs host many fish."}) + "\n")
    r = runner.invoke(app, ["corpus", "index", str(dump), "--out", str(tmp_path / "idx"), "--base-url",
                            "http://sea.test", "--chunk-chars", "300"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["corpus", "search", str(tmp_path / "idx"), "sea otters", "--top-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    hit = json.loads(r.stdout.strip().splitlines()[-1])
    assert hit["url"] == "http://sea.test/1" and hit["title"] == "Kelp"


def test_corpus_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "fine"}\nnot json\n')
    r = runner.invoke(app, ["corpus", "index", str(bad), "--out", str(tmp_path / "idx")])
    assert r.exit_code == 2 and "bad.jsonl:2" in r.output.replace("\n", "")
    r = runner.invoke(app, ["corpus", "search", str(tmp_path / "nope"), "x"])
    assert r.exit_code == 2 and "not a corpus index" in " ".join(r.output.split())


def test_web_build_and_questions(tmp_path, monkeypatch):
    monkeypatch.setenv("FATHOM_HOME", str(tmp_path))
    r = runner.invoke(app, ["web", "build", "--seed", "1", "--pages", "20"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "offline-web" / "seed1-n20" / "manifest.json").is_file()
    r = runner.invoke(app, ["web", "questions", "--n", "3", "--seed", "1", "--pages", "20", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert len(rows) == 3 and all(row["answer"] and len(row["hops"]) == 2 for row in rows)
