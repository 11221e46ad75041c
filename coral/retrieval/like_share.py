"""The kNN like-share: what the nearest evidence holds when it is only counted, no LLM.

For each target pair, the K observed training interactions nearest to it in the warm-start
embeddings (exactly greedy retrieval's evidence: the target itself excluded, every piece through
the leakage guard) are read only for their labels: the score after r pieces is the share of
"liked" among the first r. A distance-weighted form weighs piece j by 1 / (eps + distance_j).

It is a user-item kNN collaborative filter, and the reference any LLM that reads the same pieces
must at least match: an LLM that scores below the count of its own evidence loses information
inside the model (issue 27).
"""

from __future__ import annotations

import numpy as np

from coral.retrieval.index import EvidenceIndex

#: The score of a target before any piece (round 0): no evidence, no ranking.
NO_EVIDENCE = 0.5
#: Added to every distance before inverting it (squared distances of duplicate vectors can be 0).
_EPS = 1e-6


def nearest_evidence(index: EvidenceIndex, user: int, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` pool rows nearest to the pair (``user``, ``item``), nearest first, and their
    Euclidean distances: greedy retrieval's evidence for that target.

    :param index: the evidence index (the warm start the retrieval methods search).
    :param user: the target user.
    :param item: the target item.
    :param k: how many pieces.
    """
    query = index.pair_vector(user, item).astype(np.float64)
    distances = index.distances(query)
    excluded = np.zeros(len(index), dtype=bool)
    target = index.row_of(user, item)
    if target >= 0:
        excluded[target] = True
    rows = index.nearest_rows(query, excluded, k, distances=distances)
    for row in rows:  # every piece through the guard, as the environment takes it
        index.take(int(row), user, item)
    return rows, np.sqrt(np.maximum(distances[rows], 0.0))


def like_share_scores(
    index: EvidenceIndex, users: np.ndarray, items: np.ndarray, k: int, weighted: bool = False
) -> np.ndarray:
    """(k + 1, n) scores: after r = 0..k nearest pieces, the (distance-weighted) share of liked ones.

    Round 0 is :data:`NO_EVIDENCE` for every target; a target with fewer than k pieces keeps its
    last share.

    :param index: the evidence index.
    :param users: (n,) target users.
    :param items: (n,) target items.
    :param k: pieces (K, the evaluation's rounds).
    :param weighted: weigh each piece by 1 / (eps + its distance to the target).
    """
    out = np.full((k + 1, len(users)), NO_EVIDENCE)
    for j, (user, item) in enumerate(zip(users, items, strict=False)):
        rows, distances = nearest_evidence(index, int(user), int(item), k)
        if len(rows) == 0:
            continue
        weights = 1.0 / (_EPS + distances) if weighted else np.ones(len(rows))
        liked = index.pool.label[rows].astype(np.float64)
        shares = np.cumsum(weights * liked) / np.cumsum(weights)
        out[1 : len(rows) + 1, j] = shares
        out[len(rows) + 1 :, j] = shares[-1]
    return out


__all__ = ["NO_EVIDENCE", "like_share_scores", "nearest_evidence"]
