"""The alignment's arithmetic (``AlignConfig.dtype``): fp32, or bf16 products where the CPU runs
them natively and a recorded parity check passed; ``auto`` picks, as the scoring precision does.

Method topk in ``bfloat16`` computes the frozen trunk and the trained layers' linear products in
bf16 with fp32 accumulation (the numerics of the bfloat16 scoring precision, ``bfloat16-linear``);
norms, attention, the residual stream, the loss, the weights and the optimiser stay fp32. It is
*eligible* on a CPU only with native bf16 (AMX-BF16 or AVX512-BF16: :func:`coral.llm.precision.supported`)
and a passing record in ``parity.json`` (key ``alignment``, written by
``python experiments/bench/speed.py align-parity --write``): the default run's alignment trained
twice with the same seed and targets, in fp32 and in bf16, both scored on at least
:data:`MIN_PAIRS` validation pairs (the ``tuning`` role), every cell's paired AUC difference
interval inside +-:data:`ALIGN_TOLERANCE`. Methods head and lora convert the whole model to the
dtype (unchecked): ``auto`` gives them fp32.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from coral.errors import CoralError
from coral.llm.precision import PARITY_FILE, cpu_flags, numerics, supported

#: The values of ``AlignConfig.dtype``.
ALIGN_DTYPES = ("auto", "float32", "bfloat16")
#: Each cell's 95% paired AUC difference interval (bf16 - fp32) must lie inside +- this.
ALIGN_TOLERANCE = 0.01
#: A record must score at least this many validation pairs.
MIN_PAIRS = 2000
#: The only method with a checked bf16 path.
CHECKED_METHOD = "topk"


@dataclass(frozen=True)
class AlignParityRecord:
    """One recorded parity check of an alignment dtype against fp32 (an entry of ``parity.json``'s ``alignment``)."""

    dtype: str
    """The dtype checked (bfloat16)."""
    numerics: str
    """Its numerics on the CPU it was measured on (:func:`coral.llm.precision.numerics`): the record applies to CPUs
    with the same."""
    cpu_class: str
    """:func:`coral.llm.precision.feature_class` of the CPU it was measured on."""
    method: str
    """The alignment method (topk)."""
    recipe: str
    """What was trained: layers, targets, epochs, seed (the default run's alignment)."""
    dataset: str
    """The dataset trained on and scored."""
    pairs: int
    """Validation pairs scored (the tuning role)."""
    cells: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per prompt set (e.g. "none", "nearest-5"): auc_fp32, auc, delta, low, high (95% paired bootstrap)."""
    speedup: float = 0.0
    """The alignment's trees/s (trunk pass and training) in this dtype over fp32's, same run."""
    date: str = ""
    """When it was measured (YYYY-MM-DD)."""
    command: str = ""
    """The command that measured it."""

    @property
    def passed(self) -> bool:
        """Enough pairs, and every cell's interval inside +-:data:`ALIGN_TOLERANCE`."""
        return (
            self.pairs >= MIN_PAIRS
            and bool(self.cells)
            and all(-ALIGN_TOLERANCE <= c["low"] and c["high"] <= ALIGN_TOLERANCE for c in self.cells.values())
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_align_records(path=PARITY_FILE) -> list[AlignParityRecord]:
    """The alignment parity records of ``path`` (the package's ``parity.json`` by default; none if absent)."""
    if not path.is_file():
        return []
    try:
        return [AlignParityRecord(**entry) for entry in json.loads(path.read_text()).get("alignment", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise CoralError(
            f"{path}: not a parity record file ({type(exc).__name__}: {exc}); restore it from the repository"
        ) from None


def default_align_dtype(
    method: str, flags: Iterable[str] | None = None, records: Sequence[AlignParityRecord] | None = None
) -> str:
    """bfloat16 for method topk where this CPU runs bf16 natively and the latest record with its
    numerics passed; float32 otherwise.

    :param method: the alignment method.
    :param flags: CPU feature flags (default: this machine's).
    :param records: alignment parity records (default: the package's ``parity.json``).
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    if method != CHECKED_METHOD or not supported("bfloat16", flags):
        return "float32"
    records = load_align_records() if records is None else records
    want = numerics("bfloat16", flags)
    matching = [r for r in records if r.dtype == "bfloat16" and r.numerics == want and r.method == method]
    return "bfloat16" if matching and max(matching, key=lambda r: r.date).passed else "float32"


def resolve_align_dtype(dtype: str, method: str) -> str:
    """``dtype`` itself, or :func:`default_align_dtype` for ``auto``.

    :raises CoralError: for an unknown name.
    """
    if dtype not in ALIGN_DTYPES:
        raise CoralError(f"unknown alignment dtype {dtype!r}; expected one of {', '.join(ALIGN_DTYPES)}")
    return default_align_dtype(method) if dtype == "auto" else dtype


__all__ = [
    "ALIGN_DTYPES", "ALIGN_TOLERANCE", "MIN_PAIRS", "AlignParityRecord", "default_align_dtype", "load_align_records",
    "resolve_align_dtype",
]
