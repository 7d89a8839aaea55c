"""Prompt sets for RL: loading ``{id, prompt, answer}`` rows, the offline default set, and the stage-2 mixture.

Accepted inputs: JSONL / JSON (list) / Parquet files or a ``datasets.save_to_disk`` folder, with a ``prompt`` or
``question`` column and an ``answer`` column (``id`` and ``source`` optional). Bad rows are reported, never
silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from fathom.errors import ConfigError

log = logging.getLogger(__name__)

#: Used only when the offline web (fathom.web.offline) is not importable: a handful of questions whose answers
#: the embedded model may know, so a smoke run still has prompts.
FALLBACK_QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "8"),
    ("What is 7 times 6?", "42"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the chemical symbol of gold?", "Au"),
    ("Who wrote the play Hamlet?", "William Shakespeare"),
]


def _row_id(prompt: str, source: str) -> str:
    return f"{source}-{hashlib.sha1(prompt.encode()).hexdigest()[:10]}"


def normalize_rows(raw: Iterable[dict], *, source: str = "data", where: str = "input") -> list[dict]:
    """``{id, prompt, answer, source, ...}`` rows; duplicates (same prompt) are merged, keeping the first."""
    rows, seen, bad = [], set(), []
    for i, r in enumerate(raw):
        prompt = r.get("prompt", r.get("question"))
        if isinstance(prompt, list):  # conversational: the last user message
            prompt = next((m.get("content") for m in reversed(prompt) if m.get("role") == "user"), None)
        answer = r.get("answer")
        if not isinstance(prompt, str) or not prompt.strip() or answer is None or str(answer).strip() == "":
            bad.append(i)
            continue
        prompt = prompt.strip()
        if prompt in seen:
            continue
        seen.add(prompt)
        src = str(r.get("source") or source)
        rows.append({**{k: v for k, v in r.items() if k not in ("question",)}, "prompt": prompt,
                     "answer": str(answer), "source": src, "id": str(r.get("id") or _row_id(prompt, src))})
    if bad:
        raise ConfigError(f"{where}: {len(bad)} row(s) lack a prompt/question or an answer (first: row {bad[0]})")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: duplicate ids")
    return rows


def read_records(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if path.is_dir():  # a stage's dataset folder: NAME.jsonl, hf/ (save_to_disk) or a save_to_disk folder
        jsonls = sorted(path.glob("*.jsonl"))
        if len(jsonls) == 1:
            return read_records(jsonls[0])
        from datasets import load_from_disk

        hf = path / "hf" if (path / "hf").is_dir() else path
        try:
            ds = load_from_disk(str(hf))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no NAME.jsonl, hf/ or datasets folder found") from exc
        if hasattr(ds, "keys") and "train" in ds:
            ds = ds["train"]
        return [dict(r) for r in ds]
    if path.suffix == ".parquet":
        from datasets import Dataset

        return [dict(r) for r in Dataset.from_parquet(str(path))]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else data.get("data", [])
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return out


def load_rl_rows(path: Path, *, source: str | None = None, limit: int | None = None) -> list[dict]:
    rows = normalize_rows(read_records(path), source=source or Path(path).stem, where=str(path))
    return rows[:limit] if limit else rows


def offline_rows(n: int = 8, *, hops: int = 2, seed: int = 0, world_seed: int = 0) -> list[dict]:
    """Questions with ground truth from the offline web (answerable only by searching it).

    `world_seed` is the world the questions are about and must be the world the tool server serves (the training
    stack serves world 0, `fathom.web.stack.offline_stack`); `seed` only picks which of its questions. A question of
    another world is unanswerable there: every rollout fails and RAPO sees no gradient."""
    try:
        from fathom.web.offline import ensure_offline_web
    except ImportError:
        log.warning("fathom.web.offline is not available: using %d built-in questions", len(FALLBACK_QUESTIONS))
        return normalize_rows(({"prompt": q, "answer": a} for q, a in FALLBACK_QUESTIONS[:n]), source="builtin")
    web = ensure_offline_web(seed=world_seed)
    qs = web.questions(n, hops=hops, seed=seed)
    return normalize_rows(({"id": q.id, "prompt": q.question, "answer": q.answer, "hops": len(q.hops)} for q in qs),
                          source="offline-web")


def hop_count(row: dict) -> int | None:
    """Hops of a multi-hop row: a ``hops`` field (int or list), MuSiQue's ``question_decomposition`` or its id
    prefix (``3hop1__...``)."""
    h = row.get("hops")
    if isinstance(h, int):
        return h
    if isinstance(h, list):
        return len(h)
    d = row.get("question_decomposition")
    if isinstance(d, list) and d:
        return len(d)
    m = re.match(r"(\d)hop", str(row.get("id", "")))
    return int(m.group(1)) if m else None


def stage2_mixture(duetqa: list[dict], math: list[dict], musique: list[dict], *, min_hops: int = 3,
                   keep_unknown_hops: bool = False) -> list[dict]:
    """Stage-2 pool (method.md §4): DuetQA + math + MuSiQue restricted to ≥ ``min_hops`` hops (rows with an
    unknown hop count are dropped unless ``keep_unknown_hops``). Ids are namespaced by source."""
    out: list[dict] = []
    for src, rows in (("duetqa", duetqa), ("math", math)):
        out += [{**r, "source": r.get("source") or src} for r in rows]
    for r in musique:
        h = hop_count(r)
        if (h is None and keep_unknown_hops) or (h is not None and h >= min_hops):
            out.append({**r, "source": r.get("source") or "musique"})
    return normalize_rows(out, where="stage-2 mixture")


def write_jsonl(rows: Iterable[dict], path: Path) -> Path:
    from fathom.storage import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


_MATH_ITEMS = ["crates", "books", "seedlings", "bolts", "tickets", "bottles", "jars", "coils"]
_MATH_PLACES = ["warehouse", "library", "nursery", "workshop", "box office", "depot", "pantry", "factory"]


def synthetic_math_rows(n: int, *, seed: int = 0) -> list[dict]:
    """`n` deterministic multi-step arithmetic word problems with integer answers (source ``math-synthetic``):
    the embedded default's stand-in for the s1 math set (pass s1 rows by path/URI on a cluster)."""
    import random

    rows = []
    for i in range(n):
        r = random.Random(f"fathom-math/{seed}/{i}")
        item, place = r.choice(_MATH_ITEMS), r.choice(_MATH_PLACES)
        a, k, b, c = r.randint(120, 900), r.randint(2, 9), r.randint(11, 60), r.randint(15, 300)
        kind = i % 3
        if kind == 0:
            q = (f"A {place} holds {a} {item}. It ships {k} lots of {b} {item} and then receives {c} more. "
                 f"How many {item} does it hold now?")
            ans = a - k * b + c
        elif kind == 1:
            q = (f"A {place} packs {a} {item} into boxes of {k}, then gives away {k + 1} full boxes. How many full "
                 f"boxes does it keep?")
            ans = a // k - (k + 1)
        else:
            q = (f"Each of {k} shelves in a {place} holds {b} {item}; {c % 50 + 1} {item} are removed from every "
                 f"shelf. How many {item} remain in total?")
            ans = k * max(0, b - (c % 50 + 1))
        rows.append({"id": f"math-synthetic-{seed}-{i:05d}", "prompt": q, "answer": str(ans)})
    return normalize_rows(rows, source="math-synthetic")
