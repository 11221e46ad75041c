"""The paper-style results table and the plots of a run, from its ``results.csv``."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from coral.io import atomic_write_bytes, atomic_write_text

#: Display names and table order (the paper's Table 1 order, then this project's variants).
DISPLAY = {
    "afm": "AFM",
    "dcn": "DCN",
    "dfm": "DFM",
    "wdl": "WDL",
    "ips": "IPS",
    "cause": "CausE",
    "llm-only": "LLM-Language",
    "coral-random": "CoRAL-random",
    "coral-greedy": "CoRAL-greedy",
}


def display_name(model: str) -> str:
    """``coral-ppo-dfm`` -> ``CoRAL-PPO (DFM)``; ``llm-only@aligned`` -> ``LLM-Language [aligned]``."""
    base, _, scorer = model.partition("@")
    if base in DISPLAY:
        name = DISPLAY[base]
    elif base.startswith("coral-"):
        parts = base.split("-")
        name = f"CoRAL-{parts[1].upper()}" + (f" ({parts[2].upper()})" if len(parts) > 2 else "")
    else:
        name = base
    return f"{name} [{scorer}]" if scorer else name


def _order(model: str) -> tuple[int, str]:
    base = model.partition("@")[0]
    keys = list(DISPLAY)
    rank = keys.index(base) if base in keys else len(keys) + (0 if "ppo" in base else 1)
    return (rank, model)


def final_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows that enter the table: per-round rows keep only their last round."""
    rows = list(rows)
    last: dict[tuple, int] = {}
    for r in rows:
        if r.get("round", "") not in ("", None):
            key = (r["dataset"], r["model"], str(r["seed"]))
            last[key] = max(last.get(key, -1), int(r["round"]))
    out = []
    for r in rows:
        rnd = r.get("round", "")
        if rnd in ("", None) or int(rnd) == last[(r["dataset"], r["model"], str(r["seed"]))]:
            out.append(r)
    return out


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    mean = 100 * float(np.mean(values))
    return f"{mean:.2f} ± {100 * float(np.std(values)):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _f(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def markdown_table(rows: Iterable[dict]) -> str:
    """One row per method, per dataset: AUC and F1 (x100, mean ± std over seeds), AUC 95% interval, seeds."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in final_rows(rows):
        grouped[(r["model"], r["dataset"])].append(r)
    datasets = sorted({d for _, d in grouped})
    models = sorted({m for m, _ in grouped}, key=_order)
    header = ["Method"]
    for d in datasets:
        header += [f"{d} AUC", f"{d} F1", f"{d} AUC 95% CI", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [display_name(m)]
        for d in datasets:
            group = grouped.get((m, d), [])
            if not group:
                cells += ["", "", "", ""]
                continue
            lo = np.nanmean([_f(r["auc_ci_low"]) for r in group]) if group else float("nan")
            hi = np.nanmean([_f(r["auc_ci_high"]) for r in group]) if group else float("nan")
            ci = f"[{100 * lo:.1f}, {100 * hi:.1f}]" if not (math.isnan(lo) or math.isnan(hi)) else "n/a"
            cells += [_mean_std([_f(r["auc"]) for r in group]), _mean_std([_f(r["f1"]) for r in group]), ci, str(len(group))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rounds_by_method(rows: Iterable[dict]) -> dict[str, dict[int, list[float]]]:
    """model -> round -> AUCs over seeds, from per-round rows."""
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("round", "") not in ("", None):
            out[r["model"]][int(r["round"])].append(_f(r["auc"]))
    return out


def plot_rounds(rows: Iterable[dict], path: Path, title: str = "") -> None:
    """AUC after each retrieval round 0..K per method (the paper's Fig. 3), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, by_round in sorted(rounds_by_method(rows).items(), key=lambda kv: _order(kv[0])):
        xs = sorted(by_round)
        ax.plot(xs, [np.nanmean(by_round[x]) for x in xs], marker="o", label=display_name(model))
    llm_only: dict[str, list[float]] = defaultdict(list)
    for r in final_rows(rows):
        if r["model"].startswith("llm-only"):
            llm_only[r["model"]].append(_f(r["auc"]))
    for style, (model, aucs) in zip((":", "--", "-."), sorted(llm_only.items())):
        ax.axhline(float(np.nanmean(aucs)), linestyle=style, color="grey", label=display_name(model))
    ax.set_xlabel("retrieval round")
    ax.set_ylabel("test AUC")
    ax.set_title(title or "AUC after each retrieval round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_training_curves(curves: dict[str, list[Path]], path: Path, y_keys: tuple[str, ...] = ("rollout/ep_rew_mean", "coral/reward")) -> None:
    """Episode return against timesteps for each trained policy, from SB3's progress.csv files
    (one per training segment: a resumed run continues in a new one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, csv_paths in sorted(curves.items()):
        records = []
        for csv_path in csv_paths:
            with open(csv_path, newline="") as f:
                records += list(csv.DictReader(f))
        key = next((k for k in y_keys if records and k in records[0]), None)
        if key is None:
            continue
        pts = [(_f(r.get("time/total_timesteps")), _f(r[key])) for r in records if r.get(key) not in ("", None)]
        pts = [(x, y) for x, y in pts if not (math.isnan(x) or math.isnan(y))]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=f"{label} ({key})")
    ax.set_xlabel("timesteps")
    ax.set_ylabel("episode return (drop in |p - y|)")
    ax.set_title("Retrieval policy training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_table(rows: Iterable[dict], path: Path) -> str:
    table = markdown_table(rows)
    atomic_write_text(path, table)
    return table
