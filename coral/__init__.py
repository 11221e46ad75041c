"""coral: collaborative retrieval-augmented LLMs for long-tail recommendation (CoRAL, KDD 2024).

Importing ``coral`` imports nothing else: ``coral.data`` works without gymnasium or torch, and
the Gymnasium environments are registered by ``import coral.envs``.
"""

__version__ = "0.1.0"
