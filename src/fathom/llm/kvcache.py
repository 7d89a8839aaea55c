"""Batched generation that reuses key/value caches across calls (multi-turn agents on CPU).

An agent's next turn re-sends its whole transcript: the system prompt every run shares, the question, and the
previous turns. Re-encoding it (the prefill) is what costs most on a CPU: the decode of a batch is cheap, the
prefill of 8 transcripts of 1,500 tokens is not. :class:`PrefixCacheGenerator` keeps the key/value cache of
recent contexts (an LRU keyed by token ids); a new context that extends a cached one only encodes its new tokens
(the environment's reply), row by row, then all rows decode together:

    rows -> per row: longest cached prefix -> encode the rest (up to the last token) -> left-pad the caches to one
    length -> ``model.generate`` continues every row from its cache -> store each row's new cache

Left padding of a cache is exact: padded positions are masked, and rotary position ids follow the attention mask
(``cumsum - 1``), so every row sees the positions it would have alone. Greedy outputs equal plain generation (a
test checks it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class PrefixCacheGenerator:
    """Generation over token-id contexts with an LRU of key/value caches (one model; not thread-safe by itself —
    callers serialise, as the local batcher and the rollout engine do)."""

    def __init__(self, model, *, pad_id: int, max_entries: int = 32, min_reuse: int = 64):
        self.model = model
        self.pad_id = pad_id
        self.max_entries = max_entries
        self.min_reuse = min_reuse
        self._lru: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"reused_tokens": 0, "encoded_tokens": 0, "calls": 0}

    # -- cache bookkeeping ------------------------------------------------------------------------------------
    def _lookup(self, ids: list[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """The cached context sharing the longest common prefix with ``ids[:-1]`` (at least ``min_reuse``
        tokens): (that length, per-layer (k, v) cropped to it, shape (1, h, n, d)). A transcript's own previous
        turn matches in full; another question's transcript still shares the system prompt."""
        import numpy as np

        limit = len(ids) - 1
        query = np.asarray(ids[:limit])
        best_n, best_key = 0, None
        for key in self._lru:
            n = min(len(key), limit)
            if n <= best_n:
                continue
            diff = np.flatnonzero(np.asarray(key[:n]) != query[:n])
            common = int(diff[0]) if diff.size else n
            if common > best_n:
                best_n, best_key = common, key
        if best_key is None or best_n < self.min_reuse:
            return 0, None
        self._lru.move_to_end(best_key)
        return best_n, [(k[:, :, :best_n], v[:, :, :best_n]) for k, v in self._lru[best_key]]

    def _store(self, ids: Sequence[int], kv: list[tuple[Any, Any]]) -> None:
        key = tuple(ids)
        if len(key) < self.min_reuse:
            return
        self._lru[key] = kv
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_entries:
            self._lru.popitem(last=False)

    def clear(self) -> None:
        self._lru.clear()

    # -- generation -------------------------------------------------------------------------------------------
    def _encode(self, ids: list[int]) -> list[tuple[Any, Any]]:
        """Per-layer (k, v) covering ``ids[:-1]`` (the last token is fed by ``generate``)."""
        import torch
        from transformers import DynamicCache

        n, kv = self._lookup(ids)
        cache = DynamicCache()
        if kv is not None:
            for layer, (k, v) in enumerate(kv):
                cache.update(k, v, layer)
        rest = ids[n:-1]
        self.stats["reused_tokens"] += n
        self.stats["encoded_tokens"] += len(rest)
        if rest:
            dev = next(self.model.parameters()).device
            out = self.model(input_ids=torch.tensor([rest], device=dev), past_key_values=cache, use_cache=True,
                             position_ids=torch.arange(n, n + len(rest), device=dev)[None])
            cache = out.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def generate(self, contexts: list[list[int]], max_new_tokens: int, **gen_kwargs) -> list[list[int]]:
        """New token ids for every context (each row as ``generate`` returns it, padding after EOS included)."""
        import torch
        from transformers import DynamicCache

        self.stats["calls"] += 1
        with torch.no_grad():
            per_row = [self._encode(list(c)) for c in contexts]
            width = max(len(c) for c in contexts)
            dev = next(self.model.parameters()).device
            ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long, device=dev)
            att = torch.zeros((len(contexts), width), dtype=torch.long, device=dev)
            for i, c in enumerate(contexts):
                ids[i, width - len(c):] = torch.tensor(c, dtype=torch.long, device=dev)
                att[i, width - len(c):] = 1
            cache = DynamicCache()
            for layer in range(len(per_row[0])):
                ks, vs = [], []
                for i, c in enumerate(contexts):
                    k, v = per_row[i][layer]
                    pad = (width - 1) - k.shape[2]
                    if pad:
                        k = torch.nn.functional.pad(k, (0, 0, pad, 0))
                        v = torch.nn.functional.pad(v, (0, 0, pad, 0))
                    ks.append(k)
                    vs.append(v)
                cache.update(torch.cat(ks), torch.cat(vs), layer)
            out = self.model.generate(input_ids=ids, attention_mask=att, past_key_values=cache,
                                      max_new_tokens=max_new_tokens, return_dict_in_generate=True, use_cache=True,
                                      **gen_kwargs)
            new = out.sequences[:, width:]
            # each row's cache now covers its context + all generated tokens but the last: keep the context part
            # plus the tokens up to the row's end (a row that stopped early has padding after its EOS)
            final = out.past_key_values
            for i, c in enumerate(contexts):
                row_new = new[i].tolist()
                end = len(row_new)
                eos = gen_kwargs.get("eos_token_id")
                eos_set = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
                for j, t in enumerate(row_new):
                    if t in eos_set:
                        end = j + 1
                        break
                keep = len(c) + end - 1  # cached positions of this row (the last generated token is not encoded)
                start = width - len(c)
                kv = [(layer.keys[i:i + 1, :, start:start + keep].clone(),
                       layer.values[i:i + 1, :, start:start + keep].clone()) for layer in final.layers]
                self._store(list(c) + row_new[: end - 1], kv)
        del out, final, cache, per_row
        release_freed_memory()
        return [row.tolist() for row in new]


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``). A decode loop allocates and frees key/value
    tensors of ever-changing sizes, which fragments the heap: with it untrimmed, a CPU RAPO step reached 14 GB of
    RSS and the kernel's OOM killer ended it (with the trim, the same step was at 7.5 GB midway and finished).
    No-op without glibc."""
    import ctypes

    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
