"""The persistent score cache: identity of keys, persistence across processes, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from llm_fixtures import FailingScorer, HashScorer, text_prompts

from coral.llm.base import Prompt
from coral.llm.cache import CachedScorer, prompt_key

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

_SCRIPT = """
import json, sys
from llm_fixtures import FailingScorer, HashScorer, text_prompts
from coral.llm.cache import CachedScorer
inner = HashScorer() if sys.argv[2] == "compute" else FailingScorer()
scorer = CachedScorer(inner, sys.argv[1])
p = scorer.score(text_prompts(20))
print(json.dumps({"p": [float(x).hex() for x in p], "stats": scorer.stats()}))
"""


def _run(db: Path, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(db), mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_hit_is_identical_after_a_process_restart(tmp_path):
    db = tmp_path / "scores.sqlite"
    first = _run(db, "compute")
    second = _run(db, "from-cache-only")  # its inner scorer raises if called
    assert second["p"] == first["p"]  # bit-identical floats
    assert first["stats"]["cache_misses"] == 20 and second["stats"]["cache_hits"] == 20


def test_hits_misses_and_key_identity(tmp_path):
    inner = HashScorer()
    scorer = CachedScorer(inner, tmp_path / "s.sqlite")
    prompts = text_prompts(5)
    first = scorer.score(prompts + prompts[:2])  # duplicates inside one call are scored once
    assert inner.prompts == 5
    again = scorer.score(prompts)
    np.testing.assert_array_equal(again, first[:5])
    assert scorer.stats()["cache_hits"] == 2 + 5 and scorer.stats()["cache_misses"] == 5
    # The template version and the scorer's fingerprint are part of the key.
    versioned = [Prompt(p.segments, version="v2") for p in prompts]
    assert prompt_key("a", versioned[0]) != prompt_key("a", prompts[0]) != prompt_key("b", prompts[0])
    scorer.score(versioned)
    assert inner.prompts == 10
    # Segment boundaries do not matter, only the full text: same text = same key.
    assert prompt_key("a", Prompt(("ab", "c"))) == prompt_key("a", Prompt(("a", "bc")))


def _writer(db: str, worker: int, n: int) -> None:
    scorer = CachedScorer(HashScorer(), db, timeout=120)
    shared = text_prompts(40, tag="shared-")  # every worker writes these too
    own = text_prompts(n, tag=f"w{worker}-")
    for start in range(0, n, 10):
        scorer.score(own[start : start + 10] + shared[start // 10 :: 10])


def test_concurrent_writer_processes_lose_no_entries(tmp_path):
    db = str(tmp_path / "shared.sqlite")
    n = 150
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(db, w, n)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    check = CachedScorer(FailingScorer(), db)
    assert len(check) == 4 * n + 40
    for w in range(4):
        check.score(text_prompts(n, tag=f"w{w}-"))  # all present: the failing inner is never called
    assert check.stats()["cache_hits"] == 4 * n
