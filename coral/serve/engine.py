"""The scoring engine behind ``coral serve-scorer``: next-token readouts from the in-process HF
scorer, with the prompts of concurrent requests batched into shared forward passes."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from coral.llm.base import Prompt
from coral.llm.hf import HFScorer
from coral.serve.limits import release_memory
from coral.serve.protocol import MAX_LOGPROBS, ClientGone, NextToken, ServerStopping


class NextTokenReader:
    """Scores prompts with an :class:`HFScorer` and also reads each one's next-token log-probabilities.

    P(Yes) and the Yes/No mass are the scorer's own (same batching, padding, prefix KV reuse and
    readout as in-process). The top-k table for OpenAI clients comes from the same forward pass,
    through :attr:`HFScorer.on_logits` (set for the duration of a call; the engine thread is the
    only caller).

    :param scorer: the HF scorer (hf, hf:PATH or aligned:DIR).
    :param top_k: how many of the most likely tokens to report besides the label tokens.
    """

    def __init__(self, scorer: HFScorer, top_k: int = MAX_LOGPROBS) -> None:
        self.scorer = scorer
        self.top_k = int(top_k)
        labels = scorer.labels
        self._label_ids = tuple(labels.yes_ids) + tuple(labels.no_ids)
        self._label_text = tuple(labels.yes_strings) + tuple(labels.no_strings)
        self._token_text: dict[int, str] = {}

    def _text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self.scorer.tokenizer.decode([token_id])
        return text

    def __call__(self, prompts: Sequence[Prompt]) -> list[NextToken]:
        """The next-token readouts of ``prompts`` (one batched scoring call).

        :param prompts: the prompts, as segments.
        """
        import torch

        scorer = self.scorer
        rows: list[tuple[list[tuple[str, float]], dict[str, float], int] | None] = [None] * len(prompts)

        def read(index: int, logits: torch.Tensor, length: int) -> None:
            logp = torch.log_softmax(logits.float(), dim=-1)
            values, ids = torch.topk(logp, self.top_k)
            top = [(self._text(int(t)), float(v)) for t, v in zip(ids.tolist(), values.tolist(), strict=False)]
            rows[index] = (top, dict(zip(self._label_text, logp[list(self._label_ids)].tolist(), strict=False)), length)

        scorer.on_logits = read
        try:
            result = scorer.score_details(prompts)
        finally:
            scorer.on_logits = None
        out = []
        for k, row in enumerate(rows):
            assert row is not None, "HFScorer did not report the logits of every prompt"
            top, labels, length = row
            out.append(
                NextToken(
                    tuple(top), labels, top[0][0], top[0][1], length, float(result.p_yes[k]),
                    float(result.yes_no_mass[k]),
                )
            )
        return out


class Work:
    """One request's prompts in the engine: its result, and whether its client is still there.

    :param prompts: the request's prompts.
    :param tokens: each prompt's length in tokens (orders prompts into forward chunks).
    """

    def __init__(self, prompts: Sequence[Prompt], tokens: Sequence[int]) -> None:
        self.prompts = list(prompts)
        self.tokens = [int(t) for t in tokens]
        self.future: Future = Future()
        self.results: list[Any] = [None] * len(self.prompts)
        self.pending = len(self.prompts)
        self._left = threading.Event()

    def cancel(self) -> None:
        """Drop the work: its prompts not scored yet are never scored (the client has gone)."""
        self._left.set()
        self.future.cancel()  # only succeeds while it still waits in the queue

    @property
    def left(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._left.is_set()


def forward_chunks(tokens: Sequence[int], max_prompts: int, max_tokens: int) -> list[list[int]]:
    """Indices of ``tokens`` grouped into forward chunks, longest prompts first.

    A chunk holds at most ``max_prompts`` prompts and at most ``max_tokens`` padded tokens (its
    size times its longest prompt); a single prompt longer than that is a chunk of its own.

    :param tokens: each prompt's length in tokens.
    :param max_prompts: prompts per chunk at most (the scorer's batch size: one forward pass).
    :param max_tokens: padded tokens per chunk at most.
    """
    order = sorted(range(len(tokens)), key=lambda k: tokens[k], reverse=True)
    chunks: list[list[int]] = []
    for k in order:
        if chunks and len(chunks[-1]) < max_prompts and (len(chunks[-1]) + 1) * tokens[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(k)
        else:
            chunks.append([k])
    return chunks


class BatchingEngine:
    """Runs ``score`` on one thread, batching the prompts of requests that arrive together.

    The thread takes the first waiting request, then keeps collecting until ``max_batch``
    prompts are gathered or ``max_wait_s`` has passed. It scores the gathered prompts in forward
    chunks (:func:`forward_chunks`, one ``score`` call each) and, before each chunk, drops the
    prompts of requests whose client has left and stops altogether when the server stops: a
    request that is given up costs at most the chunk already running. A request is answered as
    soon as its last prompt is scored.

    :param score: prompts -> one result per prompt (called on the engine thread only).
    :param max_batch: prompts gathered from waiting requests at most (a single larger request is taken whole).
    :param max_wait_s: how long to wait for more requests after the first.
    :param chunk_prompts: prompts per ``score`` call at most (the scorer's batch size).
    :param chunk_tokens: padded prompt tokens per ``score`` call at most.
    """

    def __init__(
        self, score: Callable[[list[Prompt]], list[Any]], max_batch: int = 32, max_wait_s: float = 0.005,
        chunk_prompts: int = 8, chunk_tokens: int = 4096,
    ) -> None:
        self.score = score
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = float(max_wait_s)
        self.chunk_prompts = max(1, int(chunk_prompts))
        self.chunk_tokens = max(1, int(chunk_tokens))
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="scoring-engine", daemon=True)
        self._stopping = threading.Event()
        self._tokens_since_trim = 0
        self.stats = {
            "requests": 0, "prompts": 0, "batches": 0, "chunks": 0, "largest_batch": 0, "errors": 0, "skipped": 0,
            "dropped_prompts": 0, "stopped_requests": 0,
        }

    def start(self) -> "BatchingEngine":
        """Start the engine thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Fail every request not answered yet with :class:`ServerStopping` (the chunk running
        finishes first) and end the thread.

        :param timeout: seconds to wait for the thread.
        :returns: whether the thread ended within ``timeout``.
        """
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether the engine thread is alive."""
        return self._thread.is_alive()

    def submit(self, prompts: Sequence[Prompt], tokens: Sequence[int] | None = None) -> Work:
        """Queue ``prompts``; the work's future gives their list of results (:meth:`Work.cancel` drops it).

        :param prompts: the prompts of one request.
        :param tokens: their lengths in tokens (default: their lengths in characters, a proxy for ordering).
        """
        work = Work(prompts, tokens if tokens is not None else [len(p.text) for p in prompts])
        if self._stopping.is_set():
            work.future.set_exception(ServerStopping("the server is stopping"))
            return work
        self._queue.put(work)
        return work

    def _run(self) -> None:
        while not self._stopping.is_set():
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            size = len(first.prompts)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    work = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if work is None:
                    break
                batch.append(work)
                size += len(work.prompts)
            self._score(batch)
            if self._queue.empty() and self._tokens_since_trim >= self.chunk_tokens:
                release_memory()
                self._tokens_since_trim = 0
        while True:  # requests that arrived after the stop
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None and work.future.set_running_or_notify_cancel():
                self._fail(work, ServerStopping("the server is stopping"))

    def _fail(self, work: Work, err: BaseException) -> None:
        if not work.future.done():
            work.future.set_exception(err)

    def _score(self, batch: list[Work]) -> None:
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        self.stats["skipped"] += len(batch) - len(live)
        items = [(w, k) for w in live for k in range(len(w.prompts))]
        if not items:
            return
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        for chunk in forward_chunks([w.tokens[k] for w, k in items], self.chunk_prompts, self.chunk_tokens):
            if self._stopping.is_set():
                break
            todo = [items[j] for j in chunk if not items[j][0].left and not items[j][0].future.done()]
            self.stats["dropped_prompts"] += sum(1 for j in chunk if items[j][0].left)
            if not todo:
                continue
            try:
                results = self.score([w.prompts[k] for w, k in todo])
            except Exception as err:  # a scoring failure fails the requests of this chunk, not the server
                self.stats["errors"] += 1
                for w, _ in todo:
                    self._fail(w, err)
                continue
            self.stats["chunks"] += 1
            self._tokens_since_trim += sum(w.tokens[k] for w, k in todo)
            for (w, k), result in zip(todo, results, strict=False):
                w.results[k] = result
                w.pending -= 1
                if w.pending == 0 and not w.future.done():
                    w.future.set_result(w.results)
                    self.stats["requests"] += 1
                    self.stats["prompts"] += len(w.prompts)
        for w in live:  # not answered: its client left, or the server is stopping
            if w.left:
                self._fail(w, ClientGone("the client has gone"))
            elif not w.future.done():
                self.stats["stopped_requests"] += 1
                self._fail(w, ServerStopping("the server is stopping"))


def describe_scorer(scorer: HFScorer) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a server tells its clients about ``scorer``: (``/v1/models`` metadata, tokenizer route body).

    The metadata carries the scorer's fingerprint (clients use it as theirs, so the score cache
    is shared with in-process scoring whatever the server's URL), its labels, its precision (wire key "layout"),
    the digest of its tokenizer files, and for an aligned scorer the prompt version it was
    trained on.

    :param scorer: the served HF scorer.
    """
    from coral.llm.openai_backend import read_tokenizer_files, tokenizer_digest

    files = read_tokenizer_files(scorer.tokenizer)
    digest = tokenizer_digest(files)
    labels = [scorer.labels.yes_strings[0], scorer.labels.no_strings[0]]
    info: dict[str, Any] = {
        "fingerprint": scorer.fingerprint, "labels": labels, "layout": scorer.precision, "tokenizer_sha256": digest,
        "device": "cpu",
    }
    prompt_version = getattr(scorer, "prompt_version", None)
    if prompt_version:
        info["prompt_version"] = prompt_version
    return info, {"sha256": digest, "files": files}
