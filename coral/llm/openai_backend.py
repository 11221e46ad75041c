"""A backend for any OpenAI-compatible completions endpoint that returns log-probabilities.

Works with ``coral serve-scorer`` and ``vllm serve MODEL`` (``openai:http://127.0.0.1:8000/v1#MODEL``),
and with hosted services that still offer the legacy ``/completions`` route with ``logprobs``.
Each prompt is one request for a single next token with the top-k log-probabilities; p is read
from the label tokens found among them (see :func:`coral.llm.labels.readout_from_top_logprobs`).

The prompt must be in the model's chat format, so the scorer needs a tokenizer of the same model
(:attr:`OpenAIScorer.tokenizer`, which the prompt builder takes the chat template from): given
(``tokenizer=``, or ``;tokenizer=DIR`` in the spec), or fetched from a coral server. Without one,
prompts are plain text and P(Yes) differs from in-process scoring.

A ``coral serve-scorer`` announces itself in ``GET /v1/models`` (a ``coral`` entry): the client
then takes the server's tokenizer, uses the server's scorer fingerprint (that of the in-process
HF scorer, so the score cache is shared with in-process scoring and does not depend on the URL
or port), sends each prompt's segments (same tokens and prefix KV reuse as in-process), and reads
P(Yes) as the server's scorer computed it. The names of these protocol extensions are defined
here and followed by :mod:`coral.serve`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult
from coral.llm.labels import DEFAULT_LABELS, readout_from_top_logprobs

#: HTTP statuses worth retrying (rate limits and server-side trouble).
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
#: Version of coral's extensions to the completions protocol.
PROTOCOL_VERSION = 1
#: ``/v1/models`` entry field with a coral server's metadata.
CORAL_MODEL_FIELD = "coral"
#: Request field with the prompt's segments (a coral server only).
SEGMENTS_FIELD = "coral_segments"
#: Choice field with ``{"p_yes", "yes_no_mass"}`` from a coral server's scorer.
CORAL_CHOICE_FIELD = "coral"
#: A coral server's tokenizer files, relative to the API root.
TOKENIZER_PATH = "/coral/tokenizer"
#: Seconds per request: a GPU server answers in milliseconds; a coral server on a busy CPU may
#: queue a request behind many others, and a retry after a timeout re-sends the work.
DEFAULT_TIMEOUT = 60.0
CORAL_SERVER_TIMEOUT = 600.0


class OpenAIScorer(Scorer):
    """P(Yes) from an OpenAI-compatible ``/completions`` endpoint.

    :param base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
    :param model: the model name the server expects.
    :param labels: (positive, negative) label text; " Yes"/" No" variants count too.
    :param top_logprobs: how many next-token log-probabilities to ask for (vLLM allows 20).
    :param timeout: seconds per HTTP request; None = 600 s against a coral server, else 60 s.
    :param retries: further attempts after a failed request (exponential back-off).
    :param max_concurrency: requests in flight at once.
    :param api_key: bearer token; default ``$OPENAI_API_KEY`` if set.
    :param tokenizer: a tokenizer of the served model (its chat template shapes the prompts), or
        the path of an HF model directory / ``.gguf`` file to load it from, or "embedded"
        (the embedded model's); None = the server's own for a coral server, else none.
    :raises CoralError: when the server cannot be reached, or a coral server scores other labels.
    """

    backend = "openai"

    def __init__(
        self, base_url: str, model: str, *, labels: tuple[str, str] = DEFAULT_LABELS, top_logprobs: int = 20,
        timeout: float | None = None, retries: int = 4, max_concurrency: int = 8, api_key: str | None = None,
        tokenizer: Any = None, labels_only: bool = False,
    ) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/completions"
        self.model = model
        self.yes_keys = (labels[0], " " + labels[0])
        self.no_keys = (labels[1], " " + labels[1])
        self.top_logprobs = int(top_logprobs)
        self.retries = int(retries)
        self.max_concurrency = max(1, int(max_concurrency))
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._session = requests.Session()
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"
        self._counters = {"llm_calls": 0, "prompts": 0, "retries": 0}
        self._lock = threading.Lock()
        self.timeout = float(timeout) if timeout is not None else DEFAULT_TIMEOUT
        #: The coral server's metadata (``/v1/models``), or None for any other server.
        self.served = self._coral_metadata()
        if self.served is not None:
            self._check_labels(labels)
            if timeout is None:
                self.timeout = CORAL_SERVER_TIMEOUT
            # The in-process scorer's fingerprint: the cache is shared with in-process scoring and
            # with every other client of an identical server, whatever its URL.
            self.fingerprint = str(self.served["fingerprint"])
            if self.served.get("prompt_version"):  # an aligned scorer: the template it was trained on
                self.prompt_version = self.served["prompt_version"]
        else:
            label_keys = f"yes={list(self.yes_keys)};no={list(self.no_keys)}"
            self.fingerprint = f"openai|{self.base_url}|{model}|{label_keys}|top={self.top_logprobs}"
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(None if str(tokenizer) == "embedded" else tokenizer)
        elif tokenizer is None and self.served is not None:
            tokenizer = self._served_tokenizer()
        self.tokenizer = tokenizer
        #: vLLM's ``allowed_token_ids`` with the label ids, or None. A label outside the server's
        #: top-k would otherwise be missing and p silently wrong; restricted, the server returns
        #: exactly the label tokens (with ``vllm serve --logprobs-mode processed_logprobs``).
        self.allowed_token_ids: list[int] | None = None
        if labels_only:
            if self.served is not None:
                raise CoralError(f"{self.base_url}: ;labels_only is for vllm serve; a coral server reads P(Yes) itself")
            if tokenizer is None:
                raise CoralError(
                    "the openai spec's ;labels_only needs the model's tokenizer (;tokenizer=DIR) to find the label ids"
                )
            from coral.llm.labels import resolve_label_tokens

            tokens = resolve_label_tokens(tokenizer, labels)
            self.allowed_token_ids = [*tokens.yes_ids, *tokens.no_ids]
            self._label_strings = (*tokens.yes_strings, *tokens.no_strings)
            self.fingerprint += f"|allowed={tokens.describe()}"

    # ---- talking to the server -----------------------------------------------------------
    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        """One HTTP exchange with retries on connection errors and :data:`RETRY_STATUS`.

        :raises CoralError: when no attempt got an answer.
        """
        import requests

        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                response = self._session.request(method, url, json=body, timeout=self.timeout)
            except requests.RequestException as err:
                last_error = f"{type(err).__name__}: {err}"
                continue
            if response.status_code in RETRY_STATUS:
                last_error = f"HTTP {response.status_code}: {response.text[:200]!r}"
                continue
            return response
        raise CoralError(f"{url}: no answer after {self.retries + 1} attempts ({last_error}); is the server running?")

    def _coral_metadata(self) -> dict[str, Any] | None:
        """The ``coral`` entry of ``GET /v1/models`` for this model, or None (not a coral server)."""
        response = self._call("GET", self.base_url + "/models")
        if response.status_code != 200:
            return None  # a server without the route (or refusing it) is a plain OpenAI server
        try:
            entries = response.json()["data"]
            entry = next(e for e in entries if e.get("id") == self.model)
        except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
            return None
        meta = entry.get(CORAL_MODEL_FIELD)
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            return None
        if meta.get("protocol") != PROTOCOL_VERSION:
            raise CoralError(
                f"{self.base_url}: coral server protocol {meta.get('protocol')} is not {PROTOCOL_VERSION}; use the "
                "same coral version on both sides"
            )
        return meta

    def _check_labels(self, labels: tuple[str, str]) -> None:
        served = tuple(self.served.get("labels", DEFAULT_LABELS))  # type: ignore[union-attr]
        if served != tuple(labels):
            raise CoralError(
                f"{self.base_url}: the server scores labels {served}, this client asks for {tuple(labels)}"
            )

    def _served_tokenizer(self) -> Any:
        """The coral server's tokenizer, from the local copy named by its digest (fetched once)."""
        from coral.io import cache_dir

        digest = str(self.served["tokenizer_sha256"])  # type: ignore[index]
        directory = cache_dir("tokenizers") / digest[:16]
        if not directory.is_dir():
            response = self._call("GET", self.base_url + TOKENIZER_PATH)
            if response.status_code != 200:
                raise CoralError(
                    f"{self.base_url}{TOKENIZER_PATH}: HTTP {response.status_code}: {response.text[:200]!r}"
                )
            files = response.json()["files"]
            if tokenizer_digest(files) != digest:
                raise CoralError(
                    f"{self.base_url}{TOKENIZER_PATH}: the tokenizer files do not match the digest the server announced"
                )
            write_tokenizer_files(directory, files)
        return load_tokenizer(directory)

    def _request(self, prompt: Prompt) -> tuple[float, float]:
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt.text, "max_tokens": 1, "temperature": 0.0,
            "logprobs": self.top_logprobs,
        }
        if self.served is not None:
            body[SEGMENTS_FIELD] = list(prompt.segments)
        if self.allowed_token_ids is not None:
            body.update(allowed_token_ids=self.allowed_token_ids, logprobs=len(self.allowed_token_ids))
        response = self._call("POST", self.url, body)
        self._count("llm_calls")
        if response.status_code != 200:
            raise CoralError(f"{self.url}: HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            choice = response.json()["choices"][0]
            served = choice.get(CORAL_CHOICE_FIELD) if self.served is not None else None
            if served is not None:
                return float(served["p_yes"]), float(served["yes_no_mass"])
            top = choice["logprobs"]["top_logprobs"][0]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise CoralError(
                f"{self.url}: the response has no next-token top_logprobs (does the server support logprobs?)"
            ) from None
        if self.allowed_token_ids is not None:
            missing = [s for s in self._label_strings if s not in top]
            if missing:
                raise CoralError(
                    f"{self.url}: label tokens {missing} missing from the restricted next-token log-probabilities; "
                    "start vllm serve with --logprobs-mode processed_logprobs (raw log-probabilities ignore "
                    "allowed_token_ids)"
                )
        return readout_from_top_logprobs(top, self.yes_keys, self.no_keys)

    # ---- the Scorer interface --------------------------------------------------------------
    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        if not prompts:
            return ScoreResult(np.zeros(0), np.zeros(0))
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            results = list(pool.map(self._request, prompts))
        self._counters["prompts"] += len(prompts)
        return ScoreResult(np.array([r[0] for r in results]), np.array([r[1] for r in results]))

    def stats(self) -> dict[str, float]:
        return dict(self._counters)


# ---- tokenizer files -----------------------------------------------------------------------
def tokenizer_digest(files: dict[str, str]) -> str:
    """A digest of a tokenizer's files (name -> text), independent of their order.

    :param files: file name -> content.
    """
    h = hashlib.sha256()
    for name in sorted(files):
        for part in (name, files[name]):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()


def write_tokenizer_files(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``directory``, which appears whole or not at all (written aside, renamed).

    :param directory: the directory to create.
    :param files: file name -> content; names must be plain file names.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        for name, text in files.items():
            if Path(name).name != name or name.startswith("."):
                raise CoralError(f"refusing the tokenizer file name {name!r}")
            (tmp / name).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
            shutil.rmtree(tmp)  # another process finished first: use its copy
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """A tokenizer's files as name -> text (what a coral server hands its clients).

    :param tokenizer: a Hugging Face tokenizer.
    """
    with tempfile.TemporaryDirectory(prefix="coral-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def load_tokenizer(path: str | os.PathLike | None) -> Any:
    """The tokenizer of an HF model directory or ``.gguf`` file (None = the embedded model).

    :param path: where the model or tokenizer files are.
    :raises CoralError: when the path does not exist.
    """
    from transformers import AutoTokenizer

    from coral.llm.model import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir(path))


def parse_openai_spec(arg: str) -> tuple[str, str, str | None, bool]:
    """(url, model, tokenizer, labels_only) of the part after ``openai:`` in
    ``openai:URL#MODEL[;tokenizer=DIR][;labels_only]``.

    :param arg: ``URL#MODEL`` with optional ``;tokenizer=DIR`` (an HF dir, a .gguf, or "embedded")
        and ``;labels_only`` (vLLM: restrict the next token to the labels, see :class:`OpenAIScorer`).
    :raises CoralError: when the URL or the model is missing, or an option is unknown.
    """
    url, _, rest = arg.partition("#")
    model, *options = rest.split(";")
    tokenizer, labels_only = None, False
    for option in options:
        name, _, value = option.partition("=")
        if name == "tokenizer" and value:
            tokenizer = value
        elif option == "labels_only":
            labels_only = True
        else:
            raise CoralError(
                f"unknown option {option!r} in the openai spec; expected ;tokenizer=DIR (an HF dir, a .gguf, or "
                "embedded) or ;labels_only"
            )
    if not url or not model:
        raise CoralError(f"the openai spec needs a URL and a model: openai:URL#MODEL, got 'openai:{arg}'")
    return url, model, tokenizer, labels_only
