"""Writing the result of an alignment run (the layout and the reading side are in :mod:`coral.llm.aligned`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coral.align.config import AlignConfig
from coral.io import atomic_write_json
from coral.llm.aligned import (
    ADAPTER_DIR,
    CF_FILE,
    EXAMPLES_FILE,
    FORMAT_VERSION,
    HEAD_FILE,
    LOG_FILE,
    META_FILE,
    METRICS_FILE,
    TOPK_FILE,
    identity,
    load_aligned_scorer,
    read_meta,
)

__all__ = [
    "ADAPTER_DIR", "EXAMPLES_FILE", "HEAD_FILE", "TOPK_FILE", "LOG_FILE", "META_FILE", "METRICS_FILE", "identity",
    "load_aligned_scorer", "read_meta", "save_result",
]


def save_result(
    directory: Path, config: AlignConfig, *, peft_model: Any = None, head: Any = None, topk_state: dict | None = None,
    cf_state: dict | None = None, dataset_name: str, dataset_fingerprint: str, prompt_version: str, summary: dict,
) -> str:
    """Write the weights and ``align.json`` (last, so a directory with it is complete); returns the identity.

    :param peft_model: the trained peft model (method "lora").
    :param head: the trained :class:`~coral.llm.readout.LinearReadout` (method "head").
    :param topk_state: the fine-tuned layers' and norm's weights keyed as in the model (method "topk").
    :param cf_state: the soft-token projection's state with its embedding tables (method "topk" with prompt.cf_tokens).
    """
    from safetensors.torch import save_file

    if config.method == "lora":
        peft_model.save_pretrained(directory / ADAPTER_DIR)
    elif config.method == "topk":
        save_file(topk_state, str(directory / TOPK_FILE))
        if cf_state is not None:
            save_file(cf_state, str(directory / CF_FILE))
    else:
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(directory / HEAD_FILE))
    atomic_write_json(
        directory / META_FILE,
        {
            "format": FORMAT_VERSION, "method": config.method, "config": config.to_dict(), "dataset": dataset_name,
            "dataset_fingerprint": dataset_fingerprint, "prompt_version": prompt_version, "summary": summary,
        },
    )
    return identity(directory)
