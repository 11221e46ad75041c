"""Retrieval policies (installed as ``coral.policies``): RL (PPO, DDPG, MaskablePPO) and non-RL (random, greedy),
training and evaluation.

Modules, one job each (imported directly; this package imports nothing, so ``coral --help``
stays fast):

- :mod:`coral.policies.base`: the ``RetrievalPolicy`` protocol.
- :mod:`coral.policies.random_policy`: ``RandomPolicy`` (CoRAL-random).
- :mod:`coral.policies.greedy`: ``GreedyPolicy`` (nearest evidence by embedding, no learning).
- :mod:`coral.policies.config`: ``TrainConfig`` (nests the environment's ``EnvConfig``).
- :mod:`coral.policies.sb3`: SB3 algorithms with the project's settings; ``SB3Policy`` wraps a model.
- :mod:`coral.policies.callbacks`: coral/ metrics, periodic validation, checkpoints.
- :mod:`coral.policies.run_dir`: a run directory's config, model and summary.
- :mod:`coral.policies.evaluate`: ``evaluate_policy(policy, config, resources, ...)``, ``evaluate_run``.
- :mod:`coral.policies.train`: ``train(config, resources, resume)``.

The command line (``coral train``, ``coral evaluate``) is in :mod:`coral.cli.train`; the
warm-start embeddings are in :mod:`coral.retrieval`.
"""
