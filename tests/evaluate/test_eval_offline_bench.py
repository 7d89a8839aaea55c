"""The benchmark generated from the offline web: known answers, stable ids, loadable by name and by file."""

from __future__ import annotations

from fathom.evaluate.datasets import load_dataset
from fathom.evaluate.offline_bench import export_offline_benchmark, offline_benchmark


def test_offline_benchmark_is_deterministic_and_grounded():
    a = offline_benchmark(6)
    assert a == offline_benchmark(6) and len(a) == 6
    assert len({e.id for e in a}) == 6 and {e.meta["n_hops"] for e in a} == {1, 2}
    for e in a:
        assert e.question and e.answer and e.dataset == "offline-web"
        assert e.meta["hops"] and all(h["url"].startswith("http://") for h in e.meta["hops"])
    ds = load_dataset("offline-web", limit=3, offline_n=6)
    assert ds.grader == "auto" and [e.id for e in ds.examples] == [e.id for e in a[:3]]


def test_export_and_load_by_path(tmp_path):
    path = export_offline_benchmark(tmp_path / "ow.jsonl", n=4)
    ds = load_dataset(str(path))
    assert len(ds.examples) == 4 and ds.examples[0].meta["hops"]
