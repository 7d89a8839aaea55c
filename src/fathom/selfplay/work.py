"""The resumable worker pool shared by the data stages: bounded concurrency, budget caps, progress, error policy.

Each finished item's record is appended (fsynced) to the items log before the next item is taken, so a crash loses
at most the items in flight. Infrastructure failures (endpoint/tool outages after their retries) are logged to the
errors log and not recorded as finished, so the next run retries them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from fathom.datasets_io import AppendLog
from fathom.errors import FathomError, LLMError, ToolError
from fathom.selfplay.accounting import Usage

log = logging.getLogger(__name__)

INFRA_ERRORS = (LLMError, ToolError, httpx.HTTPError, asyncio.TimeoutError, ConnectionError)


class StageWork:
    """The append-only logs and usage a data stage keeps under ``out/work`` (items, trajectories, errors, runs)."""

    def __init__(self, out: Path):
        self.out = out
        self.items = AppendLog(out / "work" / "items.jsonl")
        self.trajs = AppendLog(out / "work" / "trajectories.jsonl")
        self.errors = AppendLog(out / "work" / "errors.jsonl")
        self.runs = AppendLog(out / "work" / "runs.jsonl")
        self.usage = Usage()


async def run_pool(pending: list[Any], process: Callable[[Any], Awaitable[dict]], *, label: str, n_total: int,
                   n_done: int, max_in_flight: int, usage: Usage, max_tokens: int | None, max_errors: int,
                   items_log: AppendLog, errors_log: AppendLog, on_record: Callable[[dict], None] | None = None,
                   show_progress: bool = True, status_key: str = "status") -> str | None:
    """Process `pending` (objects with `.id`); returns the budget that stopped the run early, or None."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    queue: asyncio.Queue = asyncio.Queue()
    for p in pending:
        queue.put_nowait(p)
    counts: Counter[str] = Counter()
    state: dict[str, Any] = {"stop": None, "errors": 0}
    progress = Progress(TextColumn(f"[bold]{label}[/bold] " + "{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), disable=not show_progress)
    task = progress.add_task("", total=n_total, completed=n_done)

    def describe() -> str:
        tools = sum(r.get("tool_calls", 0) for r in usage.roles.values())
        shown = " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        return f"{shown} errors {state['errors']} tokens {usage.total_tokens} tool calls {tools}".strip()

    async def worker() -> None:
        while state["stop"] is None:
            if max_tokens is not None and usage.total_tokens >= max_tokens:
                state["stop"] = "max_tokens"
                return
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                rec = await process(item)
            except INFRA_ERRORS as exc:
                state["errors"] += 1
                errors_log.append({"id": item.id, "error": f"{type(exc).__name__}: {exc}",
                                   "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
                log.warning("%s: item %s failed (retried by the next run): %s", label, item.id, exc)
                if state["errors"] >= max_errors:
                    state["stop"] = "max_errors"
                continue
            items_log.append(rec)
            counts[str(rec.get(status_key))] += 1
            progress.update(task, advance=1, description=describe())
            if on_record is not None:
                on_record(rec)

    with progress:
        progress.update(task, description=describe())
        workers = [asyncio.create_task(worker()) for _ in range(min(max_in_flight, max(1, len(pending))))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    if state["stop"] == "max_errors":
        raise FathomError(f"{label} stopped after {state['errors']} failed items (see {errors_log.path}); "
                          "fix the endpoint and rerun to resume")
    return state["stop"]
