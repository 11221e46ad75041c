"""Retrieval policies: RL (PPO, DDPG, MaskablePPO) and non-RL (random, greedy), and warm starts."""
