"""Rebuild coral's embedded ``movielens_small`` from GroupLens's MovieLens latest-small folder.

Keeps ids, ratings, timestamps (``ratings.csv``) and titles with year and genres (``movies.csv``)
of the rows that the default preprocessing keeps: rows of users or movies that the 5-core
filter drops are left out (a k-core of a k-core is itself, so the default processed dataset
is unchanged; only ``k_core`` below 5 sees fewer rows than the full release). Tags and links
are not shipped. GroupLens's README.txt (licence and citation) is copied beside the data,
as its licence asks for redistribution.

    python experiments/make_embedded_movielens_small.py ../shared/data/movielens_latest_small [OUT_DIR]

Run twice, it writes byte-identical files (gzip without a timestamp).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sys
from pathlib import Path

import numpy as np

from coral.data import DataConfig, build_dataset
from coral.data.loaders import GROUPLENS, load_csv

OUT = Path(__file__).resolve().parents[1] / "coral" / "data" / "embedded" / "movielens_small"

PROVENANCE = """\
# movielens_small: MovieLens latest-small, as coral ships it

Source: MovieLens latest-small (`ml-latest-small.zip`, generated 2018-09-26) by GroupLens
Research, University of Minnesota, <https://grouplens.org/datasets/movielens/>: 100,836
ratings (0.5-5 stars, half stars) by 610 users on 9,742 movies. This folder holds a
transformation of it, distributed under the same licence conditions: see README.txt
(GroupLens's own README, unmodified), section "Usage License". No endorsement by the
University of Minnesota or the GroupLens Research Group is stated or implied; no commercial use.

What is here (rebuilt by `experiments/make_embedded_movielens_small.py` from the unmodified
release):

- `interactions.csv.gz`: user, item, rating, timestamp: the rows of `ratings.csv` whose user
  and movie survive coral's default 5-core filter ({rows:,} of {source_rows:,} rows), in the
  release's order;
- `items.csv.gz`: item, title (with year), genres (GroupLens's `|`-separated list; empty for
  "(no genres listed)"): the {items:,} movies of those rows.

Tags and links are not included. With `k_core` of 5 or more the processed dataset equals the
one made from the full release; smaller `k_core` values see only these rows.

Cite: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and
Context. ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4: 19:1-19:19.
<https://doi.org/10.1145/2827872>
"""


def write_gz_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Write a gzip CSV whose bytes depend on the rows only.

    :param path: destination file.
    :param header: the column names.
    :param rows: the data rows.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    # mtime=0 keeps the file byte-identical across rebuilds.
    path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0))


def main(source_dir: str | Path, out: Path = OUT) -> None:
    """Write the embedded copy from a MovieLens latest-small folder.

    :param source_dir: the folder holding GroupLens's ratings.csv, movies.csv and README.txt.
    :param out: where to write (default: the package's embedded folder).
    """
    src = Path(source_dir)
    raw = load_csv(src / "ratings.csv", GROUPLENS, items=src / "movies.csv")
    survivors = build_dataset(raw, DataConfig(), "movielens_small")
    keep = np.isin(raw.users, survivors.user_ids) & np.isin(raw.items, survivors.item_ids)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        [u, i, f"{r:g}", t]
        for u, i, r, t in zip(raw.users[keep], raw.items[keep], raw.ratings[keep], raw.timestamps[keep], strict=False)
    ]
    write_gz_csv(out / "interactions.csv.gz", ["user", "item", "rating", "timestamp"], rows)
    # Items in GroupLens's order (by movieId as a number), as in movies.csv.
    kept = sorted(set(survivors.item_ids), key=int)
    items = [[i, raw.item_text.get(i, ""), raw.item_meta.get(i, {}).get("genres", "")] for i in kept]
    write_gz_csv(out / "items.csv.gz", ["item", "title", "genres"], items)
    shutil.copyfile(src / "README.txt", out / "README.txt")
    text = PROVENANCE.format(rows=len(rows), source_rows=len(raw), items=len(items))
    (out / "PROVENANCE.md").write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} of {len(raw)} interactions and {len(items)} items to {out}")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "../shared/data/movielens_latest_small",
        Path(sys.argv[2]) if len(sys.argv) > 2 else OUT,
    )
