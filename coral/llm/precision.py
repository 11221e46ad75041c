"""Weight precisions of a loaded LLM: how its decoder's linear layers compute, chosen per CPU.

A *precision* names the arithmetic of the decoder's linear layers (q/k/v/o and the MLP); the
embeddings, norms, attention, the residual stream and the LM head stay fp32 in every precision.

- ``float32``: dense fp32 (MKL/oneDNN sgemm). Always available; the reference.
- ``int8``: int8 weights per output channel, per-token int8 activations (batch-invariant),
  SmoothQuant factors from calibration prompts, the MLP down-projections kept fp32
  (:mod:`coral.llm.int8`; fbgemm kernels, AVX2 at least; 7-bit activations without VNNI,
  8-bit with it, so its *numerics* differ between the two CPU classes).
- ``bfloat16``: the linear layers' products in bf16 (:mod:`coral.llm.bf16`; the whole model in bf16
  moved P(Yes) more). Fast only with native bf16 (AMX-BF16 or AVX512-BF16); elsewhere torch
  emulates it (measured about 100x slower than fp32 per GEMM on an AVX2-only CPU).

A precision other than fp32 is *eligible* only with a passing parity record for its numerics on
this CPU class (``parity.json`` beside this module, written by
``python experiments/bench/speed.py parity``): the default run's scorer (``coral run``'s alignment on
the powered default dataset, movielens_small) scores the run's validation pairs without evidence
and with 5 random pieces; both validation AUCs must lie within :data:`AUC_TOLERANCE` of fp32's on
the same prompts, and the mean |dp| is recorded. :func:`default_precision` is the
preferred (:data:`PREFERENCE`) eligible precision that this CPU runs natively, fp32 otherwise. The precision
(:func:`precision_tag`) is part of every scorer fingerprint, hence of every
score-cache key and result row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from coral.errors import CoralError

PRECISIONS = ("float32", "int8", "bfloat16")
#: The issue's eligibility rule: |AUC(precision) - AUC(fp32)| on the same validation pairs.
AUC_TOLERANCE = 0.005
#: The recorded parity checks shipped with the package.
PARITY_FILE = Path(__file__).with_name("parity.json")
#: Calibration prompts of the int8 precision (SmoothQuant factors); bump to recompute cached factors.
CALIBRATION_PROMPTS = 16
CALIBRATION_VERSION = "1"


# ---- the CPU --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags: ``/proc/cpuinfo``, or torch's detected capability where that is unreadable."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).lower()  # "avx2", "avx512", "default", ...
    return frozenset(
        {"avx2"} if capability == "avx2" else {"avx2", "avx512f"} if capability.startswith("avx512") else set()
    )


def feature_class(flags: Iterable[str]) -> str:
    """The CPU class that decides which kernels exist: amx, avx512_vnni, avx_vnni, avx512, avx2 or baseline.

    :param flags: CPU feature flags.
    """
    flags = set(flags)
    if "amx_bf16" in flags or "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx_vnni" in flags:
        return "avx_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "baseline"


def numerics(precision: str, flags: Iterable[str]) -> str:
    """What decides a precision's results on a CPU: ``float32``, ``bfloat16-linear``, ``int8-a7`` or ``int8-a8``.

    A parity record measured for one numerics applies to every CPU with the same numerics.

    :param precision: one of :data:`PRECISIONS`.
    :param flags: CPU feature flags.
    """
    check_precision(precision)
    if precision == "int8":
        from coral.llm.int8 import activation_bits

        return f"int8-a{activation_bits(frozenset(flags))}"
    return "bfloat16-linear" if precision == "bfloat16" else precision


def supported(precision: str, flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU runs ``precision`` with native kernels (not emulated).

    :param precision: one of :data:`PRECISIONS`.
    :param flags: CPU feature flags (default: this machine's).
    """
    check_precision(precision)
    flags = cpu_flags() if flags is None else frozenset(flags)
    if precision == "float32":
        return True
    if precision == "int8":
        import torch

        # fbgemm's kernels need AVX2 at least; torch's x86 engine is what runs them.
        return "avx2" in flags and any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_precision(precision: str) -> None:
    """:raises CoralError: unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise CoralError(f"unknown precision {precision!r}; expected auto or one of {', '.join(PRECISIONS)}")


# ---- parity records -------------------------------------------------------------------------
@dataclass(frozen=True)
class ParityRecord:
    """One recorded parity check of a precision against fp32 (an entry of ``parity.json``)."""

    precision: str
    """The precision checked."""
    numerics: str
    """Its numerics on the CPU it was measured on (:func:`numerics`): the record applies to CPUs with the same."""
    cpu_class: str
    """:func:`feature_class` of the CPU it was measured on."""
    scorer: str
    """What produced the scorer checked (e.g. "top2-finetune", the default run's alignment) and its identity."""
    dataset: str
    """The dataset whose validation pairs were scored (the powered default)."""
    pairs: int
    """Number of validation pairs scored (each with and without evidence)."""
    prompt_version: str
    """Template version of the prompts scored."""
    auc_fp32: float
    """Validation AUC of fp32 (the worse-matching of the two prompt sets: no evidence, 5 random pieces)."""
    auc: float
    """Validation AUC of the precision on the same prompts."""
    mean_abs_dp: float
    """Mean |P(Yes) - P(Yes) of fp32| over all the prompts scored."""
    max_abs_dp: float
    """Largest |dp| over the pairs."""
    speedup: float
    """Prompt tokens/s of the precision over fp32's, same run."""
    date: str
    """When it was measured (YYYY-MM-DD)."""
    command: str
    """The command that measured it."""

    @property
    def auc_delta(self) -> float:
        """AUC(precision) - AUC(fp32)."""
        return self.auc - self.auc_fp32

    @property
    def passed(self) -> bool:
        """|AUC delta| <= :data:`AUC_TOLERANCE`."""
        return abs(self.auc_delta) <= AUC_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _renamed_keys(entry: dict[str, Any]) -> dict[str, Any]:
    """A record as written before ``layout`` was renamed ``precision`` (files of older releases)."""
    return {("precision" if key == "layout" else key): value for key, value in entry.items()}


def load_parity_records(path: Path = PARITY_FILE) -> list[ParityRecord]:
    """The parity records of ``path`` (the package's ``parity.json`` by default; none if it is absent)."""
    if not path.is_file():
        return []
    try:
        return [ParityRecord(**_renamed_keys(entry)) for entry in json.loads(path.read_text())["records"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CoralError(
            f"{path}: not a parity record file ({type(exc).__name__}: {exc}); restore it from the repository"
        ) from None


def record_for(precision: str, flags: Iterable[str], records: Sequence[ParityRecord]) -> ParityRecord | None:
    """The most recent record of ``precision`` with this CPU's numerics, or None."""
    want = numerics(precision, flags)
    matching = [r for r in records if r.precision == precision and r.numerics == want]
    return max(matching, key=lambda r: r.date) if matching else None


#: Which eligible precision wins where several are: bf16 on AMX runs about 2x fp32
#: (../shared/docs/cpu-llm-notes.md), the int8 layer 1.2-1.35x on AVX2 (experiments/notes/speed.md).
#: A fixed order rather than the records' speed-ups: a record measured where the precision is
#: emulated (bf16 on an AVX2 CPU) has a valid AUC but a meaningless speed.
PREFERENCE = ("bfloat16", "int8")


def default_precision(flags: Iterable[str] | None = None, records: Sequence[ParityRecord] | None = None) -> str:
    """The preferred precision (:data:`PREFERENCE`) that this CPU runs natively and whose parity
    record for its numerics passed; fp32 (which needs no record) when none does.

    :param flags: CPU feature flags (default: this machine's).
    :param records: parity records (default: the package's ``parity.json``).
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    records = load_parity_records() if records is None else records
    for precision in PREFERENCE:
        if supported(precision, flags):
            record = record_for(precision, flags, records)
            if record is not None and record.passed:
                return precision
    return "float32"


def resolve_precision(precision: str | None) -> str:
    """``precision`` itself, or :func:`default_precision` for None / ``"auto"``.

    :raises CoralError: for an unknown name.
    """
    if precision in (None, "auto"):
        return default_precision()
    check_precision(precision)
    return precision


# ---- applying a precision to a model ------------------------------------------------------------
def calibration_batches(tokenizer: Any) -> list:
    """Token ids of the int8 calibration prompts: default prompts of the embedded MovieLens training split.

    A fixed dataset (not the one being scored) keeps the int8 precision a property of the model alone.
    """
    import numpy as np
    import torch

    from coral.data import load_dataset
    from coral.llm.evaluate import random_evidence
    from coral.llm.prompt import PromptBuilder

    dataset = load_dataset("movielens_small")
    builder = PromptBuilder(dataset, tokenizer=tokenizer)
    rows = dataset.train
    picks = np.random.default_rng(0).choice(len(rows), CALIBRATION_PROMPTS, replace=False)
    draw = random_evidence(dataset, 5, seed=0)
    out = []
    for k, row in enumerate(picks):
        u, i = int(rows.user[row]), int(rows.item[row])
        prompt = builder.build(u, i, draw(u, i)[: k % 6])
        ids = [t for seg in prompt.segments for t in tokenizer(seg, add_special_tokens=False).input_ids]
        out.append(torch.tensor([ids]))
    return out


def smoothing_stats(model: Any, tokenizer: Any, model_key: str) -> dict:
    """SmoothQuant activation statistics of an fp32 model, cached on disk by ``model_key``.

    :param model: the fp32 model (before quantisation).
    :param tokenizer: its tokenizer.
    :param model_key: a stable identity of the weights (:func:`coral.llm.model.model_identity`).
    """
    import hashlib

    from safetensors.torch import load_file, save_file

    from coral.io import cache_dir

    digest = hashlib.sha256(f"{model_key}|{CALIBRATION_VERSION}|{CALIBRATION_PROMPTS}".encode()).hexdigest()[:16]
    path = cache_dir("models", "smoothquant") / f"{digest}.safetensors"
    if path.is_file():
        return load_file(str(path))
    from coral.llm.int8 import activation_absmax

    stats = {k: v.contiguous() for k, v in activation_absmax(model, calibration_batches(tokenizer)).items()}
    tmp = path.with_suffix(f".tmp{id(stats)}")
    save_file(stats, str(tmp))
    tmp.replace(path)  # atomic: concurrent loads write the same values
    return stats


def apply_precision(
    model: Any, precision: str, tokenizer: Any = None, model_key: str = "", flags: Iterable[str] | None = None
) -> Any:
    """Convert a loaded fp32 causal LM to ``precision`` in place; returns the model to use.

    :param model: an fp32 transformers causal LM in eval mode.
    :param precision: one of :data:`PRECISIONS`.
    :param tokenizer: int8: the tokenizer for the calibration prompts (None: no SmoothQuant).
    :param model_key: int8: identity of the weights, to cache the calibration statistics.
    :param flags: int8: CPU flags deciding the activation bits (default: this machine's).
    """
    check_precision(precision)
    if precision == "float32":
        return model

    if precision == "bfloat16":
        from coral.llm.bf16 import convert_linears

        convert_linears(model)
        return model
    from coral.llm.int8 import activation_bits, quantize_int8

    stats = smoothing_stats(model, tokenizer, model_key) if tokenizer is not None else None
    quantize_int8(model, bits=activation_bits(cpu_flags() if flags is None else frozenset(flags)), absmax=stats)
    return model


def precision_tag(model: Any) -> str:
    """The precision of a loaded model as it goes into fingerprints: float32, bfloat16-linear, int8-a7[-sqN],
    int8-a8[-sqN] (bfloat16 for a model converted whole by hand).

    Read from the modules themselves, so a model converted by hand is named right too.
    """
    from coral.llm.bf16 import Bf16Linear
    from coral.llm.int8 import int8_bits

    if any(isinstance(m, Bf16Linear) for m in model.modules()):
        return "bfloat16-linear"
    bits = int8_bits(model)
    if bits is not None:
        smoothed = any(getattr(m, "inv_smooth", None) is not None for m in model.modules())
        return f"int8-a{bits}" + (f"-sq{CALIBRATION_VERSION}" if smoothed else "")
    return str(next(model.parameters()).dtype).removeprefix("torch.")
