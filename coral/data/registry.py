"""Dataset names: the embedded default, Amazon 2018 categories and MovieLens found on disk.

Name resolution, in order:

- ``gift_cards``: the embedded Amazon 2018 Gift Cards 5-core shipped inside the package;
- ``movielens_small``: the embedded MovieLens latest-small (GroupLens), its 5-core rows, titles
  with year and genres, shipped with its licence (``embedded/movielens_small/README.txt``);
- an Amazon 2018 category by its official name or lowercase alias (``Appliances``,
  ``software``, ``prime_pantry``, ``Gift_Cards``, ...): ``<Category>.json.gz`` (full file,
  preferred, as the paper uses) or ``<Category>_5.json.gz`` plus ``meta_<Category>.json.gz``
  in a data directory;
- ``ml-100k`` / ``ml-1m``, and GroupLens's CSV releases ``ml-latest-small``, ``ml-latest``,
  ``ml-25m``, ``ml-20m``: a MovieLens directory of that name in a data directory;
- anything else is taken as a path.

Data directories: ``$CORAL_DATA_DIR`` (several joined by ``os.pathsep``), then the download
cache ``coral.io.cache_dir("data")``; in each, the files may sit at the top or in
``amazon2018/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from coral.data.dataset import CoralDataset, DataConfig, build_dataset
from coral.data.loaders import ReadOptions, load_csv_dir, load_raw
from coral.errors import CoralError, DataError
from coral.io import cache_dir

EMBEDDED_DIR = Path(__file__).parent / "embedded"

#: Built-in names that ship with the package.
EMBEDDED = {"gift_cards": EMBEDDED_DIR / "gift_cards", "movielens_small": EMBEDDED_DIR / "movielens_small"}

#: The 29 categories of the Amazon Review Data 2018 release, official spelling.
AMAZON2018_CATEGORIES = (
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music",
    "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food", "Home_and_Kitchen",
    "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty", "Magazine_Subscriptions",
    "Movies_and_TV", "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden",
    "Pet_Supplies", "Prime_Pantry", "Software", "Sports_and_Outdoors", "Tools_and_Home_Improvement",
    "Toys_and_Games", "Video_Games",
)  # fmt: skip

#: MovieLens releases that ``coral data download`` fetches (and that are found by name).
MOVIELENS = ("ml-100k", "ml-1m")

#: GroupLens's CSV releases (ratings.csv + movies.csv), found by name in a data directory.
MOVIELENS_CSV = ("ml-latest-small", "ml-latest", "ml-25m", "ml-20m")

#: File stems too generic to name a dataset: a path to such a file is named after its folder.
_GENERIC_STEMS = ("interactions", "ratings", "u")


def data_dirs() -> list[Path]:
    """Directories searched for named datasets, in order."""
    dirs = [Path(p) for p in os.environ.get("CORAL_DATA_DIR", "").split(os.pathsep) if p]
    return dirs + [cache_dir("data")]


def amazon_category(name: str) -> str | None:
    """The official Amazon 2018 category for a name or lowercase alias, else None."""
    lowered = name.lower()
    for category in AMAZON2018_CATEGORIES:
        if lowered == category.lower():
            return category
    return None


def _locate_amazon(category: str) -> Path | None:
    for root in data_dirs():
        for folder in (root, root / "amazon2018"):
            for name in (f"{category}.json.gz", f"{category}.json", f"{category}_5.json.gz", f"{category}_5.json"):
                if (folder / name).exists():
                    return folder / name
    return None


def resolve(name_or_path: str) -> tuple[str, Path]:
    """Map a dataset name or path to (display name, source path).

    :raises CoralError: for a name that is neither built in, found on disk, nor a path.
    """
    if name_or_path in EMBEDDED:
        return name_or_path, EMBEDDED[name_or_path]
    category = amazon_category(name_or_path)
    if category is not None:
        found = _locate_amazon(category)
        if found is None:
            where = ", ".join(str(d) for d in data_dirs())
            raise DataError(
                f"dataset {name_or_path!r}: no {category}.json.gz or {category}_5.json.gz in {where}; "
                f"run `coral data download {category}` or set CORAL_DATA_DIR"
            )
        return name_or_path, found
    if name_or_path in MOVIELENS or name_or_path in MOVIELENS_CSV:
        for root in data_dirs():
            if (root / name_or_path).is_dir():
                return name_or_path, root / name_or_path
        how = (
            f"run `coral data download {name_or_path}`"
            if name_or_path in MOVIELENS
            else "get it from https://grouplens.org/datasets/movielens/ and unzip it there"
        )
        raise DataError(f"dataset {name_or_path!r}: not found in {', '.join(map(str, data_dirs()))}; {how}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        stem = path.name.split(".")[0]
        if path.is_file() and stem in _GENERIC_STEMS and path.resolve().parent.name:
            stem = path.resolve().parent.name
        return stem or str(path), path
    known = ", ".join(list(EMBEDDED) + ["<Amazon 2018 category>"] + list(MOVIELENS) + list(MOVIELENS_CSV))
    raise CoralError(f"unknown dataset {name_or_path!r}: not a built-in name ({known}) and no such file or directory")


def load_dataset(config: DataConfig | str = DataConfig(), use_cache: bool = True) -> CoralDataset:
    """Load and preprocess a dataset, reusing the on-disk cache when source and config are unchanged.

    :param config: the data section: which dataset (a built-in name such as ``gift_cards``, an
        Amazon 2018 category, ``ml-100k``, ``ml-1m``, or a file/directory in any supported format),
        how its files are read and how it is preprocessed. A string is ``DataConfig(dataset=that)``.
    :param use_cache: read and write the processed-dataset cache, keyed by the source files'
        contents and the reading and preprocessing fields.
    """
    if isinstance(config, str):
        config = DataConfig(dataset=config)
    name, path = resolve(config.dataset)
    fmt = None if config.format == "auto" else config.format
    options = ReadOptions(config.encoding, config.rating_scale)
    raw = (
        load_csv_dir(path, options=ReadOptions(rating_scale=config.rating_scale))
        if name in EMBEDDED and path == EMBEDDED[name]
        else load_raw(path, fmt, config.csv, options)
    )
    if not use_cache:
        return build_dataset(raw, config, name)
    from coral.data.dataset import _source_hash

    source_hash = _source_hash(raw)
    directory = cache_dir("datasets") / f"{name}-{source_hash}-{config.hash}"
    if (directory / "meta.json").exists():
        try:
            return CoralDataset.load(directory)
        except (OSError, ValueError, KeyError, TypeError, CoralError):
            pass  # a damaged (or older) cache entry is rebuilt below
    dataset = build_dataset(raw, config, name, source_hash=source_hash)
    dataset.save(directory)
    return dataset
