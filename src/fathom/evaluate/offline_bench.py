"""A benchmark generated from the offline web (``fathom.web.offline``): questions answerable only by searching
the generated site, with known answers. Its ids are stable for a given (web seed, pages, question seed), so runs
are resumable and comparable. The served site of the in-process tool stack uses the same web seed and size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fathom.evaluate.datasets import OFFLINE_WEB, Example

log = logging.getLogger(__name__)


def offline_benchmark(n: int = 50, *, web_seed: int = 0, n_pages: int = 120, question_seed: int = 0,
                      hops: tuple[int, ...] = (1, 2)) -> list[Example]:
    """``n`` questions over the offline web, split evenly over the ``hops`` levels (ids ``ow-h<hops>-<qid>``)."""
    from fathom.web.offline import ensure_offline_web

    web = ensure_offline_web(seed=web_seed, n_pages=n_pages)
    out: list[Example] = []
    seen: set[str] = set()
    per = [n // len(hops) + (1 if i < n % len(hops) else 0) for i in range(len(hops))]
    for h, k in zip(hops, per):
        if k <= 0:
            continue
        try:
            qas = web.questions(k, hops=h, seed=question_seed)
        except (ValueError, NotImplementedError) as exc:
            log.warning("offline web: no %d-hop questions (%s)", h, exc)
            continue
        for qa in qas:
            ex_id = f"ow-h{h}-{qa.id}"
            if ex_id in seen:
                continue
            seen.add(ex_id)
            out.append(Example(id=ex_id, question=qa.question, answer=str(qa.answer), dataset=OFFLINE_WEB,
                               meta={"hops": [dict(x) for x in qa.hops], "n_hops": h}))
    return out


def export_offline_benchmark(path: Path, n: int = 50, **kw) -> Path:
    """Write the generated benchmark as ``{id, question, answer, hops}`` JSONL (loadable by path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = offline_benchmark(n, **kw)
    from fathom.storage import atomic_write_text

    atomic_write_text(path, "".join(json.dumps({"id": e.id, "question": e.question, "answer": e.answer, **e.meta},
                                               ensure_ascii=False) + "\n" for e in rows))
    return path
