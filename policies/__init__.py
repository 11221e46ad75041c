"""Retrieval policies: RL (PPO, DDPG, MaskablePPO) and non-RL (random, greedy), training and evaluation.

Modules, one job each (imported directly; this package imports nothing, so ``coral --help``
stays fast):

- :mod:`policies.base`: the ``RetrievalPolicy`` protocol.
- :mod:`policies.random_policy`: ``RandomPolicy`` (CoRAL-random).
- :mod:`policies.greedy`: ``GreedyPolicy`` (nearest evidence by embedding, no learning).
- :mod:`policies.sb3`: SB3 algorithms with the project's settings; ``SB3Policy`` wraps a model.
- :mod:`policies.config`: ``TrainConfig``.
- :mod:`policies.callbacks`: coral/ metrics, periodic validation, checkpoints.
- :mod:`policies.train`: ``train(config, resources, resume)``.
- :mod:`policies.evaluate`: ``evaluate_policy(policy, dataset, scorer, split, rounds)``, ``evaluate_run``.
- :mod:`policies.cli`: ``coral train`` and ``coral evaluate``.

Warm-start glue (CTR embeddings or random ones) lives with the environment, in
:mod:`envs.resources`, because the environment's observations are those embeddings.
"""
