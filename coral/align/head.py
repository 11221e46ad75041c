"""The cheap alternative to LoRA: a logistic readout on the frozen LLM's last hidden state.

Features are the final (normalised) hidden state at the last prompt position, the same vector
:class:`coral.llm.hf.HFScorer` feeds its ``head``. A scikit-learn logistic regression on the
standardised features is fitted, and the standardisation is folded into one linear layer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from coral.align.config import AlignConfig
from coral.llm.readout import LinearReadout, last_hidden


@torch.inference_mode()
def hidden_features(model: Any, token_ids: Sequence[Sequence[int]], progress: bool = True) -> np.ndarray:
    """(n, hidden) float32: the last-position hidden state of each prompt, one forward pass each.

    :param model: the frozen causal LM.
    :param token_ids: one token-id list per prompt (the scorer's tokenisation).
    :param progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    rows = []
    for ids in tqdm(token_ids, desc="align (head features)", unit="prompt", disable=not progress):
        rows.append(last_hidden(model, torch.tensor([list(ids)], dtype=torch.long))[0].float().numpy())
    return np.stack(rows).astype(np.float32)


def fit_head(features: np.ndarray, labels: np.ndarray, config: AlignConfig) -> LinearReadout:
    """A :class:`LinearReadout` fitted by L2-regularised logistic regression.

    :param features: (n, hidden) from :func:`hidden_features`.
    :param labels: (n,) 0/1.
    :param config: ``head_c`` is the inverse L2 strength; ``balance="weight"`` uses balanced class weights.
    """
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    clf = LogisticRegression(
        C=config.head_c,
        class_weight="balanced" if config.balance == "weight" else None,
        max_iter=2000,
        random_state=config.seed,
    )
    clf.fit((features - mean) / scale, np.asarray(labels, dtype=np.int64))
    # w.(x - m)/s + b = (w/s).x + (b - w.(m/s))
    coef = clf.coef_[0] / scale
    bias = float(clf.intercept_[0] - coef @ mean)
    head = LinearReadout(features.shape[1])
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(coef.astype(np.float32)).reshape(1, -1))
        head.linear.bias.fill_(bias)
    return head.eval()
