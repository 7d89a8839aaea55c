"""In-process transformers backend with the same interface as the HTTP clients (`local:<model>` roles).

Concurrent ``complete()`` calls for one model are micro-batched: a worker thread per model collects the requests
that arrive within ``batch_window_s`` of the first one, or while the previous batch was generating (up to
``max_batch``), and generates each group of compatible requests in ONE left-padded ``model.generate`` call. On CPU
a batch of 8–16 small-model requests costs little more than one (``benchmarks/bench_local_batching.py``); 20
questions of an evaluation in one batch took 2/3 of the time of 16 in flight with a tail of 4.

Per request: its own ``max_tokens``, stop strings, cancellation (a row stops at its next token) and EOS end that row
only (:class:`_RowStops`); the repetition penalty ignores the row's padding (:class:`_PaddedRepetitionPenalty`). A
client made with ``stop_loops=R`` also ends a row whose last tokens repeat one block R times in a row
(:func:`looping_period`: a small model that loops would otherwise fill its whole budget; finish reason ``length``, the
row was cut).
Groups: greedy requests batch together (per repetition penalty); unseeded sampling requests batch together (per
temperature, top-p, penalty); a seeded sampling request runs alone so its seed reproduces the unbatched result.
Greedy results equal unbatched generation in fp32, the default (``tests/llm``; in bf16 they may not: :func:`local_dtype`).
``max_batch=1`` is the old one-at-a-time path.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from fathom.llm.base import ChatMessage, Completion, LLMClient

#: Precisions of in-process inference (:func:`local_dtype`); the one list AgentSettings.local_dtype validates against.
LocalDtype = Literal["fp32", "bf16", "auto"]
DTYPES: tuple[str, ...] = get_args(LocalDtype)


def local_dtype(requested: str = "fp32") -> str:
    """The precision of in-process inference, ``bf16`` or ``fp32``; ``auto`` is bf16 where this CPU computes bf16
    natively (AMX or AVX512-BF16, as torch's oneDNN reports it), else fp32 (emulated bf16 would be slower).

    fp32 (the default): greedy results do not depend on how requests are batched (``tests/llm``). bf16: the precision
    the models are released in and vLLM serves; on a 2-core Xeon with AMX the embedded search policy's 20 held-out
    questions took 68 s instead of 105 s (7 correct in both, 19 of 20 answers the same) and
    ``benchmarks/bench_local_batching.py --dtypes fp32,bf16`` decodes 1.31x faster, but a row's greedy tokens may
    change with the batch it decodes in."""
    if requested not in DTYPES:
        raise ValueError(f"local dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if requested != "auto":
        return requested
    import torch

    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return "bf16" if native is not None and native() else "fp32"


@lru_cache(maxsize=4)
def load_model(path: str, dtype: str = "fp32"):
    """Load a model + tokenizer once per process and dtype (tests and servers share it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype={"bf16": torch.bfloat16, "fp32": torch.float32}[dtype])
    model.eval()
    return model, tok


LOOP_MIN_PERIOD, LOOP_MAX_PERIOD = 8, 128  # block lengths (tokens) that count as a loop


def looping_period(ids: list[int], repeats: int, min_period: int = LOOP_MIN_PERIOD,
                   max_period: int = LOOP_MAX_PERIOD) -> int | None:
    """The length p of a block of ``min_period``–``max_period`` tokens that the end of ``ids`` repeats ``repeats``
    times in a row (``...ABCABCABC``: 3 repeats of a 3-token block), or None. The shortest such block is reported."""
    n = len(ids)
    for p in range(min_period, min(max_period, n // repeats) + 1):
        block = ids[n - p:]
        if all(ids[n - (k + 1) * p:n - k * p] == block for k in range(1, repeats)):
            return p
    return None


def _ends_in_loop(row, width: int, repeats: int | None) -> bool:
    """Whether a generating row (1-D tensor: the prompt, then new tokens from index `width`) ends in a loop."""
    if not repeats or row.shape[0] - width < LOOP_MIN_PERIOD * repeats:
        return False
    return looping_period(row[max(width, row.shape[0] - LOOP_MAX_PERIOD * repeats):].tolist(), repeats) is not None


@dataclass
class _Request:
    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    repetition_penalty: float | None
    cancel: threading.Event
    stop_loops: int | None = None  # end the row once a block repeats this many times (looping_period)
    future: Future = field(default_factory=Future)
    t0: float = field(default_factory=time.perf_counter)
    ids: list[int] = field(default_factory=list)  # filled in by the worker (tokenising off the event loop)
    max_new: int = 1

    def group_key(self) -> tuple:
        """Requests with equal keys are generated together."""
        if not self.temperature or self.temperature <= 0:
            return ("greedy", self.repetition_penalty)
        if self.seed is not None:  # a seeded sample must own the generator state
            return ("seeded", id(self))
        return ("sample", float(self.temperature), float(self.top_p), self.repetition_penalty)


class _RowStops:
    """Per-row stopping for a batched ``generate``: a row ends at EOS, at its own ``max_new``, at its first stop
    string, once its caller cancelled, or (``stop_loops``) once it loops; ``lengths[i]`` records how many new tokens
    row i produced, ``looped[i]`` whether it was ended for looping."""

    def __init__(self, tok, width: int, reqs: list[_Request], eos: set[int]):
        self.tok, self.width, self.reqs, self.eos = tok, width, reqs, eos
        self.lengths: list[int | None] = [None] * len(reqs)
        self.windows = [max((len(s) for s in r.stop), default=0) + 2 for r in reqs]
        self.looped = [False] * len(reqs)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        t = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        for i, r in enumerate(self.reqs):
            if self.lengths[i] is not None:
                continue
            if last[i] in self.eos or t >= r.max_new or r.cancel.is_set():
                self.lengths[i] = t
            elif r.stop:
                tail = self.tok.decode(input_ids[i, max(self.width, input_ids.shape[1] - self.windows[i]):].tolist(),
                                       skip_special_tokens=False)
                if any(s in tail for s in r.stop):
                    self.lengths[i] = t
            if self.lengths[i] is None and _ends_in_loop(input_ids[i], self.width, r.stop_loops):
                self.lengths[i], self.looped[i] = t, True
        return torch.tensor([n is not None for n in self.lengths], dtype=torch.bool, device=input_ids.device)


def _stopping_criterion(rows: _RowStops):
    from transformers import StoppingCriteria

    class _Crit(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return rows(input_ids, scores)

    return _Crit()


def _padded_repetition_penalty(penalty: float, pads: list[int], first: list[int]):
    """HF's repetition penalty over each row's own tokens: left-padding positions are replaced by a token the row
    already holds (gather/scatter of a duplicate is a no-op), so padded rows are penalised exactly as unpadded."""
    from transformers import LogitsProcessor, RepetitionPenaltyLogitsProcessor

    inner = RepetitionPenaltyLogitsProcessor(float(penalty))

    class _PaddedRepetitionPenalty(LogitsProcessor):
        def __call__(self, input_ids, scores):
            ids = input_ids.clone()
            for i, (n, tok) in enumerate(zip(pads, first)):
                if n:
                    ids[i, :n] = tok
            return inner(ids, scores)

    return _PaddedRepetitionPenalty()


class _Batcher:
    """One worker thread per (model, batch settings): collects requests and generates them in groups."""

    def __init__(self, model, tok, lock: threading.Lock, max_batch: int, window_s: float, context_length: int):
        self.model, self.tok, self.lock, self.context_length = model, tok, lock, context_length
        self.max_batch, self.window_s = max_batch, window_s
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.batch_sizes: list[int] = []  # observability (tests, benchmarks)
        from fathom.llm.kvcache import PrefixCacheGenerator

        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        # the weights of a local model never change while it serves: caches stay valid (agent transcripts grow
        # turn by turn and share the system prompt, so most of a prefill is reused)
        # a cached transcript per row in flight and as many spare (the shared system prompt among them), at most 16
        # spare: batches up to 16 keep their caches as before; a batch of 32 would otherwise keep 64 transcripts
        # (~90 MB each at 2k tokens), most of them of finished questions
        self.cache = PrefixCacheGenerator(model, pad_id=pad_id,
                                          max_entries=max(16, min(2 * max_batch, max_batch + 16)))
        self._thread = threading.Thread(target=self._run, name="local-llm-batcher", daemon=True)
        self._thread.start()

    def submit(self, req: _Request) -> Future:
        self.queue.put(req)
        return req.future

    def _collect(self) -> list[_Request]:
        batch = [self.queue.get()]
        start = time.perf_counter()
        deadline = start + self.window_s
        while len(batch) < self.max_batch:
            try:  # everything already queued (it arrived while the last batch generated), then a short window
                batch.append(self.queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
            # a burst keeps the window open (each arrival extends it), up to 10 windows in all
            deadline = min(start + 10 * self.window_s, time.perf_counter() + self.window_s)
        live = []
        for r in batch:
            if not r.future.set_running_or_notify_cancel() or r.cancel.is_set():
                continue  # its caller is gone
            try:
                r.ids = list(self.tok(r.prompt, add_special_tokens=False).input_ids)
            except Exception as exc:  # noqa: BLE001 - the caller gets the error, the worker lives on
                r.future.set_exception(exc)
                continue
            r.max_new = max(1, min(int(r.max_tokens), self.context_length - len(r.ids)))
            live.append(r)
        return live

    def _run(self) -> None:
        while True:
            batch = self._collect()
            groups: dict[tuple, list[_Request]] = {}
            for r in batch:
                groups.setdefault(r.group_key(), []).append(r)
            for reqs in groups.values():
                try:
                    outs = self._generate(reqs)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error, the worker lives on
                    for r in reqs:
                        r.future.set_exception(exc)
                    continue
                for r, out in zip(reqs, outs):
                    r.future.set_result(out)

    def _generate(self, reqs: list[_Request]) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        tok, model = self.tok, self.model
        eos_cfg = model.generation_config.eos_token_id
        eos = set(eos_cfg if isinstance(eos_cfg, list) else [] if eos_cfg is None else [eos_cfg])
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(r.ids) for r in reqs)  # the cache generator left-pads the rows to this width
        head = reqs[0]
        kwargs: dict[str, Any] = {"max_new_tokens": max(r.max_new for r in reqs), "pad_token_id": pad_id}
        if head.temperature and head.temperature > 0:
            kwargs.update(do_sample=True, temperature=float(head.temperature), top_p=float(head.top_p))
        else:
            kwargs.update(do_sample=False)
        rows = _RowStops(tok, width, reqs, eos)
        kwargs["stopping_criteria"] = StoppingCriteriaList([_stopping_criterion(rows)])
        if head.repetition_penalty:
            kwargs["logits_processor"] = LogitsProcessorList([_padded_repetition_penalty(
                head.repetition_penalty, [width - len(r.ids) for r in reqs], [r.ids[0] if r.ids else pad_id
                                                                             for r in reqs])])
        with self.lock, torch.no_grad():
            if head.seed is not None and kwargs["do_sample"]:
                torch.manual_seed(head.seed)
            max_new = kwargs.pop("max_new_tokens")
            new = self.cache.generate([r.ids for r in reqs], max_new, **kwargs)
        self.batch_sizes.append(len(reqs))
        done = time.perf_counter()
        results = []
        for i, r in enumerate(reqs):
            n = rows.lengths[i] if rows.lengths[i] is not None else len(new[i])
            results.append(_finish(tok, new[i][:n], r, len(r.ids), done - r.t0, rows.looped[i]))
        return results


def _finish(tok, new: list[int], req: _Request, prompt_tokens: int, latency: float,
            looped: bool = False) -> Completion:
    text = tok.decode(new, skip_special_tokens=True)
    finish = "length" if looped or len(new) >= req.max_new else "stop"
    if req.stop:  # OpenAI semantics: the stop string is not part of the returned text
        cut = [text.find(s) for s in req.stop if s in text]
        if cut:
            text, finish = text[: min(cut)], "stop"
    return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(new), finish_reason=finish,
                      latency_s=latency)


class LocalClient(LLMClient):
    """Generation runs in a worker thread per model. Concurrent requests are micro-batched (module doc);
    ``max_batch=1`` generates one request at a time. ``dtype``: fp32, bf16 or auto (:func:`local_dtype`)."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _batchers: ClassVar[dict[tuple[str, str, int, float], _Batcher]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | Path, name: str | None = None, *, max_batch: int = 32,
                 batch_window_s: float = 0.005, stop_loops: int | None = None, dtype: str = "fp32"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if stop_loops is not None and stop_loops < 2:
            raise ValueError(f"stop_loops must be >= 2 repeats, got {stop_loops}")
        self.path, self.stop_loops, self.dtype = str(path), stop_loops, local_dtype(dtype)
        self.model = name or f"local:{Path(path).name}"
        self._model, self._tok = load_model(self.path, self.dtype)
        self.max_batch, self.batch_window_s = max_batch, batch_window_s
        with self._registry_lock:
            self._lock = self._locks.setdefault(self.path, threading.Lock())
            self._batcher: _Batcher | None = None
            if max_batch > 1:
                key = (self.path, self.dtype, max_batch, float(batch_window_s))
                if key not in self._batchers:
                    self._batchers[key] = _Batcher(self._model, self._tok, self._lock, max_batch, batch_window_s,
                                                   self.context_length or 8192)
                self._batcher = self._batchers[key]

    @property
    def tokenizer(self):
        return self._tok

    @property
    def context_length(self) -> int | None:
        return getattr(self._model.config, "max_position_embeddings", None)

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False).input_ids)

    def _generate(self, prompt: str, max_tokens: int, temperature: float, top_p: float, stop: list[str] | None,
                  seed: int | None, repetition_penalty: float | None,
                  cancel: threading.Event | None = None) -> Completion:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        looped = []
        repeats, width = self.stop_loops, 0

        class _Cancelled(StoppingCriteria):
            """Ends generation at the next token once the awaiting task was cancelled (e.g. a timeout) or, with
            ``stop_loops``, once the output loops."""

            def __call__(self, input_ids, scores, **kwargs):
                if _ends_in_loop(input_ids[0], width, repeats):
                    looped.append(True)
                    return torch.ones((input_ids.shape[0],), dtype=torch.bool)
                return torch.full((input_ids.shape[0],), bool(cancel and cancel.is_set()), dtype=torch.bool)

        t0 = time.perf_counter()
        ids = self._tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        width = ids.shape[1]
        ctx = self.context_length or 8192
        max_new = max(1, min(int(max_tokens), ctx - ids.shape[1]))
        kwargs: dict = {"max_new_tokens": max_new, "pad_token_id": self._tok.pad_token_id or self._tok.eos_token_id}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        else:
            kwargs.update(do_sample=False)
        if repetition_penalty:
            kwargs["repetition_penalty"] = float(repetition_penalty)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self._tok)
        kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled()])
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self._model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, ids.shape[1]:]
        text = self._tok.decode(new, skip_special_tokens=True)
        finish = "length" if looped or len(new) >= max_new else "stop"
        if stop:  # OpenAI semantics: the stop string is not part of the returned text
            cut = [text.find(s) for s in stop if s in text]
            if cut:
                text, finish = text[: min(cut)], "stop"
        return Completion(text=text, prompt_tokens=int(ids.shape[1]), completion_tokens=len(new),
                          finish_reason=finish, latency_s=time.perf_counter() - t0)

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        cancel = threading.Event()
        if self._batcher is None:
            try:
                return await asyncio.to_thread(self._generate, prompt, max_tokens, temperature, top_p, stop, seed,
                                               repetition_penalty, cancel)
            except asyncio.CancelledError:
                cancel.set()  # the worker thread stops at its next token instead of running on
                raise
        req = _Request(prompt=prompt, max_tokens=int(max_tokens), temperature=float(temperature or 0.0),
                       top_p=float(top_p), stop=list(stop or []), seed=seed,
                       repetition_penalty=float(repetition_penalty) if repetition_penalty else None, cancel=cancel,
                       stop_loops=self.stop_loops)
        try:
            return await asyncio.wrap_future(self._batcher.submit(req))
        except asyncio.CancelledError:
            cancel.set()  # queued: dropped; generating: its row stops at the next token
            raise

    def render_chat(self, messages: list[ChatMessage]) -> str:
        return self._tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    async def chat(self, messages, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None) -> Completion:
        return await self.complete(self.render_chat(messages), max_tokens=max_tokens, temperature=temperature,
                                   top_p=top_p, stop=stop, seed=seed)
