"""Top-k decoder-layer fine-tuning on a cached frozen trunk: a scorer that reads the evidence.

The recipe (issue 13; research figures in experiments/notes/align.md):

- **Targets** come from the ``align`` fold of tail-train (:mod:`coral.data.folds`), never from the
  warm start's fold, the RL episodes' fold, validation or test.
- **Evidence** for a target: its 5 nearest observed training interactions in the warm-start
  tables (the warm start fitted on head + its own fold, both tables scaled to unit RMS row norm so
  that "raters of this item" and "this user's similar items" compete evenly) and 3 random ones,
  all through the evidence index's leakage guard. Each target becomes one token tree
  (:mod:`coral.align.tree`): the prompt without evidence, and every prompt with 1..5 nearest and
  1..3 random pieces, all labelled with the target's label.
- **Model**: the first ``topk_trunk`` decoder layers stay frozen, their output is computed once per
  tree and cached; the next ``topk_layers`` layers and the final norm are trained; every layer
  above is dropped, so the scorer is a shorter LLM (cheaper to train and to score). The readout is
  the model's own Yes/No logits, exactly as :class:`coral.llm.hf.HFScorer` reads them.
- **Early stopping** on a small validation slice (the mean AUC over 0..5 nearest pieces), never on
  test pairs.

The saved file holds only the trained layers and the norm; :func:`coral.llm.aligned.load_aligned_model`
puts them into the base model and cuts it, and the usual HFScorer scores with it.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from coral.align.tree import FrozenLayer, PromptTree, additive_mask, build_tree, run_layers
from coral.data.dataset import CoralDataset, Interactions
from coral.evidence import Evidence
from coral.llm.bf16 import shared_bf16_weights

#: Pieces of each kind in a training tree (nearest neighbours, random).
TRAIN_NEAREST, TRAIN_RANDOM = 5, 3
#: Nearest-neighbour pieces in an early-stopping tree.
STOP_NEAREST = 5


def unit_rms(table: np.ndarray) -> np.ndarray:
    """``table`` scaled to unit root-mean-square row norm (user and item distances then weigh alike)."""
    table = np.asarray(table, dtype=np.float64)
    return (table / max(np.sqrt((table**2).sum(1).mean()), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class TreeSource:
    """What a target's tree is built from: the target, its label and its evidence branches."""

    user: int
    item: int
    label: int
    branches: dict[str, tuple[Evidence, ...]]


class TreeBuilder:
    """Turns targets with evidence into token trees in the scorer's own tokenisation.

    :param builder: the prompt builder (the "shared" order: [instructions][target block][line]...[tail]).
    :param tokenizer: the LLM's tokenizer.
    """

    def __init__(self, builder: Any, tokenizer: Any) -> None:
        self.builder = builder
        self.tokenizer = tokenizer
        probe = tokenizer("a").input_ids
        bos = tokenizer.bos_token_id
        # As HFScorer: BOS first only if the tokenizer adds one itself.
        self.bos = [int(bos)] if bos is not None and probe and probe[0] == bos else []

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def tree(self, source: TreeSource) -> PromptTree:
        """The tree of one target: segments tokenised separately, as the scorer does."""
        empty = self.builder.build(source.user, source.item, ())
        prefix = self.bos + [t for s in empty.segments[:-1] for t in self._ids(s)]
        branches = {}
        for name, branch in source.branches.items():
            # Each branch is its own prompt (a line may depend on the pieces before it in its branch: the tally).
            whole = self.builder.build(source.user, source.item, branch)  # checks leakage of every piece
            lines = whole.segments[len(whole.segments) - len(branch) - 1 : -1]
            branches[name] = [self._ids(line) for line in lines]
        return build_tree(prefix, branches, self._ids(empty.segments[-1]))


@dataclass
class TrunkCache:
    """Trees and the frozen trunk's output on each (float16, one (T, d) block per tree)."""

    trees: list[PromptTree]
    hidden: list[np.ndarray]
    """Per tree, (T, d) outputs of the frozen layers."""
    labels: np.ndarray
    seconds: float
    """CPU seconds spent in the trunk."""
    pairs: np.ndarray | None = None
    """(n_trees, 2) user and item of each tree: what soft tokens are computed from (set when the head has them)."""

    @property
    def tokens(self) -> int:
        return int(sum(len(t.ids) for t in self.trees))


@torch.inference_mode()
def compute_trunk(
    model: Any, trees: Sequence[PromptTree], labels: Sequence[int], depth: int, progress: bool = False,
    store: Any = np.float16, dtype: torch.dtype = torch.float32,
) -> TrunkCache:
    """Run the embedding and decoder layers [0, depth) over every tree; keep their output.

    :param model: the frozen causal LM (fp32).
    :param depth: number of frozen layers.
    :param store: dtype the outputs are kept in (float16 halves the memory; the research measured
        no difference in the trained scorer, and the saved scorer recomputes the trunk in fp32).
    :param dtype: the linear layers' products: torch.float32 (bitwise the layers' own output) or
        torch.bfloat16 (bf16 linears with fp32 accumulation, as the bfloat16 scoring precision).
    """
    from tqdm.auto import tqdm

    layers = [FrozenLayer(layer, dtype) for layer in list(model.model.layers)[:depth]]
    hidden = []
    start = time.process_time()
    for tree in tqdm(trees, desc="trunk", unit="tree", disable=not progress, mininterval=10):
        h = model.model.embed_tokens(torch.tensor([tree.ids]))
        hidden.append(run_layers(model, layers, h, tree)[0].numpy().astype(store))
    return TrunkCache(list(trees), hidden, np.asarray(labels, dtype=np.int64), time.process_time() - start)


class TopKHead(torch.nn.Module):
    """Trainable copies of decoder layers [depth, depth + k), the final norm, the Yes/No output rows.

    :param model: the loaded LLM (not modified: the trained layers are copies).
    :param depth: frozen layers below (the trunk cache's depth).
    :param k: trained layers.
    :param yes_ids: token ids of the positive label's variants.
    :param no_ids: token ids of the negative label's variants.
    :param dtype: the trained layers' products: torch.float32, or torch.bfloat16 (fp32 weights,
        bf16 products with fp32 accumulation: :class:`coral.llm.bf16.Bf16ComputeLinear`).
    :param cf: a soft-token projection (:mod:`coral.llm.soft_tokens`), trained with the layers; its
        vectors are added at the input of the first trained layer, at the ``marker_id`` placeholders.
    :param marker_id: token id of the soft tokens' placeholder.
    """

    def __init__(
        self, model: Any, depth: int, k: int, yes_ids: Sequence[int], no_ids: Sequence[int],
        dtype: torch.dtype = torch.float32, cf: Any = None, marker_id: int = -1,
    ) -> None:
        super().__init__()
        # The rotary embedding and the config only: kept outside the module tree, so that the base
        # model's weights are neither parameters of the head nor handed to the optimiser.
        object.__setattr__(self, "model", model)
        self.depth, self.k = depth, k
        self.layers = torch.nn.ModuleList(copy.deepcopy(list(model.model.layers)[depth : depth + k])).float()
        self.norm = copy.deepcopy(model.model.norm).float()
        weight = model.get_output_embeddings().weight.detach().float()
        self.register_buffer("w_yes", weight[list(yes_ids)].clone())
        self.register_buffer("w_no", weight[list(no_ids)].clone())
        for p in self.layers.parameters():
            p.requires_grad_(True)
        for p in self.norm.parameters():
            p.requires_grad_(True)
        if dtype == torch.bfloat16:
            from coral.llm.bf16 import compute_linears_in_bf16

            compute_linears_in_bf16(self.layers)
        self.cf, self.marker_id = cf, int(marker_id)

    def forward(
        self, hidden: np.ndarray, tree: PromptTree, mask: torch.Tensor | None = None, pair: Sequence[int] | None = None,
        soft_tokens: bool = True,
    ) -> torch.Tensor:
        """Yes-vs-No logits (one per scored prompt of ``tree``) from its cached trunk output.

        :param pair: the tree's (user, item), for the soft tokens.
        :param soft_tokens: add the soft tokens (False: the placeholders stay plain text; CF-token dropout in training).
        """
        h = torch.from_numpy(hidden.astype(np.float32))[None]
        if self.cf is not None and soft_tokens:
            from coral.llm.soft_tokens import marker_positions

            if pair is None:
                raise ValueError("a head with soft tokens needs each tree's (user, item)")
            (positions,) = marker_positions(torch.tensor([tree.ids]), self.marker_id, self.cf.n_tokens)
            h = h.index_add(1, positions, self.cf([pair[0]], [pair[1]])) if len(positions) else h
        # The last trained layer runs only at the read positions (the rows of tree.outputs).
        h = run_layers(self.model, list(self.layers), h, tree, mask, rows=torch.tensor([o[0] for o in tree.outputs]))
        z = self.norm(h[0])
        return torch.logsumexp(z @ self.w_yes.T, -1) - torch.logsumexp(z @ self.w_no.T, -1)

    def state_for_model(self) -> dict[str, torch.Tensor]:
        """The trained weights keyed as in the full model (``model.layers.<j>...``, ``model.norm...``)."""
        out = {}
        for name, value in self.layers.state_dict().items():
            j, rest = name.split(".", 1)
            out[f"model.layers.{self.depth + int(j)}.{rest}"] = value.detach().contiguous().clone()
        out.update({f"model.norm.{n}": v.detach().contiguous().clone() for n, v in self.norm.state_dict().items()})
        return out

    def load_state_for_model(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights keyed as :meth:`state_for_model` writes them (a saved ``topk.safetensors``)."""
        layers = {}
        for name, value in state.items():
            if name.startswith("model.layers."):
                j, rest = name.removeprefix("model.layers.").split(".", 1)
                layers[f"{int(j) - self.depth}.{rest}"] = value
        self.layers.load_state_dict(layers)
        self.norm.load_state_dict(
            {n.removeprefix("model.norm."): v for n, v in state.items() if n.startswith("model.norm.")}
        )


@torch.no_grad()
def predict(head: TopKHead, cache: TrunkCache) -> dict[tuple[str, int], np.ndarray]:
    """P(Yes) of every scored prompt: (branch, pieces) -> (n_trees,) array (NaN where a tree lacks it)."""
    head.eval()
    out: dict[tuple[str, int], np.ndarray] = {}
    for r, (tree, hidden) in enumerate(zip(cache.trees, cache.hidden, strict=False)):
        p = torch.sigmoid(head(hidden, tree, pair=None if cache.pairs is None else cache.pairs[r])).numpy()
        for (_, name, k), value in zip(tree.outputs, p, strict=False):
            out.setdefault((name, k), np.full(len(cache.trees), np.nan))[r] = value
    return out


@dataclass
class TrainLog:
    """What training did."""

    steps: int = 0
    cpu_seconds: float = 0.0
    best_step: int = 0
    best_score: float = -np.inf
    checks: list[dict] | None = None


def train_topk(
    head: TopKHead, cache: TrunkCache, score_stop: Callable[[TopKHead], float], *, lr: float, epochs: int,
    trees_per_step: int, seed: int, checks_per_epoch: int = 2, cf_lr: float | None = None, cf_dropout: float = 0.0,
    schedule_epochs: int = 0, share_bf16_weights: bool = True, log: Callable[[dict], None] = lambda row: None,
) -> TrainLog:
    """Fine-tune ``head`` on the cached trees (every prompt of a tree carries the tree's label) with
    AdamW (10% linear warm-up, linear decay to 10%), keeping the weights of the best ``score_stop``.

    :param score_stop: higher is better (the early-stopping slice's score); checked ``checks_per_epoch`` times an epoch.
    :param cf_lr: peak learning rate of the head's soft-token projection (default ``lr``).
    :param cf_dropout: the share of trees per epoch trained without their soft tokens (``AlignConfig.cf_dropout``).
    :param schedule_epochs: the learning-rate schedule's length in epochs (0 = ``epochs``); a longer schedule is
        followed for its first ``epochs`` epochs, step for step (``AlignConfig.topk_schedule_epochs``).
    :param share_bf16_weights: round bf16-computed weights once per step, not once per tree
        (:func:`coral.llm.bf16.shared_bf16_weights`; the same result, bitwise).
    """
    cf_params = [p for p in head.cf.parameters() if p.requires_grad] if head.cf is not None else []
    groups = [
        {"params": [p for n, p in head.named_parameters() if p.requires_grad and not n.startswith("cf.")], "peak": lr}
    ]
    if cf_params:
        groups.append({"params": cf_params, "peak": cf_lr or lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    steps_per_epoch = -(-len(cache.trees) // trees_per_step)
    total = steps_per_epoch * max(epochs, schedule_epochs)
    warm = max(1, total // 10)
    check_every = max(1, steps_per_epoch // max(1, checks_per_epoch))
    state = TrainLog(checks=[])
    best = {n: p.detach().clone() for n, p in head.named_parameters() if p.requires_grad}
    masks = [additive_mask(tree.attention_mask()) for tree in cache.trees]
    t0 = time.process_time()

    def check(epoch: int, loss: float) -> None:
        score = score_stop(head)
        row = {
            "step": state.steps, "epoch": epoch, "train_loss": round(loss, 5), "stop_score": round(score, 5),
            "cpu_s": round(time.process_time() - t0, 1),
        }
        state.checks.append(row)
        log(row)
        if score > state.best_score:
            state.best_score, state.best_step = score, state.steps
            for n, p in head.named_parameters():
                if p.requires_grad:
                    best[n] = p.detach().clone()

    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(cache.trees))
        # Its own generator, so that the order (and everything else) is the same with and without dropout.
        dropped = np.random.default_rng([seed, epoch, 1]).random(len(cache.trees)) < cf_dropout
        losses: list[float] = []
        for b in range(0, len(order), trees_per_step):
            head.train()
            s = state.steps
            for group in opt.param_groups:
                group["lr"] = group["peak"] * (
                    (s + 1) / warm if s < warm else max(0.1, 1 - (s - warm) / max(1, total - warm))
                )
            opt.zero_grad(set_to_none=True)
            chunk = order[b : b + trees_per_step]
            with shared_bf16_weights(head) if share_bf16_weights else nullcontext(False) as shared:
                for j in chunk:
                    z = head(
                        cache.hidden[j], cache.trees[j], masks[j], None if cache.pairs is None else cache.pairs[j],
                        soft_tokens=not dropped[j],
                    )
                    loss = F.binary_cross_entropy_with_logits(z, torch.full_like(z, float(cache.labels[j])))
                    (loss / len(chunk)).backward(retain_graph=shared)
                    losses.append(loss.item())
            opt.step()
            state.steps += 1
            last_of_epoch = b + trees_per_step >= len(order)
            if last_of_epoch or state.steps % check_every == 0:
                check(epoch, float(np.mean(losses[-check_every * trees_per_step :])))
    with torch.no_grad():
        for n, p in head.named_parameters():
            if p.requires_grad:
                p.copy_(best[n])
    state.cpu_seconds = time.process_time() - t0
    return state


def stop_score(y: np.ndarray, predictions: dict[tuple[str, int], np.ndarray]) -> float:
    """Mean validation AUC over 0..5 nearest-neighbour pieces: rewards a scorer that is good with
    and without evidence, so early stopping cannot prefer one that ignores it."""
    from sklearn.metrics import roc_auc_score

    keys = [("none", 0)] + [("nearest", k) for k in range(1, STOP_NEAREST + 1)]
    return float(np.mean([roc_auc_score(y, predictions[key]) for key in keys if key in predictions]))


def nearest_and_random(
    index: Any, user: int, item: int, n_nearest: int, n_random: int, rng: np.random.Generator,
    distances: np.ndarray | None = None,
) -> dict[str, tuple[Evidence, ...]]:
    """Evidence branches of a target: ``n_nearest`` nearest observed interactions to the pair
    [e_u, e_i] (the greedy policy) and ``n_random`` uniform ones, through the leakage guard.

    :param index: a :class:`coral.retrieval.EvidenceIndex`.
    :param distances: the pair's distances to every index row, when computed in a batch (:func:`tree_sources`).
    """
    target = index.row_of(user, item)
    excluded = np.zeros(len(index), dtype=bool)
    if target >= 0:
        excluded[target] = True
    nearest = index.nearest_rows(index.pair_vector(user, item), excluded, n_nearest, distances=distances)
    branches = {"nearest": tuple(index.take(int(r), user, item) for r in nearest)}
    if n_random:
        rows = rng.choice(len(index), size=n_random + 1, replace=False)
        branches["random"] = tuple(index.take(int(r), user, item) for r in rows[rows != target][:n_random])
    return branches


#: Targets whose distances to the index are computed in one product (:func:`tree_sources`).
DISTANCE_BATCH = 64


def pick_targets(rows: Interactions, n: int, seed: int) -> np.ndarray:
    """``n`` row indices of ``rows`` (all when fewer), drawn with a seeded permutation."""
    return (
        np.sort(np.random.default_rng([seed, 5]).permutation(len(rows))[:n]) if n < len(rows) else np.arange(len(rows))
    )


def tree_sources(
    rows: Interactions, picked: np.ndarray, index: Any, n_nearest: int, n_random: int, seed: int
) -> list[TreeSource]:
    """One :class:`TreeSource` per picked row of ``rows``.

    The targets' distances to the index are computed :data:`DISTANCE_BATCH` at a time in one
    float64 product (:meth:`~coral.retrieval.EvidenceIndex.distances_batch`): one target at a time,
    each read the whole index (81k rows on movielens_small) on one core, 14 ms a target, 11 s of
    the default alignment. float64 keeps each target's nearest rows those it finds alone.
    """
    rng = np.random.default_rng([seed, 6])
    out: list[TreeSource] = []
    for start in range(0, len(picked), DISTANCE_BATCH):
        chunk = [
            (int(rows.user[r]), int(rows.item[r]), int(rows.label[r])) for r in picked[start : start + DISTANCE_BATCH]
        ]
        distances = (
            index.distances_batch(np.stack([index.pair_vector(u, i) for u, i, _ in chunk]))
            if n_nearest
            else [None] * len(chunk)
        )
        for (u, i, y), row in zip(chunk, distances, strict=False):
            out.append(TreeSource(u, i, y, nearest_and_random(index, u, i, n_nearest, n_random, rng, distances=row)))
    return out


def evidence_index(dataset: CoralDataset, tables: Any) -> Any:
    """The evidence index over ``dataset``'s training split with unit-RMS copies of ``tables``."""
    from coral.retrieval import EvidenceIndex, RandomEmbeddings

    return EvidenceIndex(dataset, RandomEmbeddings(user=unit_rms(tables.user), item=unit_rms(tables.item)))


def load_head(model: Any, tokenizer: Any, directory: Any) -> TopKHead:
    """The :class:`TopKHead` saved in an alignment directory (method topk), on ``model``'s frozen trunk:
    scores cached trees as the saved scorer scores prompts (the tuning-row ablation reads scorers this way).

    :param model: the base LLM (fp32, not cut).
    :param tokenizer: its tokenizer.
    :param directory: an alignment directory written by ``coral align --method topk``.
    """
    from pathlib import Path

    from safetensors.torch import load_file

    from coral.llm.aligned import TOPK_FILE, load_soft_tokens, read_meta
    from coral.llm.labels import resolve_label_tokens

    directory = Path(directory).expanduser()
    meta = read_meta(directory)
    if meta["method"] != "topk":
        raise ValueError(f"{directory} holds method {meta['method']!r}, not topk")
    depth, k = int(meta["config"]["topk_trunk"]), int(meta["config"]["topk_layers"])
    soft = load_soft_tokens(directory, meta, tokenizer)
    labels = resolve_label_tokens(tokenizer)
    head = TopKHead(
        model, depth, k, labels.yes_ids, labels.no_ids,
        cf=None if soft is None else soft.projection,
        marker_id=-1 if soft is None else soft.marker_id,
    )
    state = load_file(str(directory / TOPK_FILE))
    layers = {
        f"{int(name.split('.')[2]) - depth}.{name.split('.', 3)[3]}": v
        for name, v in state.items()
        if name.startswith("model.layers.")
    }
    head.layers.load_state_dict(layers)
    head.norm.load_state_dict({name.split(".", 2)[2]: v for name, v in state.items() if name.startswith("model.norm.")})
    return head.eval()
