"""``coral serve-scorer``: serve the LLM scorer once, to many environment workers."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Optional

from coral.cli.common import add_command, require_output_file
from coral.config import require, section
from coral.errors import CoralError
from coral.llm import ScorerConfig, ScorerSpec, parse_scorer_spec

#: The name clients use for the embedded model (its Hugging Face id, as ``vllm serve`` names it).
EMBEDDED_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ServeScorerCommand:
    """``coral serve-scorer``: an OpenAI-compatible completions endpoint (logprobs) over the in-process HF scorer."""

    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The LLM to serve: hf, hf:PATH or aligned:DIR, and its layout."""
    host: str = "127.0.0.1"
    """Address to listen on (loopback: only this machine's workers reach it)."""
    port: int = 8000
    """Port to listen on; 0: any free port (see --ready-file)."""
    model_name: Optional[str] = None
    """The name clients put in openai:URL#MODEL; None: HuggingFaceTB/SmolLM2-135M-Instruct for the embedded model, else
    the model's directory or file name."""
    batch_size: int = 8
    """Prompts per forward pass."""
    max_batch: int = 32
    """Prompts from concurrent requests scored in one call at most."""
    max_wait_ms: float = 5.0
    """After a request arrives, wait this long for others to batch with it."""
    threads: int = 0
    """torch threads; 0: torch's choice (on a CPU shared with the workers, 1 is safer: pinned threads that wait on each
    other collapse)."""
    max_prompt_tokens: int = 2048
    """Longest prompt accepted, in tokens (coral's prompts take a few hundred; the embedded model's context is 8,192): a
    longer one gets a 400 before any computation."""
    chunk_tokens: int = 4096
    """Padded prompt tokens per forward pass at most: a request whose client has gone, or a stop, waits for one such
    pass at most (>= --max-prompt-tokens)."""
    request_timeout: float = 600.0
    """Seconds a request may wait for its result before the server answers 503."""
    ready_file: Optional[str] = None
    """Write {url, model, pid} to this JSON file once the server accepts requests."""

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, "port", f"must be in 0..65535, got {self.port}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.max_batch >= 1, "max_batch", f"must be >= 1, got {self.max_batch}")
        require(self.max_wait_ms >= 0, "max_wait_ms", f"must be >= 0, got {self.max_wait_ms}")
        require(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        require(self.max_prompt_tokens >= 1, "max_prompt_tokens", f"must be >= 1, got {self.max_prompt_tokens}")
        require(
            self.chunk_tokens >= self.max_prompt_tokens,
            "chunk_tokens",
            f"must be >= --max-prompt-tokens ({self.max_prompt_tokens}), got {self.chunk_tokens}",
        )
        require(self.request_timeout > 0, "request_timeout", f"must be > 0, got {self.request_timeout}")
        require(self.model_name is None or bool(self.model_name.strip()), "model_name", "must not be empty")


def served_spec(config: ServeScorerCommand) -> ScorerSpec:
    """The served scorer's spec, refused unless it runs a local model in this process.

    :raises CoralError: for a bad spec, or one that is not hf, hf:PATH or aligned:DIR.
    """
    spec = parse_scorer_spec(config.scorer.scorer)
    if not spec.local:  # (a flat section's field: checked here, named as its flag)
        raise CoralError(f"--scorer must be hf, hf:PATH or aligned:DIR to be served, got {config.scorer.scorer!r}")
    spec.require_files()
    return spec


def served_model_name(config: ServeScorerCommand, spec: ScorerSpec) -> str:
    """The name the server answers to (see ``--model-name``)."""
    if config.model_name:
        return config.model_name
    if spec.path is None:
        return EMBEDDED_MODEL_NAME
    name = spec.path.name.removesuffix(".gguf")
    return f"aligned-{name}" if spec.backend == "aligned" else name


def serve_scorer(config: ServeScorerCommand) -> int:
    from coral.llm import make_scorer
    from coral.llm.base import Prompt
    from coral.llm.hf import HFScorer
    from coral.serve.engine import BatchingEngine, NextTokenReader, describe_scorer
    from coral.serve.http import ScorerHTTPServer, serve
    from coral.serve.limits import PromptTokenLimit

    spec = served_spec(config)
    if config.ready_file:
        require_output_file(config.ready_file, "--ready-file")
    # Listen first: a port in use fails in a second, not after the model has loaded.
    try:
        server = ScorerHTTPServer(
            (config.host, config.port), served_model_name(config, spec), request_timeout=config.request_timeout
        )
    except OSError as err:
        raise CoralError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}") from None
    try:
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        scorer = make_scorer(spec.text, cache=False, precision=config.scorer.precision, batch_size=config.batch_size)
        assert isinstance(scorer, HFScorer), type(scorer)  # served_spec accepts local backends only
        context = getattr(scorer.model.config, "max_position_embeddings", None)
        if context is not None and config.max_prompt_tokens > context:
            raise CoralError(
                f"--max-prompt-tokens {config.max_prompt_tokens} exceeds the model's context of {context} tokens"
            )
        limit = PromptTokenLimit(
            scorer.tokenizer, len(scorer.token_ids(Prompt(segments=("",)))), config.max_prompt_tokens
        )
        chunk_tokens = min(config.chunk_tokens, scorer.max_batch_tokens)  # one chunk, one forward pass
        engine = BatchingEngine(
            NextTokenReader(scorer), max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000.0,
            chunk_prompts=config.batch_size, chunk_tokens=chunk_tokens,
        ).start()
        info, tokenizer_files = describe_scorer(scorer)
    except BaseException:
        server.server_close()
        raise
    server.attach(engine, limit, info, tokenizer_files, scorer.stats)
    stats = serve(server, config.ready_file)
    if not stats["engine_stopped"]:
        # A forward pass still runs in the engine thread: leaving through the interpreter's exit
        # would tear torch's threads down under it (C++ "terminate called ..."). Leave now.
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers, "serve-scorer", ServeScorerCommand, serve_scorer,
        help="serve the LLM scorer once (OpenAI-compatible completions with logprobs) to many env workers: --scorer "
             "openai:URL#MODEL",
    )
