"""Rebuild coral's embedded default dataset from the official Amazon 2018 Gift Cards files.

Keeps only ids, ratings, timestamps (reviews) and titles, brands, categories (metadata): no
review text, no reviewer names. The rows are the unmodified 5-core rows, repeats included,
so that the shipped data goes through the same deduplication as any other source.

    python experiments/make_embedded_gift_cards.py ../shared/data/amazon2018
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

from coral.data.loaders import load_amazon2018

OUT = Path(__file__).resolve().parents[1] / "coral" / "data" / "embedded" / "gift_cards"


def write_gz_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    # mtime=0 keeps the file byte-identical across rebuilds.
    path.write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))


def main(source_dir: str) -> None:
    src = Path(source_dir)
    raw = load_amazon2018(src / "Gift_Cards_5.json.gz", src / "meta_Gift_Cards.json.gz")
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [[u, i, f"{r:g}", t] for u, i, r, t in zip(raw.users, raw.items, raw.ratings, raw.timestamps, strict=False)]
    write_gz_csv(OUT / "interactions.csv.gz", ["user", "item", "rating", "timestamp"], rows)
    kept = sorted(set(raw.items.tolist()))
    items = [
        [
            i, raw.item_text.get(i, ""), raw.item_meta.get(i, {}).get("brand", ""),
            raw.item_meta.get(i, {}).get("category", ""),
        ]
        for i in kept
    ]
    write_gz_csv(OUT / "items.csv.gz", ["item", "title", "brand", "category"], items)
    print(f"wrote {len(rows)} interactions and {len(items)} items to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/amazon2018")
