"""The evidence index: nearest-neighbour retrieval of collaborative evidence, and the leakage guard.

Every piece of evidence that reaches a prompt leaves this module through
:meth:`EvidenceIndex.take`, which passes it through :meth:`LeakageGuard.check`: the one place
where the rule "the target interaction and every validation/test interaction are never
retrieved" is enforced. The pool is the training split; the guard checks each retrieved
interaction against the held-out keys and the current target at retrieval time anyway, so a
wrong pool (or a bug in the masking) raises instead of leaking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coral.data.dataset import CoralDataset, Interactions
from coral.errors import CoralError
from coral.evidence import Evidence


class LeakageError(CoralError):
    """A retrieval tried to use the target interaction or a validation/test interaction."""


class EmbeddingTables(Protocol):
    """User and item embeddings, e.g. ``coral.baselines.warm_start_embeddings``'s result."""

    user: np.ndarray
    """(n_users, d) float32."""
    item: np.ndarray
    """(n_items, d) float32."""


@dataclass(frozen=True)
class RandomEmbeddings:
    """Plain user and item tables: random ones (the "w/o init" ablation, :func:`random_embeddings`) or rescaled ones
    (:func:`unit_rms_tables`)."""

    user: np.ndarray
    """(n_users, d) float32."""
    item: np.ndarray
    """(n_items, d) float32."""


def tables_fingerprint(tables: EmbeddingTables) -> str:
    """A short hash of the user and item tables' values: two retrieval methods that report the same
    fingerprint searched the very same warm start."""
    digest = hashlib.sha256()
    for table in (tables.user, tables.item):
        array = np.ascontiguousarray(table, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def random_embeddings(dataset: CoralDataset, dim: int = 128, seed: int = 0) -> RandomEmbeddings:
    """Standard-normal user and item embeddings scaled by 1/sqrt(dim), seeded.

    :param dataset: gives the number of users and items.
    :param dim: embedding size.
    :param seed: seed of the draw.
    """
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(dim)
    user = (rng.standard_normal((dataset.n_users, dim)) * scale).astype(np.float32)
    item = (rng.standard_normal((dataset.n_items, dim)) * scale).astype(np.float32)
    return RandomEmbeddings(user=user, item=item)


def unit_rms_tables(tables: EmbeddingTables) -> RandomEmbeddings:
    """The user table and the item table, each scaled (as a whole) to unit RMS row norm.

    Nearest-neighbour search over [user, item] vectors weighs the two halves by their lengths:
    with a CTR model's raw tables the user rows can be much longer than the item rows (about 1.5x
    for DeepFM on MovieLens), and the nearest interaction to a target pair is then almost always
    one of the target user's own (96% "same user, nearest item"). At equal RMS norms the search
    mixes other users' ratings of the target item and the target user's ratings of similar items.
    A scale per table keeps every distance ranking within one table as it was.

    :param tables: user and item tables (an all-zero table is left as it is).
    """

    def scaled(table: np.ndarray) -> np.ndarray:
        table = np.asarray(table, dtype=np.float32)
        rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", table, table, dtype=np.float64)))) if len(table) else 0.0
        return table / np.float32(rms) if rms > 0 else table.copy()

    return RandomEmbeddings(user=scaled(tables.user), item=scaled(tables.item))


class LeakageGuard:
    """Refuses evidence that is the target interaction or a validation/test interaction.

    :param dataset: gives ``heldout_keys`` (keys ``user * n_items + item`` of valid and test).
    """

    def __init__(self, dataset: CoralDataset) -> None:
        self.n_items = int(dataset.n_items)
        self.heldout_keys = np.asarray(dataset.heldout_keys, dtype=np.int64)

    def check(self, evidence: Evidence, target_user: int, target_item: int) -> None:
        """Raise :class:`LeakageError` if ``evidence`` may not be shown for this target.

        :param evidence: the interaction about to be retrieved.
        :param target_user: the episode's user.
        :param target_item: the episode's item.
        """
        if evidence.user == target_user and evidence.item == target_item:
            raise LeakageError(f"refused to retrieve the target interaction (user {target_user}, item {target_item})")
        key = int(evidence.user) * self.n_items + int(evidence.item)
        pos = int(np.searchsorted(self.heldout_keys, key))
        if pos < len(self.heldout_keys) and self.heldout_keys[pos] == key:
            raise LeakageError(
                f"refused to retrieve a validation/test interaction (user {evidence.user}, item {evidence.item})"
            )


class EvidenceIndex:
    """Training interactions with their embeddings, searchable by Euclidean distance.

    An interaction's vector is the concatenation [user embedding, item embedding], so the
    nearest observed interaction to a query [a_u, a_i] minimises |a_u - e_u|^2 + |a_i - e_i|^2.

    :param dataset: the dataset (held-out keys, sizes).
    :param embeddings: user and item embedding tables.
    :param pool: the interactions that may be retrieved; the training split when omitted
        (anything else is for tests of the guard).
    """

    def __init__(self, dataset: CoralDataset, embeddings: EmbeddingTables, pool: Interactions | None = None) -> None:
        self.user_emb = np.ascontiguousarray(embeddings.user, dtype=np.float32)
        self.item_emb = np.ascontiguousarray(embeddings.item, dtype=np.float32)
        if self.user_emb.shape[0] != dataset.n_users or self.item_emb.shape[0] != dataset.n_items:
            raise CoralError(
                f"embeddings have {self.user_emb.shape[0]} users and {self.item_emb.shape[0]} items; "
                f"dataset {dataset.name!r} has {dataset.n_users} and {dataset.n_items}"
            )
        if self.user_emb.shape[1] != self.item_emb.shape[1]:
            raise CoralError(
                f"user and item embeddings differ in size: {self.user_emb.shape[1]} vs {self.item_emb.shape[1]}"
            )
        self.dim = int(self.user_emb.shape[1])
        self.n_items = int(dataset.n_items)
        self.pool = dataset.train if pool is None else pool
        self.guard = LeakageGuard(dataset)
        self.vectors = np.concatenate([self.user_emb[self.pool.user], self.item_emb[self.pool.item]], axis=1)
        self._vectors64 = self.vectors.astype(np.float64)
        self._vectors64_torch = None
        self._sq_norms = np.einsum("ij,ij->i", self.vectors, self.vectors, dtype=np.float64)
        keys = self.pool.keys(self.n_items)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        self._user_sq = np.einsum("ij,ij->i", self.user_emb, self.user_emb, dtype=np.float64)
        self._item_sq = np.einsum("ij,ij->i", self.item_emb, self.item_emb, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.pool)

    def row_of(self, user: int, item: int) -> int:
        """The pool row of the interaction (user, item), or -1 if it is not in the pool."""
        key = int(user) * self.n_items + int(item)
        pos = int(np.searchsorted(self._sorted_keys, key))
        if pos < len(self._sorted_keys) and self._sorted_keys[pos] == key:
            return int(self._key_order[pos])
        return -1

    def distances(self, query: np.ndarray) -> np.ndarray:
        """Squared Euclidean distances from ``query`` (2d,) to every pool interaction (len(pool),), or
        from each row of ``query`` (B, 2d) (B, len(pool)).

        In float64, so that a query's distances alone and in a batch (a matrix-vector vs a matrix
        product, summed in other orders, by numpy or by :meth:`distances_batch`) differ by ~1e-14
        relative, not float32's ~1e-7: its nearest row is the same unless two rows are that close.
        """
        q = np.asarray(query, dtype=np.float64)
        return self._finish(q @ self._vectors64.T, q)

    def distances_batch(self, queries: np.ndarray) -> np.ndarray:
        """:meth:`distances` of a (B, 2d) batch, with the product in torch (imported here: callers
        that batch have it loaded already). numpy's BLAS, held to one thread in scoring processes
        (:mod:`coral.llm.hf`), packed the whole index for every product: 36 ms per batch of 16
        queries in the environment loop, ~15% of a step; torch's takes a third of that."""
        import torch

        q = np.asarray(queries, dtype=np.float64)
        if self._vectors64_torch is None:
            self._vectors64_torch = torch.from_numpy(self._vectors64)  # shares the memory
        return self._finish((torch.from_numpy(q) @ self._vectors64_torch.T).numpy(), q)

    def _finish(self, dots: np.ndarray, q: np.ndarray) -> np.ndarray:
        """|v|^2 - 2 q.v + |q|^2 from the products, in place: each temporary of this size was a
        fresh allocation, and half the time."""
        dots *= -2.0
        dots += self._sq_norms
        dots += np.einsum("...j,...j->...", q, q)[..., None]
        return dots

    def nearest_rows(
        self, query: np.ndarray, excluded: np.ndarray, k: int = 1, distances: np.ndarray | None = None
    ) -> np.ndarray:
        """The ``k`` pool rows nearest to ``query``, nearest first, skipping ``excluded`` rows.

        Ties are broken by the lower row index, so results are deterministic.

        :param query: (2d,) concatenated [user, item] query.
        :param excluded: (len(pool),) bool mask of rows that may not be returned.
        :param k: how many rows (fewer when fewer are allowed).
        :param distances: ``distances(query)`` when already computed (a batch of queries in one product).
        """
        dist = np.where(excluded, np.inf, self.distances(query) if distances is None else distances)
        k = min(k, int((~excluded).sum()))
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        part = np.argpartition(dist, k - 1)[:k] if k < len(dist) else np.arange(len(dist))
        order = np.lexsort((part, dist[part]))
        return part[order].astype(np.int64)

    def nearest_user(self, query: np.ndarray) -> int:
        """The user whose embedding is nearest to ``query`` (d,)."""
        q = np.asarray(query, dtype=np.float32)
        return int(np.argmin(self._user_sq - 2.0 * (self.user_emb @ q).astype(np.float64)))

    def nearest_item(self, query: np.ndarray) -> int:
        """The item whose embedding is nearest to ``query`` (d,)."""
        q = np.asarray(query, dtype=np.float32)
        return int(np.argmin(self._item_sq - 2.0 * (self.item_emb @ q).astype(np.float64)))

    def take(self, row: int, target_user: int, target_item: int) -> Evidence:
        """The evidence at pool ``row`` for this target, checked by the leakage guard.

        :raises LeakageError: if it is the target interaction or a validation/test interaction.
        """
        ev = Evidence(int(self.pool.user[row]), int(self.pool.item[row]), int(self.pool.label[row]))
        self.guard.check(ev, target_user, target_item)
        return ev

    def pair_vector(self, user: int, item: int) -> np.ndarray:
        """The concatenated [user, item] embedding of a pair (2d,)."""
        return np.concatenate([self.user_emb[user], self.item_emb[item]])
