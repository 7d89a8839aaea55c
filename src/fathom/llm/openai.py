"""Async client for OpenAI-compatible endpoints (vLLM, SGLang, KServe, transformers serve, hosted APIs)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx

from fathom.config import RoleConfig
from fathom.errors import LLMError
from fathom.llm.base import ChatMessage, Completion, LLMClient

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIClient(LLMClient):
    """`/v1/completions` with raw prompt text and `/v1/chat/completions`, with timeouts, retries and a
    concurrency limit. Keys come from the role's environment variable and are never logged."""

    def __init__(self, role: RoleConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        if role.is_local:
            raise ValueError("OpenAIClient needs a remote role")
        self.role = role
        self.model = role.model
        self._no_repetition_penalty = False  # set when the server refuses the extension (see complete)
        key = role.api_key()  # raises ConfigError naming the variable when missing
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=role.base_url or "",
            headers=headers,
            timeout=httpx.Timeout(role.timeout_s, connect=min(10.0, role.timeout_s)),
            limits=httpx.Limits(max_connections=role.concurrency * 2, max_keepalive_connections=role.concurrency),
            transport=transport,
        )
        self._sem = asyncio.Semaphore(role.concurrency)
        self._tokenizer = None
        if role.tokenizer:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(role.tokenizer)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=False).input_ids)
        return max(1, len(text) // 4) if text else 0

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                async with self._sem:
                    resp = await self._http.post(path, json=body)
                if resp.status_code == 200:
                    return resp.json()
                retryable = resp.status_code in RETRYABLE_STATUS
                err = LLMError(
                    f"{self.model}: HTTP {resp.status_code} from {path}: {resp.text[:300]}",
                    retryable=retryable,
                    status=resp.status_code,
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                err = LLMError(f"{self.model}: {type(exc).__name__} on {path}: {exc}", retryable=True)
            except ValueError as exc:  # bad JSON body
                err = LLMError(f"{self.model}: invalid JSON from {path}: {exc}", retryable=True)
            if not err.retryable or attempt >= self.role.max_retries:
                raise err
            delay = min(8.0, 0.25 * 2**attempt) * (1 + 0.25 * random.random())
            log.warning("%s (retry %d in %.2fs)", err, attempt + 1, delay)
            await asyncio.sleep(delay)
            attempt += 1

    @staticmethod
    def _sampling(max_tokens, temperature, top_p, stop, seed) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": int(max_tokens), "temperature": float(temperature), "top_p": top_p}
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        return body

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        body = {"model": self.model, "prompt": prompt, **self._sampling(max_tokens, temperature, top_p, stop, seed)}
        if repetition_penalty is not None and not self._no_repetition_penalty:
            body["repetition_penalty"] = repetition_penalty  # vLLM / SGLang extension
        t0 = time.perf_counter()
        try:
            data = await self._post("/completions", body)
        except LLMError as exc:
            # servers that validate strictly (`transformers serve`) refuse the extension with a 4xx naming it:
            # drop it for this endpoint from now on, say so once, and send the request again
            if "repetition_penalty" not in body or exc.status not in (400, 422) or "repetition_penalty" not in str(exc):
                raise
            self._no_repetition_penalty = True
            log.warning("%s: the server refuses `repetition_penalty`; sending requests without it", self.model)
            body.pop("repetition_penalty")
            data = await self._post("/completions", body)
        try:
            choice = data["choices"][0]
            text = choice.get("text") or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.model}: malformed completion response: {str(data)[:300]}") from exc
        return self._completion(data, choice, text, prompt, t0)

    async def chat(self, messages: list[ChatMessage], *, max_tokens, temperature=0.0, top_p=1.0, stop=None,
                   seed=None) -> Completion:
        body = {"model": self.model, "messages": list(messages),
                **self._sampling(max_tokens, temperature, top_p, stop, seed)}
        t0 = time.perf_counter()
        data = await self._post("/chat/completions", body)
        try:
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.model}: malformed chat response: {str(data)[:300]}") from exc
        return self._completion(data, choice, text, "".join(m["content"] for m in messages), t0)

    def _completion(self, data, choice, text, prompt, t0) -> Completion:
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(prompt)),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
            finish_reason=choice.get("finish_reason") or "stop",
            latency_s=time.perf_counter() - t0,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
