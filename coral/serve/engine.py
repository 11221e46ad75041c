"""The scoring engine behind ``coral serve-scorer``: next-token readouts from the in-process HF
scorer, with the prompts of concurrent requests batched into shared forward passes."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from coral.llm.base import Prompt
from coral.llm.hf import HFScorer
from coral.serve.protocol import MAX_LOGPROBS, NextToken


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
            top = [(self._text(int(t)), float(v)) for t, v in zip(ids.tolist(), values.tolist())]
            rows[index] = (top, dict(zip(self._label_text, logp[list(self._label_ids)].tolist())), length)

        scorer.on_logits = read
        try:
            result = scorer.score_details(prompts)
        finally:
            scorer.on_logits = None
        out = []
        for k, row in enumerate(rows):
            assert row is not None, "HFScorer did not report the logits of every prompt"
            top, labels, length = row
            out.append(NextToken(tuple(top), labels, top[0][0], top[0][1], length, float(result.p_yes[k]), float(result.yes_no_mass[k])))
        return out


@dataclass
class _Work:
    prompts: list[Prompt]
    future: Future = field(default_factory=Future)


class BatchingEngine:
    """Runs ``score`` on one thread, batching the prompts of requests that arrive together.

    The thread takes the first waiting request, then keeps collecting until ``max_batch``
    prompts are gathered or ``max_wait_s`` has passed, and scores them in one call. A request
    whose future was cancelled meanwhile (its client left) is skipped.

    :param score: prompts -> one result per prompt (called on the engine thread only).
    :param max_batch: prompts per scoring call at most (a single larger request is scored whole).
    :param max_wait_s: how long to wait for more requests after the first.
    """

    def __init__(self, score: Callable[[list[Prompt]], list[Any]], max_batch: int = 32, max_wait_s: float = 0.005) -> None:
        self.score = score
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = float(max_wait_s)
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="scoring-engine", daemon=True)
        self.stats = {"requests": 0, "prompts": 0, "batches": 0, "largest_batch": 0, "errors": 0, "skipped": 0}

    def start(self) -> "BatchingEngine":
        """Start the engine thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in progress, fail requests still waiting, and end the thread.

        :param timeout: seconds to wait for the batch in progress.
        """
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, prompts: Sequence[Prompt]) -> Future:
        """Queue ``prompts``; the future's result is their list of results (cancel it to drop the work).

        :param prompts: the prompts of one request.
        """
        work = _Work(list(prompts))
        self._queue.put(work)
        return work.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = [first], False
            size = len(first.prompts)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    work = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if work is None:
                    stop = True
                    break
                batch.append(work)
                size += len(work.prompts)
            self._score(batch)
            if stop:
                break
        while True:  # requests that arrived after the stop
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None and work.future.set_running_or_notify_cancel():
                work.future.set_exception(RuntimeError("the server is stopping"))

    def _score(self, batch: list[_Work]) -> None:
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        self.stats["skipped"] += len(batch) - len(live)
        prompts = [p for w in live for p in w.prompts]
        if not prompts:
            return
        try:
            results = self.score(prompts)
        except Exception as err:  # a scoring failure fails this batch's requests, not the server
            self.stats["errors"] += 1
            for w in live:
                w.future.set_exception(err)
            return
        self.stats["requests"] += len(live)
        self.stats["prompts"] += len(prompts)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(prompts))
        start = 0
        for w in live:
            w.future.set_result(results[start : start + len(w.prompts)])
            start += len(w.prompts)


def describe_scorer(scorer: HFScorer) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a server tells its clients about ``scorer``: (``/v1/models`` metadata, tokenizer route body).

    The metadata carries the scorer's fingerprint (clients use it as theirs, so the score cache
    is shared with in-process scoring whatever the server's URL), its labels, its weight layout,
    the digest of its tokenizer files, and for an aligned scorer the prompt version it was
    trained on.

    :param scorer: the served HF scorer.
    """
    from coral.llm.openai_backend import read_tokenizer_files, tokenizer_digest

    files = read_tokenizer_files(scorer.tokenizer)
    digest = tokenizer_digest(files)
    labels = [scorer.labels.yes_strings[0], scorer.labels.no_strings[0]]
    info: dict[str, Any] = {"fingerprint": scorer.fingerprint, "labels": labels, "layout": scorer.layout, "tokenizer_sha256": digest, "device": "cpu"}
    prompt_version = getattr(scorer, "prompt_version", None)
    if prompt_version:
        info["prompt_version"] = prompt_version
    return info, {"sha256": digest, "files": files}
