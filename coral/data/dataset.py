"""The processed dataset every part of coral reads: integer ids, labels, head/tail, splits.

Preprocessing follows ``shared/docs/coral-method.md`` (and coral/docs/deviations.md):
deduplicate repeated (user, item) rows keeping the latest, iterative k-core, binary labels,
head = the most popular ``head_fraction`` of items, tail interactions split train/valid/test
with a seeded permutation, every head interaction in train.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from coral.config import section
from coral.errors import DataError
from coral.io import atomic_write_json, atomic_write_npz

#: Bumped whenever preprocessing changes meaning, so that old caches are never reused.
PREPROCESS_VERSION = "1"

SPLITS = ("train", "valid", "test")


DataFormat = Literal["auto", "amazon2018", "amazon2023", "movielens100k", "movielens1m", "recbole", "csv"]
"""The source formats of :data:`coral.data.loaders.FORMATS`, and "auto" (detect from file names)."""

#: Keys of :class:`DataConfig` that say how the files are read (part of the dataset's identity).
READING_FIELDS = ("format", "sep", "user_col", "item_col", "rating_col", "timestamp_col", "title_col")
#: Fields of :class:`DataConfig` that say how the rows are preprocessed (part of the dataset's identity).
PREPROCESSING_FIELDS = ("k_core", "positive_threshold", "label_rule", "head_fraction", "split_ratios", "split_seed")


#: Spellings of the tab separator accepted on the command line and in configs.
TAB_NAMES = {"\\t": "\t", "tab": "\t"}
#: Fields of :class:`CsvColumns` that name interactions columns; no two may name the same column.
INTERACTION_COLUMNS = ("user_col", "item_col", "rating_col", "timestamp_col")


@dataclass(frozen=True)
class CsvColumns:
    """The separator and column names of a generic CSV/TSV file: the ``csv`` section of
    :class:`DataConfig` (flat: its keys and flags are ``sep``, ``user_col``, ... ``--sep``, ``--user-col``, ...).

    With every column name at its default, a file whose header has GroupLens's ``userId`` and
    ``movieId`` in place of ``user`` and ``item`` is read with those names (the ``ratings.csv``
    and ``movies.csv`` of MovieLens ml-latest, ml-latest-small, ml-25m and ml-20m).

    :raises DataError: for a separator that is not one character, an empty column name, or
        two interactions columns with the same name.
    """

    sep: str = ","
    """Field separator: one character; \\t or tab mean TSV."""
    user_col: str = "user"
    """The interactions column with the user id."""
    item_col: str = "item"
    """The interactions column with the item id (also the key column of items.csv)."""
    rating_col: str = "rating"
    """The interactions column with the rating."""
    timestamp_col: str = "timestamp"
    """The optional interactions column with a Unix timestamp."""
    title_col: str = "title"
    """The items.csv column with the item text; its other columns become categorical side features."""

    def __post_init__(self) -> None:
        from coral.config import require

        sep = TAB_NAMES.get(self.sep, self.sep)
        require(len(sep) == 1, "sep", f"must be a single character (\\t for tab), got {self.sep!r}", DataError)
        require(sep not in '"\r\n', "sep", f"must not be a quote or a line break, got {sep!r}", DataError)
        object.__setattr__(self, "sep", sep)
        for name in (*INTERACTION_COLUMNS, "title_col"):
            require(
                bool(getattr(self, name).strip()), name, f"must name a column, got {getattr(self, name)!r}", DataError
            )
            object.__setattr__(self, name, getattr(self, name).strip())  # header names are read stripped too
        for j, first in enumerate(INTERACTION_COLUMNS):
            for second in INTERACTION_COLUMNS[j + 1 :]:
                value = getattr(self, second)
                require(
                    getattr(self, first) != value, second,
                    f"must differ from the {first.removesuffix('_col')} column, both are {value!r}", DataError,
                )
        require(
            self.title_col != self.item_col, "title_col",
            f"must differ from the item column, both are {self.item_col!r}", DataError,
        )


@dataclass(frozen=True)
class DataConfig:
    """The data section of every command: which dataset, how its files are read, how its rows are preprocessed.

    The reading and preprocessing fields (not the name) are hashed into the dataset's fingerprint,
    which keys the on-disk cache and every result row.
    """

    dataset: str = "gift_cards"
    """Built-in name (gift_cards, movielens_small), Amazon 2018 category, ml-100k, ml-1m, or a file or directory
    path."""
    format: DataFormat = "auto"
    """Source format; auto: detect it from the file names."""
    csv: CsvColumns = section(CsvColumns, flat=True)
    """How a generic CSV/TSV file is read: separator and column names (keys sep, user_col, ...)."""
    encoding: str = "utf-8"
    """Text encoding of the files (e.g. latin-1, cp1252 for older exports); bytes that are not valid in it are an error
    naming the file and line."""
    rating_scale: tuple[float, ...] = ()
    """MIN,MAX (a negative MIN as --rating-scale=-1,10): a rating outside is an error; empty: the format's own scale
    (MovieLens and Amazon 1-5, GroupLens ratings.csv 0.5-5; any finite rating in other CSV and RecBole files)."""
    k_core: int = 5
    """Iterative k-core: drop users and items with fewer than k interactions until none remain."""
    positive_threshold: float = 3.0
    """Rating threshold for a positive ("like") label."""
    label_rule: Literal["gt", "ge"] = "gt"
    """gt: positive = rating > threshold (default); ge: the paper's literal rating >= threshold."""
    head_fraction: float = 0.2
    """Share of items, the most popular ones, that are head items; the rest are the long tail."""
    split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Train/valid/test shares of the tail interactions (all head interactions go to train)."""
    split_seed: int = 0
    """Seed of the tail split's permutation."""

    def __post_init__(self) -> None:
        from coral.config import require

        require(bool(self.dataset.strip()), "dataset", "must name a dataset or a path, got ''", DataError)
        if self.format is None:
            object.__setattr__(self, "format", "auto")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            require(
                False, "encoding",
                f"must name a text encoding Python knows (e.g. utf-8, latin-1, cp1252), got {self.encoding!r}",
                DataError,
            )
        scale = tuple(float(r) for r in self.rating_scale)
        require(
            not scale or (len(scale) == 2 and all(math.isfinite(r) for r in scale) and scale[0] < scale[1]),
            "rating_scale",
            f"must be two finite numbers MIN,MAX with MIN < MAX (or empty), got {','.join(f'{r:g}' for r in scale)}",
            DataError,
        )
        object.__setattr__(self, "rating_scale", scale)
        require(self.k_core >= 1, "k_core", f"must be >= 1, got {self.k_core}", DataError)
        require(
            math.isfinite(self.positive_threshold), "positive_threshold",
            f"must be a finite number, got {self.positive_threshold}", DataError,
        )
        require(
            self.label_rule in ("gt", "ge"), "label_rule", f"must be 'gt' or 'ge', got {self.label_rule!r}", DataError
        )
        require(
            0.0 < self.head_fraction < 1.0, "head_fraction", f"must be in (0, 1), got {self.head_fraction}", DataError
        )
        ratios = tuple(float(r) for r in self.split_ratios)
        require(
            len(ratios) == 3 and all(math.isfinite(r) and r >= 0 for r in ratios) and abs(sum(ratios) - 1.0) <= 1e-6,
            "split_ratios", f"must be three non-negative shares summing to 1, got {self.split_ratios}", DataError,
        )
        object.__setattr__(self, "split_ratios", ratios)

    def label(self, rating: np.ndarray) -> np.ndarray:
        """Binary labels (int8) for an array of ratings."""
        rating = np.asarray(rating, dtype=np.float64)
        pos = rating > self.positive_threshold if self.label_rule == "gt" else rating >= self.positive_threshold
        return pos.astype(np.int8)

    def to_dict(self) -> dict:
        """Every setting, as :func:`coral.config.from_dict` reads it back."""
        from coral.config import to_dict

        return to_dict(self)

    @property
    def hash(self) -> str:
        """A short stable hash of the reading and preprocessing fields and the preprocessing version (not the name).

        ``encoding`` counts only when it is not UTF-8, so that datasets read before the field
        existed keep their fingerprint; ``rating_scale`` only checks the data, it does not change it.
        """
        config = self.to_dict()
        fields = (
            READING_FIELDS
            + PREPROCESSING_FIELDS
            + (("encoding",) if codecs.lookup(self.encoding).name != "utf-8" else ())
        )
        blob = json.dumps({"v": PREPROCESS_VERSION, **{k: config[k] for k in fields}}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class RawData:
    """What a loader returns: one table of raw interactions plus item texts.

    Arrays are aligned row by row; ids are the source's strings.
    """

    users: np.ndarray
    """Raw user ids (str), one per interaction row."""
    items: np.ndarray
    """Raw item ids (str), one per interaction row."""
    ratings: np.ndarray
    """Ratings (float64)."""
    timestamps: np.ndarray
    """Unix timestamps (int64); 0 where the source has none."""
    item_text: dict[str, str] = field(default_factory=dict)
    """Raw item id -> short text (title). Items missing here get a fallback text."""
    item_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    """Raw item id -> categorical side features, e.g. {"brand": ..., "category": ...}."""
    source: str = ""
    """Where the data came from (file or directory), for messages."""
    files: tuple[Path, ...] = ()
    """The files read; their contents key the processed-dataset cache."""

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=str)
        self.items = np.asarray(self.items, dtype=str)
        self.ratings = np.asarray(self.ratings, dtype=np.float64)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        n = len(self.users)
        if not (len(self.items) == len(self.ratings) == len(self.timestamps) == n):
            raise DataError(f"{self.source}: interaction columns have different lengths")

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Interactions:
    """A set of (user, item, rating, label, timestamp) rows with integer ids."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    label: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    @property
    def positive_rate(self) -> float:
        return float(self.label.mean()) if len(self) else float("nan")

    def take(self, index: np.ndarray) -> "Interactions":
        """The rows at ``index`` (an integer array or a boolean mask)."""
        return Interactions(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def pairs(self) -> set[tuple[int, int]]:
        """The (user, item) pairs as a set of Python int tuples."""
        return set(zip(self.user.tolist(), self.item.tolist(), strict=False))

    def keys(self, n_items: int) -> np.ndarray:
        """One int64 key per row, ``user * n_items + item``: fast membership tests with np.isin."""
        return self.user.astype(np.int64) * int(n_items) + self.item.astype(np.int64)

    @staticmethod
    def concat(parts: list["Interactions"]) -> "Interactions":
        return Interactions(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Interactions))
        )


@dataclass
class CoralDataset:
    """A processed dataset: integer ids, item texts, head/tail items and the three splits."""

    name: str
    config: DataConfig
    user_ids: list[str]
    """Index -> raw user id."""
    item_ids: list[str]
    """Index -> raw item id."""
    item_text: list[str]
    """Index -> item text used in prompts."""
    is_head: np.ndarray
    """(n_items,) bool: True for the most popular ``head_fraction`` of items."""
    item_popularity: np.ndarray
    """(n_items,) int64: interactions per item after k-core (all splits)."""
    train: Interactions
    valid: Interactions
    test: Interactions
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    """Optional categorical side features: name -> (n_items,) int64 codes, 0 = unknown."""
    source_hash: str = ""
    """Hash of the source files' contents (or of the in-memory table)."""
    notices: list[str] = field(default_factory=list)
    """What preprocessing chose without being told (e.g. which of conflicting duplicate rows it kept):
    warned on the first load, kept in the cache and warned again on every later load."""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def fingerprint(self) -> str:
        """Identity of this processed dataset: source contents + config."""
        return hashlib.sha256(f"{self.source_hash}:{self.config.hash}".encode()).hexdigest()[:12]

    def split(self, name: str) -> Interactions:
        """The split called ``name`` (train, valid, test, or tail_train: train rows on tail items)."""
        if name == "tail_train":
            return self.tail_train
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of train, valid, test, tail_train")
        return getattr(self, name)

    def require_both_classes(self, *splits: str) -> None:
        """Refuse a split whose labels are all one class: AUC is undefined on it and a model cannot learn from it.

        :param splits: split names (train, valid, test, tail_train).
        :raises DataError: naming the dataset, the split and its labels.
        """
        for name in splits:
            labels = self.split(name).label
            positives = int(labels.sum())
            if len(labels) and 0 < positives < len(labels):
                continue
            which = "all positive" if positives else "all negative"
            raise DataError(
                f"{self.name}: the {name} split has a single class ({which}: {positives} of {len(labels)} labels are "
                "1); "
                "AUC is undefined - change --positive-threshold/--label-rule"
            )

    @cached_property
    def tail_train(self) -> Interactions:
        """Training interactions on tail items: where retrieval episodes are drawn for training."""
        return self.train.take(~self.is_head[self.train.item])

    @cached_property
    def heldout_keys(self) -> np.ndarray:
        """Sorted keys (``user * n_items + item``) of every validation and test interaction."""
        return np.unique(np.concatenate([self.valid.keys(self.n_items), self.test.keys(self.n_items)]))

    @cached_property
    def _history_index(self) -> tuple[np.ndarray, np.ndarray]:
        # CSR over training rows sorted by (user, timestamp): order, offsets.
        order = np.lexsort((self.train.timestamp, self.train.user))
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.add.at(offsets, self.train.user + 1, 1)
        return order, np.cumsum(offsets)

    def history(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's training interactions in time order (oldest first): (items, labels)."""
        order, offsets = self._history_index
        rows = order[offsets[user] : offsets[user + 1]]
        return self.train.item[rows], self.train.label[rows]

    def stats(self) -> dict:
        """Counts for ``coral data stats``."""
        n_head = int(self.is_head.sum())
        total = sum(len(self.split(s)) for s in SPLITS)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": total,
            "head_items": n_head,
            "tail_items": self.n_items - n_head,
            "positive_rate": float(np.concatenate([self.split(s).label for s in SPLITS]).mean()),
            "splits": {
                s: {"interactions": len(self.split(s)), "positive_rate": self.split(s).positive_rate} for s in SPLITS
            },
            "config": self.config.to_dict(),
            "fingerprint": self.fingerprint,
        }

    # ---- on-disk cache -------------------------------------------------------------------
    def fallback_text_warnings(self) -> list[str]:
        """The warnings that loading this dataset prints: items that have only the fallback text."""
        missing = sum(
            text == fallback_item_text(raw_id) for text, raw_id in zip(self.item_text, self.item_ids, strict=False)
        )
        if not missing:
            return []
        return [f"{self.name}: {missing} of {self.n_items} items have no text; using the fallback 'item <id>'"]

    def save(self, directory: str | Path) -> None:
        """Write the dataset as ``arrays.npz`` + ``meta.json`` (atomic per file; meta last).

        The warnings of the first load go into ``meta.json``; :meth:`load` prints them again.
        """
        directory = Path(directory)
        arrays = {"is_head": self.is_head, "item_popularity": self.item_popularity}
        for s in SPLITS:
            for f in dataclasses.fields(Interactions):
                arrays[f"{s}.{f.name}"] = getattr(self.split(s), f.name)
        for k, v in self.item_features.items():
            arrays[f"feature.{k}"] = v
        atomic_write_npz(directory / "arrays.npz", **arrays)
        atomic_write_json(
            directory / "meta.json",
            {
                "name": self.name, "config": self.config.to_dict(), "user_ids": self.user_ids,
                "item_ids": self.item_ids, "item_text": self.item_text, "source_hash": self.source_hash,
                "preprocess_version": PREPROCESS_VERSION, "warnings": self.notices + self.fallback_text_warnings(),
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> "CoralDataset":
        """Read a dataset written by :meth:`save`, printing the warnings its first load printed."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        with np.load(directory / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
        splits = {
            s: Interactions(*(arrays[f"{s}.{f.name}"] for f in dataclasses.fields(Interactions))) for s in SPLITS
        }
        from coral.config import from_dict

        dataset = cls(
            name=meta["name"], config=from_dict(DataConfig, meta["config"], where=str(directory / "meta.json")),
            user_ids=meta["user_ids"], item_ids=meta["item_ids"], item_text=meta["item_text"],
            is_head=arrays["is_head"], item_popularity=arrays["item_popularity"],
            item_features={k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("feature.")},
            source_hash=meta["source_hash"], **splits,
        )
        # Entries written before warnings were stored: derive them from the texts.
        messages = meta.get("warnings", dataset.fallback_text_warnings())
        dataset.notices = [m for m in messages if m not in dataset.fallback_text_warnings()]
        for message in messages:
            warnings.warn(message, stacklevel=2)
        return dataset


def fallback_item_text(raw_item_id: str) -> str:
    """The deterministic text of an item that has no title or description."""
    return f"item {raw_item_id}"


def _dedup_latest(raw: RawData) -> tuple[np.ndarray, int]:
    """Row indices that keep, for each (user, item), the latest row (the last one in file order on ties).

    :returns: the kept rows, and how many (user, item) pairs had rows with different ratings.
    """
    n = len(raw)
    # Sort by (user, item, timestamp, row); the last row of each (user, item) run is the keeper.
    order = np.lexsort((np.arange(n), raw.timestamps, raw.items, raw.users))
    u, i, r = raw.users[order], raw.items[order], raw.ratings[order]
    same_pair = (u[:-1] == u[1:]) & (i[:-1] == i[1:])
    last = np.ones(n, dtype=bool)
    last[:-1] = ~same_pair
    pair = np.concatenate([[0], np.cumsum(~same_pair)])  # a number per (user, item) run
    conflicts = len(np.unique(pair[1:][same_pair & (r[:-1] != r[1:])]))
    return np.sort(order[last]), conflicts


def _k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of rows surviving iterative k-core filtering (integer-coded users/items)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_count = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        i_count = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new_keep = keep & (u_count[users] >= k) & (i_count[items] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def _source_hash(raw: RawData) -> str:
    h = hashlib.sha256()
    if raw.files:
        for path in raw.files:
            h.update(Path(path).name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    else:
        for arr in (raw.users, raw.items, raw.ratings, raw.timestamps):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(json.dumps(raw.item_text, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _core_interactions(
    raw: RawData, config: DataConfig, notices: list[str]
) -> tuple[Interactions, list[str], list[str]]:
    """Deduplicated (latest row per pair), k-core filtered, densely re-indexed and labelled rows:
    (rows, index -> raw user id, index -> raw item id).

    :param notices: receives (and warns) one line when (user, item) pairs had conflicting ratings.
    """
    keep, conflicts = _dedup_latest(raw)
    if conflicts:
        notices.append(
            f"{raw.source}: {conflicts} (user, item) pairs have several rows with different ratings; "
            "kept the latest row of each (largest timestamp, then the last in the file)"
        )
        warnings.warn(notices[-1], stacklevel=4)
    users_s, items_s = raw.users[keep], raw.items[keep]
    ratings, ts = raw.ratings[keep], raw.timestamps[keep]
    u_names, u_codes = np.unique(users_s, return_inverse=True)
    i_names, i_codes = np.unique(items_s, return_inverse=True)
    core = _k_core(u_codes, i_codes, config.k_core)
    if not core.any():
        raise DataError(
            f"{raw.source}: dataset is empty after {config.k_core}-core filtering "
            f"({len(keep)} unique (user, item) pairs before filtering)"
        )
    # Re-index the survivors densely, in sorted raw-id order (deterministic).
    u_kept, user = np.unique(u_codes[core], return_inverse=True)
    i_kept, item = np.unique(i_codes[core], return_inverse=True)
    rating, timestamp = ratings[core].astype(np.float32), ts[core]
    rows = Interactions(
        user.astype(np.int64), item.astype(np.int64), rating, config.label(rating), timestamp.astype(np.int64)
    )
    return rows, [str(x) for x in u_names[u_kept]], [str(x) for x in i_names[i_kept]]


def _head_items(item: np.ndarray, n_items: int, head_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(popularity, is_head): interactions per item, and the most popular ``head_fraction`` of items (ties: lower index
    first)."""
    popularity = np.bincount(item, minlength=n_items).astype(np.int64)
    n_head = max(1, int(round(head_fraction * n_items)))
    by_popularity = np.lexsort((np.arange(n_items), -popularity))
    is_head = np.zeros(n_items, dtype=bool)
    is_head[by_popularity[:n_head]] = True
    return popularity, is_head


def _split_rows(rows: Interactions, is_head: np.ndarray, config: DataConfig, source: str) -> dict[str, np.ndarray]:
    """Row indices of train, valid and test: tail rows split by a seeded permutation, every head row in train.

    :raises DataError: when a split comes out empty.
    """
    tail_rows = np.flatnonzero(~is_head[rows.item])
    perm = np.random.default_rng(config.split_seed).permutation(len(tail_rows))
    n_tail = len(tail_rows)
    n_train = int(round(config.split_ratios[0] * n_tail))
    n_valid = int(round(config.split_ratios[1] * n_tail))
    tail_train = tail_rows[perm[:n_train]]
    valid_rows = np.sort(tail_rows[perm[n_train : n_train + n_valid]])
    test_rows = np.sort(tail_rows[perm[n_train + n_valid :]])
    train_rows = np.sort(np.concatenate([np.flatnonzero(is_head[rows.item]), tail_train]))
    splits = {"train": train_rows, "valid": valid_rows, "test": test_rows}
    for s, chosen in splits.items():
        if len(chosen) == 0:
            raise DataError(
                f"{source}: the {s} split is empty after preprocessing ({len(rows)} interactions, {n_tail} on tail "
                "items)"
            )
    return splits


def _item_texts(raw: RawData, item_ids: list[str]) -> list[str]:
    """Each item's prompt text (its fallback when it has none, with one warning for all of them)."""
    texts, missing = [], 0
    for raw_id in item_ids:
        text = (raw.item_text.get(raw_id) or "").strip()
        if not text:
            missing += 1
            text = fallback_item_text(raw_id)
        texts.append(text)
    if missing:
        import warnings

        warnings.warn(
            f"{raw.source}: {missing} of {len(item_ids)} items have no text; using the fallback 'item <id>'",
            stacklevel=3,
        )
    return texts


def _item_features(raw: RawData, item_ids: list[str]) -> dict[str, np.ndarray]:
    """Categorical side features: name -> (n_items,) int64 codes (0 = unknown, others in sorted value order)."""
    features: dict[str, np.ndarray] = {}
    for feat in sorted({k for m in raw.item_meta.values() for k in m}):
        values = [raw.item_meta.get(raw_id, {}).get(feat) or "" for raw_id in item_ids]
        vocab = {v: j + 1 for j, v in enumerate(sorted({v for v in values if v}))}
        features[feat] = np.array([vocab.get(v, 0) for v in values], dtype=np.int64)
    return features


def build_dataset(
    raw: RawData, config: DataConfig = DataConfig(), name: str = "", source_hash: str | None = None
) -> CoralDataset:
    """Preprocess raw interactions into a :class:`CoralDataset`.

    :param raw: the loader's table.
    :param config: preprocessing knobs.
    :param name: the dataset's name in messages and result rows.
    :param source_hash: identity of the source (computed from ``raw`` when omitted).
    :raises DataError: when nothing survives k-core filtering or a split comes out empty.
    """
    name = name or raw.source
    if len(raw) == 0:
        raise DataError(f"{raw.source}: no interactions found")
    notices: list[str] = []
    all_rows, user_ids, item_ids = _core_interactions(raw, config, notices)
    popularity, is_head = _head_items(all_rows.item, len(item_ids), config.head_fraction)
    splits = _split_rows(all_rows, is_head, config, raw.source)
    return CoralDataset(
        name=name, config=config, user_ids=user_ids, item_ids=item_ids, item_text=_item_texts(raw, item_ids),
        is_head=is_head, item_popularity=popularity, item_features=_item_features(raw, item_ids),
        source_hash=source_hash if source_hash is not None else _source_hash(raw), notices=notices,
        **{s: all_rows.take(rows) for s, rows in splits.items()},
    )
