"""Shared test set-up: an isolated coral cache, and where the real data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The shared real data beside the checkout (absent on a clone without ../shared).
AMAZON2018 = ROOT.parent / "shared" / "data" / "amazon2018"

# Tests never touch the user's ~/.cache/coral. The cache persists across local runs under
# .pytest_cache (so the embedded model's safetensors copy is made once), and is fresh in CI.
os.environ.setdefault("CORAL_CACHE_DIR", str(ROOT / ".pytest_cache" / "coral-cache"))
from coral.threads import set_thread_defaults  # noqa: E402

set_thread_defaults()


@pytest.fixture
def amazon2018() -> Path:
    """The directory of the real Amazon 2018 5-core files; skips the test where it is absent."""
    if not AMAZON2018.is_dir():
        pytest.skip("../shared/data/amazon2018 is not present")
    return AMAZON2018


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory holding a randomly initialised 2-layer llama and the embedded tokenizer."""
    from llm_fixtures import tiny_llama

    model, tokenizer = tiny_llama()
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
