"""coral: collaborative retrieval-augmented LLMs for long-tail recommendation (CoRAL, KDD 2024)."""

__version__ = "0.1.0"

# Importing coral registers the Gymnasium environments (CoRAL/CollabRetrieval-v0).
import envs as _envs  # noqa: E402,F401
