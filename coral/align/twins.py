"""Input twins: plain models given the numbers an LLM scorer is given, as their own result rows.

The rule (issue 27): every input that the LLM gets as a number or an embedding is also given to a
plain non-LLM model, so that a table says what the LLM adds over its inputs. A twin is a logistic
regression (standardised inputs) on some of:

- ``rates``: the base rates the prompt option ``base_rates`` writes (the user's and the item's liked
  share in whole percent and their counts, :func:`coral.baselines.rates.base_rate_features`);
- ``cf``: the warm-start user and item embeddings that soft tokens are computed from
  ([e_u, e_i, e_u * e_i] of the unit-RMS tables, :mod:`coral.llm.soft_tokens`);
- ``share``: the liked share of the ``k`` nearest evidence pieces (what the greedy retrieval shows,
  :func:`coral.retrieval.like_share.like_share_scores`).

It is fitted on the targets of the alignment: the ``align`` fold of tail-train (the rows the warm
start never saw), with every count left-one-out and every evidence piece through the leakage guard,
so that a training target looks to the twin as a validation or test pair does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from coral.data.dataset import CoralDataset, Interactions
from coral.errors import CoralError

#: The inputs a twin can be given, in the order of its features.
TWIN_INPUTS = ("rates", "cf", "share")
#: The L2 strengths (inverse, C) that ``c=None`` chooses among by 5-fold cross-validated AUC on the twin's own targets.
C_GRID = tuple(float(c) for c in np.logspace(-6, 2, 9))
_INPUT_NAMES = {"rates": "base rates", "cf": "CF embeddings", "share": "like-share"}


def twin_name(inputs: Sequence[str], k: int | None = 5) -> str:
    """The result-row name of a twin, e.g. ``LR(base rates + like-share@5)`` (``k`` None: ``like-share``)."""
    return (
        "LR("
        + " + ".join(_INPUT_NAMES[name] + (f"@{k}" if name == "share" and k is not None else "") for name in inputs)
        + ")"
    )


def twin_inputs(
    dataset: CoralDataset,
    index: Any,
    users: np.ndarray,
    items: np.ndarray,
    inputs: Sequence[str] = TWIN_INPUTS,
    k: int = 5,
) -> dict[str, np.ndarray]:
    """Each input's (n, features) block for the pairs (compute them once for several twins).

    :param index: the evidence index; its (unit-RMS) tables are the CF embeddings.
    :param inputs: a subset of :data:`TWIN_INPUTS`.
    """
    from coral.baselines.rates import LikeCounts, base_rate_features
    from coral.retrieval.like_share import like_share_scores

    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    blocks = {}
    for name in inputs:
        if name == "rates":
            blocks[name] = base_rate_features(LikeCounts.of(dataset).pairs(users, items))
        elif name == "cf":
            eu, ei = index.user_emb[users], index.item_emb[items]
            blocks[name] = np.concatenate([eu, ei, eu * ei], axis=1)
        elif name == "share":
            blocks[name] = like_share_scores(index, users, items, k)[k][:, None]
        else:
            raise CoralError(f"unknown twin input {name!r}; expected a subset of {', '.join(TWIN_INPUTS)}")
    return {name: block.astype(np.float64) for name, block in blocks.items()}


@dataclass
class InputTwin:
    """A fitted twin: a logistic regression on the pairs' inputs."""

    inputs: tuple[str, ...]
    """What it reads (:data:`TWIN_INPUTS`)."""
    k: int
    """Nearest pieces of the ``share`` input."""
    model: Any
    """The fitted scikit-learn pipeline (standardisation + logistic regression)."""
    n_fit: int
    """Targets it was fitted on."""
    c: float = 1.0
    """The inverse L2 strength it was fitted with (the cross-validated choice when ``fit`` got ``c=None``)."""

    @property
    def name(self) -> str:
        return twin_name(self.inputs, self.k)

    @classmethod
    def fit(
        cls,
        dataset: CoralDataset,
        index: Any,
        rows: Interactions,
        inputs: Sequence[str],
        k: int = 5,
        c: float | None = 1.0,
        blocks: dict[str, np.ndarray] | None = None,
    ) -> "InputTwin":
        """Fit on ``rows`` (the alignment's targets: :func:`coral.data.folds.fold_interactions` of ``align``).

        :param index: the evidence index of the alignment (its tables are the soft tokens' inputs).
        :param c: inverse L2 strength of the logistic regression; None: the one of :data:`C_GRID` with the
            best 5-fold cross-validated AUC on ``rows`` (a few hundred targets and the 3 x d CF numbers
            overfit at C = 1).
        :param blocks: :func:`twin_inputs` of ``rows`` when already computed.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        inputs = tuple(inputs)
        labels = np.asarray(rows.label, dtype=np.int64)
        if len(set(labels.tolist())) < 2:
            raise CoralError(f"the twin's targets in {dataset.name!r} hold a single class")
        blocks = blocks if blocks is not None else twin_inputs(dataset, index, rows.user, rows.item, inputs, k)
        x = np.concatenate([blocks[name] for name in inputs], axis=1)
        if c is None:
            minority = int(np.bincount(labels).min())
            if minority < 2:
                raise CoralError(
                    f"the twin's {len(labels)} targets in {dataset.name!r} hold {minority} of one class: too few "
                    "to cross-validate its C"
                )
            folds = StratifiedKFold(n_splits=min(5, minority), shuffle=True, random_state=0)
            search = GridSearchCV(
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                {"logisticregression__C": list(C_GRID)},
                scoring="roc_auc",
                cv=folds,
            )
            model = search.fit(x, labels).best_estimator_
            c = float(search.best_params_["logisticregression__C"])
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, labels)
        return cls(inputs, k, model, len(labels), c)

    def predict(
        self,
        dataset: CoralDataset,
        index: Any,
        users: np.ndarray,
        items: np.ndarray,
        blocks: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """P(like) of each (user, item) pair.

        :param blocks: :func:`twin_inputs` of the pairs when already computed.
        """
        blocks = blocks if blocks is not None else twin_inputs(dataset, index, users, items, self.inputs, self.k)
        return self.model.predict_proba(np.concatenate([blocks[name] for name in self.inputs], axis=1))[:, 1]


def inputs_of(prompt: Any, k: int = 5) -> tuple[str, ...]:
    """The twin inputs matching what a scorer trained with ``prompt`` (a :class:`~coral.llm.prompt.PromptConfig`)
    is given as numbers: base rates if the prompt states them, CF embeddings if it holds soft tokens, and
    always the like-share of the ``k`` nearest pieces (the greedy evidence's labels)."""
    return (*(("rates",) if prompt.base_rates else ()), *(("cf",) if prompt.cf_tokens else ()), "share")


def twin_input_sets(prompt: Any) -> list[tuple[str, ...]]:
    """The twins ``coral run`` adds for a scorer trained with ``prompt``: each number input alone, all of
    them together (the LLM without evidence is given these), and all of them with the like-share of the
    nearest pieces (the LLM reading the greedy evidence is given these too); [] when the prompt gives the
    LLM no numbers (the like-share rows are then its twins).

    :param prompt: a :class:`~coral.llm.prompt.PromptConfig`.
    """
    numbers = inputs_of(prompt)[:-1]
    if not numbers:
        return []
    return [*((name,) for name in numbers), *((numbers,) if len(numbers) > 1 else ()), (*numbers, "share")]


def score_twins(
    dataset: CoralDataset,
    index: Any,
    targets: Interactions,
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    input_sets: Sequence[Sequence[str]],
    k: int = 5,
    c: float | None = 1.0,
) -> dict[str, dict[str, Any]]:
    """Fit one twin per input set on ``targets`` and score ``pairs``: ``{twin name: {split: P(like), "c": its C}}``.

    What ``coral run`` needs for the twin rows: with the run seed's warm start ``index``
    (:func:`coral.align.topk.evidence_index`), ``targets`` = the align fold
    (:func:`coral.data.folds.fold_interactions`), ``pairs`` = ``{"test": (users, items), "valid": (users, items)}``
    of the shared pairs, ``input_sets`` e.g. ``[("rates",), inputs_of(scorer.prompt_config)]``.

    :param pairs: split name -> (users, items).
    :param c: as :meth:`InputTwin.fit` (None: cross-validated on ``targets``).
    """
    needed = sorted({name for inputs in input_sets for name in inputs}, key=TWIN_INPUTS.index)
    fit_blocks = twin_inputs(dataset, index, targets.user, targets.item, needed, k)
    split_blocks = {
        split: twin_inputs(dataset, index, users, items, needed, k) for split, (users, items) in pairs.items()
    }
    out: dict[str, dict[str, np.ndarray]] = {}
    for inputs in input_sets:
        twin = InputTwin.fit(dataset, index, targets, inputs, k, c=c, blocks=fit_blocks)
        out[twin.name] = {
            **{
                split: twin.predict(dataset, index, *pairs[split], blocks=blocks)
                for split, blocks in split_blocks.items()
            },
            "c": twin.c,
        }
    return out


def alignment_targets(dataset: CoralDataset, directory: Any) -> Interactions:
    """The training interactions an aligned scorer (method topk) was trained on, from its ``targets.npz``:
    fitting a twin on them gives it the LLM's own training targets.

    :param directory: the alignment directory.
    """
    from pathlib import Path

    from coral.llm.aligned import TARGETS_FILE

    with np.load(Path(directory).expanduser() / TARGETS_FILE) as saved:
        wanted = set(zip(saved["train_user"].tolist(), saved["train_item"].tolist(), strict=False))
    train = dataset.train
    rows = np.flatnonzero([(int(u), int(i)) in wanted for u, i in zip(train.user, train.item, strict=False)])
    if len(rows) != len(wanted):
        raise CoralError(
            f"{directory}: {len(wanted) - len(rows)} of its targets are not training interactions of {dataset.name!r}"
        )
    return train.take(rows)
