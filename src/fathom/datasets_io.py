"""Dataset outputs shared by the data stages: a resumable append-only work log and the final dataset folder.

A stage writes, under its output folder ``DIR``::

    DIR/hf/                 Hugging Face `datasets` folder (`datasets.load_from_disk`), schema declared up front
    DIR/data/*.parquet      the same rows as Parquet (`load_dataset("parquet", data_files=...)`)
    DIR/<name>.jsonl        the same rows as JSONL (`load_dataset("json", data_files=...)`)
    DIR/README.md           dataset card with the funnel counts
    DIR/work/               the append-only logs that make the stage resumable

The final folder is written atomically (built beside the target, then renamed), so a crash while finalising leaves
the previous version or nothing, never a half-written dataset. An empty dataset (every candidate rejected) is still a
valid folder with the declared schema; note that `load_dataset("json")` refuses an *empty* JSONL file, which the
card states when it happens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fathom.storage import atomic_path, atomic_write_text, replace_dir

log = logging.getLogger(__name__)


class AppendLog:
    """Append-only JSONL log. Every record is one line, flushed and fsynced before `append` returns, so a crash
    loses at most the records being written. A torn last line (crash mid-write) is ignored on read and
    truncated away before the next append."""

    def __init__(self, path: Path, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._repaired = False

    def _repair(self) -> None:
        """Drop a torn trailing line left by a crash (bytes after the last newline)."""
        if self._repaired or not self.path.exists():
            self._repaired = True
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                            self.path, len(data) - cut)
                fh.truncate(cut)
        self._repaired = True

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._repair()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    break  # torn last line: not a record
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s:%d: skipping an unreadable record", self.path, n)

    def records(self) -> list[dict[str, Any]]:
        return list(self)

    def latest_by_id(self, key: str = "id") -> dict[str, dict[str, Any]]:
        """The last record of each id (later records supersede earlier ones)."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self:
            if key in rec:
                out[str(rec[key])] = rec
        return out


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write rows atomically (temp file + rename). Returns the row count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return AppendLog(path, fsync=False).records()


def _replace_dir(tmp: Path, target: Path) -> None:
    replace_dir(tmp, target)


def build_dataset(rows: list[dict[str, Any]], features):
    """A `datasets.Dataset` with the declared schema (also for zero rows)."""
    import datasets

    if rows:
        return datasets.Dataset.from_list(rows, features=features)
    return datasets.Dataset.from_dict({k: [] for k in features}, features=features)


def save_dataset(rows: list[dict[str, Any]], features, out_dir: Path, *, name: str, split: str = "train") -> dict:
    """Write `rows` as `out_dir/hf` (save_to_disk), `out_dir/data/{split}-00000-of-00001.parquet` and
    `out_dir/{name}.jsonl`; every part is replaced atomically. Returns the written paths."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        return _save_dataset(rows, features, out_dir, name=name, split=split)
    finally:
        if not was_disabled:
            enable_progress_bars()


def _save_dataset(rows, features, out_dir: Path, *, name: str, split: str) -> dict:
    ds = build_dataset(rows, features)
    hf_tmp = out_dir / ".hf.tmp"
    shutil.rmtree(hf_tmp, ignore_errors=True)
    ds.save_to_disk(str(hf_tmp), num_shards=1)  # num_shards=1: an empty dataset with 0 shards does not reload
    _replace_dir(hf_tmp, out_dir / "hf")
    pq = out_dir / "data" / f"{split}-00000-of-00001.parquet"
    pq.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(pq) as pq_tmp:
        ds.to_parquet(str(pq_tmp))
    jsonl = out_dir / f"{name}.jsonl"
    write_jsonl(rows, jsonl)
    return {"hf": out_dir / "hf", "parquet": pq, "jsonl": jsonl, "rows": len(rows)}


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def funnel_table(funnel: list[tuple[str, int]]) -> str:
    first = funnel[0][1] if funnel else 0
    lines = ["| stage | items | % of first |", "|---|---:|---:|"]
    for stage, count in funnel:
        pct = f"{100.0 * count / first:.1f}" if first else "-"
        lines.append(f"| {stage} | {count} | {pct} |")
    return "\n".join(lines)


def counts_table(counts: dict[str, int], header: tuple[str, str] = ("reason", "items")) -> str:
    if not counts:
        return "_none_"
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def dataset_card(*, title: str, summary: str, funnel: list[tuple[str, int]], rejections: dict[str, int],
                 usage: dict[str, dict[str, int]], config: dict[str, Any], files: dict[str, str],
                 notes: list[str] | None = None, tags: list[str] | None = None) -> str:
    """A Markdown dataset card (YAML front matter + funnel, rejection reasons, per-role usage, config)."""
    kept = funnel[-1][1] if funnel else 0
    front = ["---", "license: apache-2.0", "language: [en]", f"size_categories: [{_size_category(kept)}]"]
    if tags:
        front.append(f"tags: [{', '.join(tags)}]")
    front += ["configs:", "- config_name: default", "  data_files:", "  - split: train",
              "    path: data/train-*.parquet", "---", ""]
    usage_lines = ["| role | calls | prompt tokens | completion tokens | tool calls | errors |",
                   "|---|---:|---:|---:|---:|---:|"]
    for role, u in sorted(usage.items()):
        usage_lines.append(f"| {role} | {u.get('calls', 0)} | {u.get('prompt_tokens', 0)} | "
                           f"{u.get('completion_tokens', 0)} | {u.get('tool_calls', 0)} | {u.get('errors', 0)} |")
    parts = [
        "\n".join(front),
        f"# {title}\n\n{summary}\n",
        "## Funnel\n\n" + funnel_table(funnel) + "\n",
        "## Rejections\n\n" + counts_table(rejections) + "\n",
        "## Usage per role\n\n" + "\n".join(usage_lines) + "\n",
        "## Files\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in files.items()) + "\n",
    ]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    parts.append("## Configuration\n\n```json\n" + json.dumps(config, indent=2, default=str) + "\n```\n")
    return "\n".join(parts)


def _size_category(n: int) -> str:
    if n < 1000:
        return "n<1K"
    if n < 10_000:
        return "1K<n<10K"
    if n < 100_000:
        return "10K<n<100K"
    return "100K<n<1M"


class FunnelResult(BaseModel):
    """What a data stage reports: the funnel, rejection reasons and token/tool usage per role."""

    out_dir: Path
    n_planned: int
    n_done: int
    funnel: dict[str, int]
    rejections: dict[str, int]
    usage: dict[str, dict[str, int]]
    complete: bool
    stopped_by: str | None = None


def load_config_file(path: Path | None) -> dict:
    """A stage config from YAML or JSON (a mapping); {} when no file is given."""
    if path is None:
        return {}
    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping")
    return data


def print_funnel(console, title: str, verb: str, n_out: int, res: FunnelResult, out: Path,
                 upload: str | None = None) -> None:
    """The CLI summary of a data stage; uploads the output folder when asked."""
    console.print(f"[green]{title}[/green] {verb} {n_out} of {res.n_done} processed ({res.n_planned} planned) -> {out}")
    console.print("funnel: " + " -> ".join(f"{k} {v}" for k, v in res.funnel.items()))
    if res.rejections:
        console.print("rejections: " + ", ".join(f"{k} {v}" for k, v in sorted(res.rejections.items())))
    if not res.complete:
        console.print(f"[yellow]incomplete[/yellow] ({res.stopped_by or 'budget'}): rerun to resume")
    if upload:
        from fathom import storage

        storage.upload(out, upload)
        console.print(f"uploaded to {upload}")
