"""The default backend: a transformers causal LM in this process, batched, with prefix KV reuse.

Prompts are tokenised segment by segment (the token ids of a prompt are the concatenation of its
segments' ids), so a prompt that extends another one by a segment shares its token prefix
exactly. The key/value cache of every prompt's prefix (all segments but the last) is kept in a
byte-bounded LRU keyed by the hash of the prefix text; a later prompt that starts with a cached
prefix (the next step of a retrieval episode, in the same or a later batched call) computes only
its new segments and the tail. Prompts with different cached prefix lengths are batched together:
their caches are left-padded to a common length and masked, and their new tokens left-padded too,
with explicit position ids.
"""

from __future__ import annotations

# The thread settings (coral.threads) must be in the environment before torch is imported.
from coral.threads import set_thread_defaults

set_thread_defaults()

import contextlib  # noqa: E402
import hashlib  # noqa: E402
from collections import OrderedDict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coral.errors import CoralError  # noqa: E402
from coral.llm.attention import use_gqa_attention  # noqa: E402
from coral.llm.base import Prompt, Scorer, ScoreResult  # noqa: E402
from coral.llm.labels import DEFAULT_LABELS, readout_from_logits, resolve_label_tokens  # noqa: E402
from coral.llm.precision import precision_tag  # noqa: E402

#: One cached prefix: its keys and values as consecutive chunks along the sequence, each holding
#: every layer in one tensor of shape (layers, 2, kv_heads, length, head_dim) (index 0 keys, 1
#: values). A prefix that extends a stored one (the next step of an episode) shares that one's
#: chunks and adds one for its new tokens, so storing it copies only the new tokens; one tensor for
#: all layers makes putting a prefix into a batch a copy per chunk, not per layer. Per layer and
#: prompt, those copies had been thousands of small operations per call that cost more than the
#: model's matrix products (experiments/notes/speed.md).
PrefixKV = tuple[torch.Tensor, ...]


def prefix_length(kv: PrefixKV) -> int:
    """The number of positions a stored prefix holds."""
    return sum(chunk.shape[3] for chunk in kv)


class PrefixKVStore:
    """An LRU of prefix key/value caches, bounded in bytes.

    :param max_bytes: evict least recently used prefixes beyond this total size.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[PrefixKV, int]] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> PrefixKV | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, kv: PrefixKV) -> None:
        size = sum(chunk.numel() * chunk.element_size() for chunk in kv)  # shared chunks count in each prefix: a bound
        if key in self._entries:
            self.bytes -= self._entries.pop(key)[1]
        if size > self.max_bytes:
            return
        self._entries[key] = (kv, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self.bytes -= old

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


def prefix_keys(segments: Sequence[str]) -> list[str]:
    """``keys[j]`` = hash of the first ``j`` segments (``keys[0]`` is the empty prefix)."""
    h = hashlib.sha256()
    keys = [h.hexdigest()]
    for seg in segments:
        h.update(seg.encode("utf-8"))
        h.update(b"\x00")  # segment boundary: "ab"+"c" and "a"+"bc" tokenise differently
        keys.append(h.hexdigest())
    return keys


@dataclass
class _Job:
    index: int
    past: PrefixKV | None
    past_len: int
    new_ids: list[int]
    stores: list[tuple[str, int]]
    """Prefixes to store: (key, how many of ``new_ids`` from the start belong to it)."""
    user: int = -1
    """The prompt's user and item (what soft tokens are computed from)."""
    item: int = -1


def _stacked_prefixes(
    jobs: list[_Job], p_max: int, room: int, buffer: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The jobs' stored prefixes, (layers, 2, batch, kv heads, ``p_max + room``, head dim): each
    left-padded with zeros to end at ``p_max``; the last ``room`` positions are left for the forward
    pass to fill.

    :param buffer: a flat tensor to write into when it is large enough and of the prefixes' dtype.
        A new tensor of this size (tens to hundreds of MB) is mapped fresh from the OS, and faulting
        its pages in took 3x as long as the copy itself.
    :returns: the stacked prefixes (a view of the buffer) and the buffer, to pass next time.
    """
    reference = next(j.past for j in jobs if j.past is not None)[0]
    n_layers, _, heads, _, dim = reference.shape
    shape = (n_layers, 2, len(jobs), heads, p_max + room, dim)
    size = n_layers * 2 * len(jobs) * heads * (p_max + room) * dim
    if buffer is None or buffer.dtype != reference.dtype or buffer.numel() < size:
        buffer = torch.empty(
            size + size // 2, dtype=reference.dtype
        )  # room to grow: later steps of an episode are longer
    stacked = buffer[:size].view(shape)
    for r, job in enumerate(jobs):
        pad = p_max - job.past_len
        if pad:
            stacked[:, :, r, :, :pad] = 0  # masked, but zeroed: garbage could be NaN, and NaN x 0 is NaN
        for chunk in job.past or ():
            stacked[:, :, r, :, pad : pad + chunk.shape[3]] = chunk
            pad += chunk.shape[3]
    return stacked, buffer


def _prefilled_cache(stacked: torch.Tensor, p_max: int) -> Any:
    """A transformers cache over ``stacked`` (:func:`_stacked_prefixes` with room for the new tokens),
    which the forward pass writes in place after the ``p_max`` stored positions.

    Built as a transformers DynamicCache (:func:`_dynamic_cache`), the prefixes are copied twice
    more in every layer of every call: once when the cache is built from tensors, once when the
    new tokens are concatenated. The keys and values, hence P(Yes), are the same (tested bitwise).
    """
    from transformers.cache_utils import Cache

    layer_class = _prefilled_layer_class()
    return Cache(layers=[layer_class(layer[0], layer[1], p_max) for layer in stacked])


def _dynamic_cache(stacked: torch.Tensor, config: Any) -> Any:
    """``stacked`` (:func:`_stacked_prefixes` without room) as transformers' own DynamicCache (the reference path)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in stacked], config=config)


def _stacked_cache(cache: Any) -> torch.Tensor:
    """A transformers cache's keys and values as one (layers, 2, batch, kv heads, length, head dim) tensor."""
    return torch.stack([torch.stack((layer.keys, layer.values)) for layer in cache.layers])


@lru_cache(maxsize=1)
def _prefilled_layer_class() -> type:
    """The cache layer class of :func:`_prefilled_cache` (built on first use: transformers loads lazily)."""
    from transformers.cache_utils import DynamicLayer

    class PrefilledLayer(DynamicLayer):
        """One layer's preallocated keys/values: ``filled`` positions hold the past; ``update`` writes after them."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
            super().__init__()
            self.keys, self.values, self.filled = keys, values, filled
            self.device, self.is_initialized = keys.device, True

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            end = self.filled + key_states.shape[-2]
            self.keys[..., self.filled : end, :] = key_states
            self.values[..., self.filled : end, :] = value_states
            self.filled = end
            return self.keys[..., :end, :], self.values[..., :end, :]

        def get_seq_length(self) -> int:
            return self.filled

    return PrefilledLayer


def _one_numpy_blas_thread() -> None:
    """Limit numpy's BLAS to one thread in a process that scores with torch.

    torch's threads own the cores while a scorer runs; numpy's BLAS threads (the retrieval
    index's products) kept spinning after each product on the same two cores, and the scorer's
    next copies ran 3-7x slower (experiments/notes/speed.md).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # stays in effect (not used as a context manager)


class HFScorer(Scorer):
    """P(Yes) from a transformers causal LM.

    :param model: a loaded causal LM (e.g. from :func:`coral.llm.model.load_embedded_model`, or a
        peft-merged adapter model).
    :param tokenizer: its tokenizer.
    :param model_id: a stable name of the weights, for the fingerprint.
    :param labels: (positive, negative) label text; each must be a single token.
    :param batch_size: prompts per forward pass.
    :param max_batch_tokens: cap on batch size x padded (cached + new) length per forward pass.
    :param kv_reuse: reuse prefix key/value caches across prompts and calls.
    :param kv_cache_bytes: memory budget of the prefix cache.
    :param head: optional readout head on the last position's final hidden state, mapping
        (batch, hidden) to (batch,) Yes-vs-No logits; replaces the label-token softmax for p
        (the Yes/No mass is still read from the LM head).
    :param fingerprint_extra: identity of anything plugged in (adapter, head), for the fingerprint.
    :param soft_tokens: collaborative-filtering soft tokens added at their placeholders
        (:mod:`coral.llm.soft_tokens`; an aligned scorer trained with them).
    """

    backend = "hf"
    #: Assemble stored prefixes in a preallocated cache that the forward pass fills in place (True),
    #: or as transformers' DynamicCache (False: the reference path, slower, the same P(Yes)).
    prefilled_cache: bool = True
    #: Attend on grouped key/value heads without copying them (:mod:`coral.llm.attention`; the same
    #: P(Yes) as transformers' ``sdpa``). Read when a scorer is built: it switches the model's attention.
    grouped_attention: bool = True

    def __init__(
        self, model: Any, tokenizer: Any, *, model_id: str, labels: tuple[str, str] = DEFAULT_LABELS,
        batch_size: int = 8, max_batch_tokens: int = 16384, kv_reuse: bool = True, kv_cache_bytes: int = 1 << 30,
        head: torch.nn.Module | None = None, fingerprint_extra: str = "", soft_tokens: Any = None,
    ) -> None:
        self.model = model.eval()
        _one_numpy_blas_thread()
        if self.grouped_attention:
            use_gqa_attention(model)
        self.tokenizer = tokenizer
        self.labels = resolve_label_tokens(tokenizer, labels)
        self.batch_size = max(1, int(batch_size))
        self.max_batch_tokens = int(max_batch_tokens)
        self.kv_reuse = kv_reuse
        self.kv_store = PrefixKVStore(kv_cache_bytes)
        self.head = head
        self.soft_tokens = soft_tokens
        #: How the weights compute (float32, bfloat16, int8-a7/a8...): part of the fingerprint, so of
        #: every score-cache key and result row.
        self.precision = precision_tag(model)
        label_text, with_head = self.labels.describe(), "yes" if head is not None else "no"
        self.fingerprint = f"hf|{model_id}|{self.precision}|{label_text}|head={with_head}|{fingerprint_extra}"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad if pad is not None else 0)
        probe = tokenizer("a").input_ids
        bos = tokenizer.bos_token_id
        self._bos = [int(bos)] if bos is not None and probe and probe[0] == bos else []
        self._segment_ids: OrderedDict[str, list[int]] = OrderedDict()
        self._kv_buffer = torch.empty(0)
        self._counters = {"llm_calls": 0, "prompts": 0, "tokens_computed": 0, "tokens_reused": 0, "padded_tokens": 0}
        #: Called with (prompt index in the score_details call, next-token logits row, prompt length)
        #: for every prompt scored: how a server reads more than P(Yes) from the same forward pass.
        self.on_logits: Callable[[int, torch.Tensor, int], None] | None = None

    # ---- tokenisation -----------------------------------------------------------------------
    def _ids(self, segment: str) -> list[int]:
        ids = self._segment_ids.get(segment)
        if ids is None:
            ids = list(self.tokenizer(segment, add_special_tokens=False).input_ids)
            self._segment_ids[segment] = ids
            if len(self._segment_ids) > 100_000:
                self._segment_ids.popitem(last=False)
        return ids

    def token_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids: its segments tokenised separately and concatenated."""
        return self._bos + [t for seg in prompt.segments for t in self._ids(seg)]

    # ---- scoring ----------------------------------------------------------------------------
    def _plan(self, index: int, prompt: Prompt) -> _Job:
        segs = prompt.segments
        seg_ids = [self._ids(s) for s in segs]
        seg_ids[0] = self._bos + seg_ids[0]
        n = len(segs)
        if not self.kv_reuse or n < 2:
            return _Job(index, None, 0, [t for s in seg_ids for t in s], [], prompt.user, prompt.item)
        keys = prefix_keys(segs[:-1])
        start, past = 0, None
        for j in range(n - 1, 0, -1):
            past = self.kv_store.get(keys[j])
            if past is not None:
                start = j
                break
        middle = [t for s in seg_ids[start : n - 1] for t in s]
        past_len = prefix_length(past) if past is not None else 0
        stores = [(keys[n - 1], len(middle))] if start < n - 1 else []
        if start == 0 and n > 2:
            # The first segment (the instructions, the same in every prompt) is stored on its own
            # too, so that a target never seen before computes only its own block.
            stores.append((keys[1], len(seg_ids[0])))
        return _Job(index, past, past_len, middle + seg_ids[-1], stores, prompt.user, prompt.item)

    def _batches(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Group jobs of similar length; a batch costs its size x (longest past + longest new)."""
        jobs = sorted(jobs, key=lambda j: (j.past_len + len(j.new_ids), len(j.new_ids)), reverse=True)
        batches: list[list[_Job]] = []
        current: list[_Job] = []
        for job in jobs:
            candidate = current + [job]
            width = max(j.past_len for j in candidate) + max(len(j.new_ids) for j in candidate)
            if current and (len(candidate) > self.batch_size or len(candidate) * width > self.max_batch_tokens):
                batches.append(current)
                candidate = [job]
            current = candidate
        if current:
            batches.append(current)
        return batches

    @torch.inference_mode()
    def _forward(self, jobs: list[_Job]) -> tuple[np.ndarray, np.ndarray]:
        b = len(jobs)
        p_max = max(j.past_len for j in jobs)
        n_max = max(len(j.new_ids) for j in jobs)
        input_ids = torch.full((b, n_max), self._pad_id, dtype=torch.long)
        mask = torch.zeros((b, p_max + n_max), dtype=torch.long)
        positions = torch.zeros((b, n_max), dtype=torch.long)
        for r, job in enumerate(jobs):
            n = len(job.new_ids)
            input_ids[r, n_max - n :] = torch.tensor(job.new_ids, dtype=torch.long)
            mask[r, p_max - job.past_len : p_max] = 1
            mask[r, p_max + n_max - n :] = 1
            positions[r, n_max - n :] = torch.arange(job.past_len, job.past_len + n)
        cache, stacked = None, None
        if p_max > 0:
            room = n_max if self.prefilled_cache else 0
            stacked, self._kv_buffer = _stacked_prefixes(jobs, p_max, room, self._kv_buffer)
            cache = (
                _prefilled_cache(stacked, p_max) if self.prefilled_cache else _dynamic_cache(stacked, self.model.config)
            )
        decoder = self.model.get_decoder()
        soft = (
            self.soft_tokens.added(self.model, input_ids, [j.user for j in jobs], [j.item for j in jobs])
            if self.soft_tokens is not None
            else contextlib.nullcontext()
        )
        with soft:
            out = decoder(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            )
        hidden = out.last_hidden_state[:, -1]
        logits = self.model.get_output_embeddings()(hidden)
        if self.on_logits is not None:
            for r, job in enumerate(jobs):
                self.on_logits(job.index, logits[r], job.past_len + len(job.new_ids))
        p, mass = readout_from_logits(logits, self.labels)
        if self.head is not None:
            p = torch.sigmoid(self.head(hidden.float()).reshape(-1)).double().cpu().numpy()
        if any(job.stores for job in jobs):
            # The prefilled cache was written in place: ``stacked`` holds the whole batch already.
            self._store(
                jobs, stacked if cache is not None and self.prefilled_cache else _stacked_cache(out.past_key_values),
                p_max, n_max,
            )
        self._counters["llm_calls"] += 1
        self._counters["tokens_computed"] += sum(len(j.new_ids) for j in jobs)
        self._counters["tokens_reused"] += sum(j.past_len for j in jobs)
        self._counters["padded_tokens"] += b * n_max
        return p, mass

    def _store(self, jobs: list[_Job], kv: torch.Tensor, p_max: int, n_max: int) -> None:
        """Keep each job's prefix (cached part + new middle segments) for later prompts.

        :param kv: the batch's keys and values, (layers, 2, batch, kv heads, ``p_max + n_max``, head dim).
        """
        for r, job in enumerate(jobs):
            start_new = p_max + n_max - len(job.new_ids)
            for key, keep in job.stores:
                new = kv[:, :, r, :, start_new : start_new + keep].clone()  # a copy: the batch's memory is reused
                self.kv_store.put(key, (job.past or ()) + (new,))

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        p = np.zeros(len(prompts))
        mass = np.zeros(len(prompts))
        if not prompts:
            return ScoreResult(p, mass)
        if self.prompt_version is not None:
            # A prompt without a version (raw text, e.g. a served request) cannot be checked here.
            wrong = next((pr.version for pr in prompts if pr.version and pr.version != self.prompt_version), None)
            if wrong is not None:
                raise CoralError(
                    f"this scorer was trained on prompts {self.prompt_version}, got {wrong!r}: build its prompts with "
                    "coral.llm.prompt.scorer_prompt_builder"
                )
        # All prompts are planned against the prefixes cached before this call (deterministic
        # whatever the batching); prefixes computed here serve later calls.
        jobs = [self._plan(i, pr) for i, pr in enumerate(prompts)]
        for batch in self._batches(jobs):
            bp, bm = self._forward(batch)
            for r, job in enumerate(batch):
                p[job.index], mass[job.index] = bp[r], bm[r]
        self._counters["prompts"] += len(prompts)
        return ScoreResult(p, mass)

    def stats(self) -> dict[str, float]:
        return {**self._counters, "kv_cache_entries": len(self.kv_store), "kv_cache_bytes": self.kv_store.bytes}
