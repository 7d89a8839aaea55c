"""In-process transformers backend with the same interface as the HTTP clients (`local:<model>` roles)."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import lru_cache
from pathlib import Path

from fathom.llm.base import ChatMessage, Completion, LLMClient


@lru_cache(maxsize=4)
def load_model(path: str):
    """Load a model + tokenizer once per process (tests and servers share it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, tok


class LocalClient(LLMClient):
    """Generation runs in a worker thread, one request at a time per model (CPU-bound anyway)."""

    _locks: dict[str, threading.Lock] = {}

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = str(path)
        self.model = name or f"local:{Path(path).name}"
        self._model, self._tok = load_model(self.path)
        self._lock = self._locks.setdefault(self.path, threading.Lock())

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

        class _Cancelled(StoppingCriteria):
            """Ends generation at the next token once the awaiting task was cancelled (e.g. a timeout)."""

            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), bool(cancel and cancel.is_set()), dtype=torch.bool)

        t0 = time.perf_counter()
        ids = self._tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
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
        finish = "length" if len(new) >= max_new else "stop"
        if stop:  # OpenAI semantics: the stop string is not part of the returned text
            cut = [text.find(s) for s in stop if s in text]
            if cut:
                text, finish = text[: min(cut)], "stop"
        return Completion(text=text, prompt_tokens=int(ids.shape[1]), completion_tokens=int(len(new)),
                          finish_reason=finish, latency_s=time.perf_counter() - t0)

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, prompt, max_tokens, temperature, top_p, stop, seed,
                                           repetition_penalty, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker thread stops at its next token instead of running on
            raise

    def render_chat(self, messages: list[ChatMessage]) -> str:
        return self._tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    async def chat(self, messages, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None) -> Completion:
        return await self.complete(self.render_chat(messages), max_tokens=max_tokens, temperature=temperature,
                                   top_p=top_p, stop=stop, seed=seed)
