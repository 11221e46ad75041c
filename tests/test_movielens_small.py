"""The embedded ``movielens_small``: what it contains, that it equals the GroupLens release
processed the same way, that its build script reproduces it, and that it works on a fresh
clone with no data directory."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from experiment_scripts import load_experiment_script

from coral.data import load_dataset
from coral.data.registry import EMBEDDED

ROOT = Path(__file__).resolve().parents[1]
#: GroupLens's unmodified ml-latest-small beside the checkout (absent on a fresh clone).
SHARED = ROOT.parent / "shared" / "data" / "movielens_latest_small"


@pytest.fixture
def grouplens_release() -> Path:
    """The folder of the unmodified release; skips the test where it is absent."""
    if not (SHARED / "ratings.csv").is_file():
        pytest.skip("../shared/data/movielens_latest_small is not present")
    return SHARED


def test_embedded_files_and_licence() -> None:
    folder = EMBEDDED["movielens_small"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "PROVENANCE.md", "README.txt", "interactions.csv.gz", "items.csv.gz",
    ]
    readme = (folder / "README.txt").read_text(encoding="utf-8")
    assert "Usage License" in readme and "same license conditions" in readme
    assert "Harper and Joseph A. Konstan. 2015" in (folder / "PROVENANCE.md").read_text(encoding="utf-8")
    header = gzip.decompress((folder / "items.csv.gz").read_bytes()).decode().splitlines()[0]
    assert header == "item,title,genres"


def test_default_preprocessing_counts() -> None:
    """The measured sizes of the default processed dataset (5-core, rating > 3, 20% head,
    70/15/15 tail split, seed 0)."""
    ds = load_dataset("movielens_small", use_cache=False)
    stats = ds.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (610, 3650, 90_274)
    assert len(ds.test) == 5579 and round(ds.test.positive_rate, 3) == 0.545
    assert ds.item_text[ds.item_ids.index("1")] == "Toy Story (1995)"
    assert set(ds.item_features) == {"genres"} and ds.item_features["genres"].max() > 100
    assert set(np.unique(ds.train.rating).tolist()) == {x / 2 for x in range(1, 11)}


def test_embedded_equals_processed_release(grouplens_release: Path) -> None:
    """The embedded copy processes to exactly what the unmodified release processes to."""
    embedded = load_dataset("movielens_small", use_cache=False)
    release = load_dataset(str(grouplens_release), use_cache=False)
    assert embedded.user_ids == release.user_ids and embedded.item_ids == release.item_ids
    assert embedded.item_text == release.item_text
    assert embedded.item_features.keys() == release.item_features.keys()
    for name in embedded.item_features:
        assert np.array_equal(embedded.item_features[name], release.item_features[name])
    assert np.array_equal(embedded.is_head, release.is_head)
    for split in ("train", "valid", "test"):
        a, b = embedded.split(split), release.split(split)
        for column in ("user", "item", "rating", "label", "timestamp"):
            assert np.array_equal(getattr(a, column), getattr(b, column)), (split, column)


def test_build_script_reproduces_the_embedded_copy(grouplens_release: Path, tmp_path: Path) -> None:
    load_experiment_script("make_embedded_movielens_small").main(grouplens_release, tmp_path)
    for path in sorted(EMBEDDED["movielens_small"].iterdir()):
        built, shipped = (tmp_path / path.name).read_bytes(), path.read_bytes()
        if path.name.endswith(".gz"):
            # The gzip bytes are identical with the same zlib; the contents must be everywhere.
            built, shipped = gzip.decompress(built), gzip.decompress(shipped)
        assert built == shipped, path.name


def test_stats_json_fresh_clone_without_shared(tmp_path: Path) -> None:
    """`coral data stats --dataset movielens_small --json` with no data directory and an empty cache:
    a test split big enough to compare methods (issue 12)."""
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache"), "CORAL_DATA_DIR": str(tmp_path / "none")}
    out = subprocess.run(
        [sys.executable, "-m", "coral.cli", "data", "stats", "--dataset", "movielens_small", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    test = stats["splits"]["test"]
    assert test["interactions"] >= 2000 and 1 - test["positive_rate"] >= 0.30
    assert stats["name"] == "movielens_small" and stats["users"] == 610
