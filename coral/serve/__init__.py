"""``coral serve-scorer``: one LLM scorer process shared by many environment workers.

The server speaks the subset of the OpenAI ``/v1/completions`` API that the ``openai`` backend
(:mod:`coral.llm.openai_backend`) sends to ``vllm serve``: one next token with its top
log-probabilities. Requests from concurrent workers are batched into shared forward passes of
the in-process :class:`~coral.llm.hf.HFScorer`, so a served P(Yes) is the in-process one.

Modules, one job each:

- :mod:`coral.serve.protocol`: request validation, response and error bodies, model metadata;
- :mod:`coral.serve.limits`: what a request may cost: its prompts' lengths in tokens, counted
  before any computation (``--max-prompt-tokens``), and handing freed memory back;
- :mod:`coral.serve.engine`: next-token readout from the HF scorer, and the batching thread that
  scores in forward chunks, dropping the prompts of clients that left;
- :mod:`coral.serve.http`: the HTTP server and its clean stop on SIGTERM/SIGINT;
- :mod:`coral.serve.client`: start and stop a server subprocess (tests, benchmarks).

The standard library serves HTTP (no framework): why, and the measured limits, in
``experiments/notes/serve.md``.

Nothing here imports torch at module level except :mod:`coral.serve.engine`.
"""
