"""``coral explain``: what one test interaction's episode looked like, round by round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.evidence import Evidence


def episode_files(run: Path) -> list[Path]:
    """The evaluation JSONL files under a ``coral train`` run or a ``coral run`` output directory."""
    if not run.is_dir():
        raise CoralError(f"{run}: no such run directory")
    files = (
        sorted(run.glob("eval_test.jsonl"))
        + sorted(run.glob("stages/*/eval_test.jsonl"))
        + sorted(run.glob("stages/*/run/eval_test.jsonl"))
    )
    if not files:
        raise CoralError(f"{run}: no eval_test.jsonl (run `coral evaluate --run {run}` first)")
    return files


def method_name(path: Path, run: Path) -> str:
    rel = path.relative_to(run).parts
    return rel[1] if len(rel) > 1 and rel[0] == "stages" else run.name


def resolve_index(ids: list[str], value: str, what: str) -> int:
    """A raw id (as in the source files) or an integer index."""
    try:
        return ids.index(value)
    except ValueError:
        pass
    if value.isdigit() and int(value) < len(ids):
        return int(value)
    raise CoralError(f"unknown {what} {value!r}: neither a raw id nor an index below {len(ids)}")


def find_episode(path: Path, user: int, item: int) -> dict[str, Any] | None:
    """The episode of (user index, item index) in an evaluation JSONL file, or None."""
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec["user_index"] == user and rec["item_index"] == item:
                return rec
    return None


def explain(run: Path, dataset: CoralDataset, user: str, item: str, show_prompt: bool = True) -> str:
    """A readable account of the episodes of (user, item) in every evaluation found under ``run``."""
    from coral.llm.prompt import PromptBuilder, PromptConfig

    u = resolve_index(dataset.user_ids, user, "user")
    i = resolve_index(dataset.item_ids, item, "item")
    out: list[str] = []
    found = False
    for path in episode_files(run):
        rec = find_episode(path, u, i)
        if rec is None:
            continue
        found = True
        label = "liked" if rec["label"] else "disliked"
        out.append(
            f"## {method_name(path, run)}: user {dataset.user_ids[u]} (index {u}) and item {dataset.item_ids[i]} "
            f"(index {i}) \"{dataset.item_text[i]}\", truly {label}"
        )
        evidence: list[Evidence] = []
        for step in rec["rounds"]:
            if step["t"] == 0:
                out.append(f"  round 0: no evidence                                   p = {step['p']:.4f}")
                continue
            if step.get("label") is None:
                out.append(f"  round {step['t']}: nothing retrieved                            p = {step['p']:.4f}")
                continue
            ev = Evidence(int(step["user_index"]), int(step["item_index"]), int(step["label"]))
            evidence.append(ev)
            verb = "liked" if ev.label else "disliked"
            out.append(
                f"  round {step['t']}: user {dataset.user_ids[ev.user]} {verb} item {dataset.item_ids[ev.item]} "
                f"\"{dataset.item_text[ev.item]}\"  p = {step['p']:.4f}"
            )
        if show_prompt:
            prompt = PromptBuilder(dataset, PromptConfig(chat_template=False)).build(u, i, evidence)
            out.append("  final prompt:")
            out.extend("    " + line for line in prompt.text.splitlines())
        out.append("")
    if not found:
        raise CoralError(f"user {user} and item {item} are not among the evaluated interactions under {run}")
    return "\n".join(out)
