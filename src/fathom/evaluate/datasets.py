"""Benchmark datasets: any JSONL of ``{id?, question, answer}`` by path or by name.

Real benchmark files are messier than their schema. This loader tolerates what they contain and rejects what
cannot be graded:

* integer ids and answers (GPQA-Diamond, AIME-25) are stringified; a missing id becomes ``q-<sha256(question)[:16]>``;
* extra fields are kept in ``Example.meta``;
* lines are split on ``"\\n"`` only (never ``str.splitlines``: GPQA and HLE questions contain U+2028-style
  separators inside strings), ``"\\r"`` is stripped, blank lines are skipped, a missing trailing newline is fine;
* a line that is not a JSON object with a non-empty ``question`` and an ``answer`` is an error naming the file and
  its line number (the reference harness skipped such lines silently, shrinking the denominator); so is a line
  nested too deeply, holding an integer too long to convert, ``NaN``/``Infinity``, or an id that is not a string
  or an integer;
* questions are stripped of surrounding whitespace, as the reference harness does before prompting.

Selection is deterministic: ``sample`` (seeded random subset, in file order) -> ``shard i/n`` (every n-th example
from offset i) -> ``limit`` (first N).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from fathom.errors import FathomError

log = logging.getLogger(__name__)

GraderName = Literal["auto", "mc", "number", "em", "f1", "judge"]


class DatasetError(FathomError):
    """A benchmark file or name that cannot be loaded (the message says why and where)."""


class Example(BaseModel):
    """One benchmark item."""

    id: str = Field(description="Unique id within the dataset (stringified; hash of the question when absent).")
    question: str = Field(description="The question text given to the agent.")
    answer: str = Field(description="The ground-truth answer (stringified).")
    dataset: str = Field(description="Name of the dataset this example belongs to.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Extra fields of the source record.")


class BenchmarkInfo(BaseModel):
    """A named benchmark: where its file is and how it is graded by default."""

    name: str
    filename: str = Field(description="File name inside the benchmarks folder.")
    category: Literal["deepsearch", "reasoning", "offline"] = "deepsearch"
    grader: GraderName = Field(description="Deterministic grader used when no judge role is given.")
    judge_grader: GraderName = Field(description="Grader used when a judge role is given.")
    expected_count: int | None = Field(default=None, description="Records in the reference release of the file.")


# Pass@1 with an LLM judge in the paper; exact match for multiple choice and numbers needs no judge
# (reference-implementation §7.4). HLE mixes MCQ and exact-match items: `auto` dispatches per example.
BENCHMARKS: dict[str, BenchmarkInfo] = {
    b.name: b
    for b in [
        BenchmarkInfo(name="simpleqa", filename="simpleqa.jsonl", grader="em", judge_grader="judge", expected_count=4326),
        BenchmarkInfo(name="frames", filename="frames.jsonl", grader="em", judge_grader="judge", expected_count=824),
        BenchmarkInfo(name="webwalker", filename="webwalker.jsonl", grader="f1", judge_grader="judge",
                      expected_count=680),
        BenchmarkInfo(name="seal0", filename="seal0.jsonl", grader="em", judge_grader="judge", expected_count=111),
        BenchmarkInfo(name="musique", filename="musique.jsonl", grader="em", judge_grader="judge", expected_count=2417),
        BenchmarkInfo(name="hle", filename="hle.jsonl", category="reasoning", grader="auto", judge_grader="judge",
                      expected_count=2158),
        BenchmarkInfo(name="aime25", filename="aime25.jsonl", category="reasoning", grader="number",
                      judge_grader="number", expected_count=30),
        BenchmarkInfo(name="gpqa-diamond", filename="GPQA-Diamond.jsonl", category="reasoning", grader="mc",
                      judge_grader="mc", expected_count=198),
        BenchmarkInfo(name="medqa", filename="medqa.jsonl", category="reasoning", grader="mc", judge_grader="mc",
                      expected_count=1273),
    ]
}
OFFLINE_WEB = "offline-web"


class Dataset(BaseModel):
    """A loaded (and possibly sliced) benchmark."""

    name: str
    path: str | None = Field(default=None, description="Source file (None for generated benchmarks).")
    sha256: str = Field(default="", description="Hash of the source file bytes (provenance of a run).")
    total: int = Field(description="Records in the source before selection.")
    examples: list[Example]
    grader: GraderName = "auto"
    judge_grader: GraderName = "judge"
    category: str = "deepsearch"

    def __len__(self) -> int:
        return len(self.examples)


def benchmark_dirs() -> list[Path]:
    """Folders searched for named benchmarks: ``$FATHOM_BENCHMARKS_DIR`` (exclusive when set), else the repo's
    ``data/benchmarks`` and ``./data/benchmarks``."""
    env = os.environ.get("FATHOM_BENCHMARKS_DIR")
    if env:
        return [Path(env).expanduser()]
    repo = Path(__file__).resolve().parents[3] / "data" / "benchmarks"
    dirs = [repo]
    cwd = Path.cwd() / "data" / "benchmarks"
    if cwd.resolve() != repo.resolve():
        dirs.append(cwd)
    return dirs


def _find_file(filename: str) -> Path | None:
    for d in benchmark_dirs():
        if not d.is_dir():
            continue
        exact = d / filename
        if exact.is_file():
            return exact
        for p in d.iterdir():  # case-insensitive match (gpqa-diamond.jsonl vs GPQA-Diamond.jsonl)
            if p.is_file() and p.name.lower() == filename.lower():
                return p
    return None


def available_benchmarks() -> dict[str, Path]:
    """Named benchmarks whose file is present (plus any other ``*.jsonl`` in the folders, by stem)."""
    found: dict[str, Path] = {}
    for name, info in BENCHMARKS.items():
        path = _find_file(info.filename)
        if path is not None:
            found[name] = path
    for d in benchmark_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.jsonl")):
                if p not in found.values():
                    found.setdefault(p.stem.lower(), p)
    return found


def question_id(question: str) -> str:
    return "q-" + hashlib.sha256(question.encode("utf-8")).hexdigest()[:16]


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "; ".join(_to_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


class _BadConstant(ValueError):
    pass


def _no_constant(name: str):
    raise _BadConstant(name)


def parse_jsonl(text: str, *, dataset: str, source: str = "<string>") -> list[Example]:
    """Parse benchmark JSONL text. Splits on ``"\\n"`` only; raises DatasetError with the line number."""
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if lineno == 1:
            line = line.lstrip("\ufeff")
        try:
            record = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        except _BadConstant as exc:
            raise DatasetError(f"{source}:{lineno}: {exc} is not a valid JSON value") from None
        except RecursionError:
            raise DatasetError(f"{source}:{lineno}: JSON nested too deeply") from None
        except (ValueError, OverflowError) as exc:
            raise DatasetError(f"{source}:{lineno}: unreadable JSON value ({str(exc)[:120]})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{source}:{lineno}: expected a JSON object, got {type(record).__name__}")
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{source}:{lineno}: missing or empty 'question'")
        if "answer" not in record or record["answer"] is None or _to_text(record["answer"]) == "":
            raise DatasetError(f"{source}:{lineno}: missing or empty 'answer'")
        raw_id = record.get("id")
        if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float))
                                   or (isinstance(raw_id, float) and not raw_id.is_integer())):
            raise DatasetError(f"{source}:{lineno}: 'id' must be a string or an integer, got {raw_id!r:.80}")
        ex_id = _to_text(raw_id) if raw_id not in (None, "") else question_id(question)
        if ex_id in seen:
            raise DatasetError(f"{source}:{lineno}: duplicate id {ex_id!r} (first on line {seen[ex_id]})")
        seen[ex_id] = lineno
        meta = {k: v for k, v in record.items() if k not in ("id", "question", "answer")}
        examples.append(Example(id=ex_id, question=question.strip(), answer=_to_text(record["answer"]), dataset=dataset,
                                meta=meta))
    return examples


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if spec in (None, ""):
        return None
    try:
        i_s, n_s = str(spec).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise DatasetError(f"shard {spec!r}: write it as i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise DatasetError(f"shard {spec!r}: need 0 <= i < n")
    return i, n


def select(examples: list[Example], *, limit: int | None = None, sample: int | None = None, seed: int = 0,
           shard: str | tuple[int, int] | None = None) -> list[Example]:
    """Deterministic selection: seeded sample (kept in file order) -> shard -> limit."""
    out = list(examples)
    if sample is not None and sample < len(out):
        keep = sorted(random.Random(seed).sample(range(len(out)), int(sample)))
        out = [out[i] for i in keep]
    sh = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    if sh is not None:
        i, n = sh
        out = out[i::n]
    if limit is not None:
        out = out[: int(limit)]
    return out


def resolve(name_or_path: str) -> tuple[str, Path | None, BenchmarkInfo | None]:
    """Map a benchmark name or a file path to (dataset name, path, info). Raises with what is available."""
    key = name_or_path.strip()
    if key.lower() == OFFLINE_WEB:
        return OFFLINE_WEB, None, None
    path = Path(key).expanduser()
    if key.endswith(".jsonl") or os.sep in key or path.is_file():
        if not path.is_file():
            raise DatasetError(f"dataset file {path} does not exist")
        stem = path.stem.lower()
        info = BENCHMARKS.get(stem) or next((b for b in BENCHMARKS.values() if b.filename.lower() == path.name.lower()),
                                            None)
        return (info.name if info else stem), path, info
    lname = key.lower()
    info = BENCHMARKS.get(lname)
    if info is not None:
        path = _find_file(info.filename)
        if path is not None:
            return info.name, path, info
    else:
        avail = available_benchmarks()
        if lname in avail:
            return lname, avail[lname], None
    avail = sorted(available_benchmarks())
    where = ", ".join(str(d) for d in benchmark_dirs())
    known = "" if info is not None else f" Known names: {', '.join(sorted(BENCHMARKS))}, {OFFLINE_WEB}."
    raise DatasetError(
        f"benchmark {key!r} not found in {where} (set FATHOM_BENCHMARKS_DIR or pass a .jsonl path). "
        f"Available: {', '.join(avail + [OFFLINE_WEB]) or 'none'}.{known}"
    )


def load_dataset(name_or_path: str, *, limit: int | None = None, sample: int | None = None, seed: int = 0,
                 shard: str | tuple[int, int] | None = None, offline_n: int = 50, web_seed: int = 0,
                 web_pages: int = 120, offline_hops: tuple[int, ...] = (1, 2)) -> Dataset:
    """Load a benchmark by name (see ``BENCHMARKS``), by path, or ``offline-web`` (generated, answers known)."""
    name, path, info = resolve(name_or_path)
    if name == OFFLINE_WEB:
        from fathom.evaluate.offline_bench import offline_benchmark

        examples = offline_benchmark(n=max(offline_n, (limit or 0)), web_seed=web_seed, n_pages=web_pages,
                                     hops=tuple(offline_hops))
        digest = hashlib.sha256(json.dumps([e.model_dump() for e in examples]).encode()).hexdigest()
        return Dataset(name=name, path=None, sha256=digest, total=len(examples), grader="auto", judge_grader="judge",
                       category="offline",
                       examples=select(examples, limit=limit, sample=sample, seed=seed, shard=shard))
    assert path is not None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc})") from None
    examples = parse_jsonl(text, dataset=name, source=str(path))
    if not examples:
        raise DatasetError(f"{path}: no records")
    if info and info.expected_count and len(examples) != info.expected_count:
        log.info("%s: %d records (reference release has %d)", path, len(examples), info.expected_count)
    return Dataset(
        name=name, path=str(path), sha256=hashlib.sha256(data).hexdigest(), total=len(examples),
        examples=select(examples, limit=limit, sample=sample, seed=seed, shard=shard),
        grader=info.grader if info else "auto", judge_grader=info.judge_grader if info else "judge",
        category=info.category if info else "deepsearch",
    )
