"""Readers for the real formats. Each returns one :class:`~coral.data.dataset.RawData` table.

Every reader reports bad input as a :class:`~coral.errors.DataError` naming the file and,
where it applies, the line: a corrupt gzip stream, a line that is not JSON, a missing field,
a rating that is not a number.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from coral.data.dataset import RawData
from coral.errors import DataError

#: Longest item text kept for prompts (characters); longer titles are cut at a word boundary.
MAX_TEXT_CHARS = 160

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(text: object) -> str:
    """A short single-line item text: HTML tags and entities removed, whitespace collapsed."""
    if isinstance(text, list):
        text = " ".join(str(t) for t in text if t)
    if not isinstance(text, str):
        return ""
    text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS].rsplit(" ", 1)[0] + "..."
    return text


def open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a plain or gzip-compressed text file."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="replace")
    return open(path, encoding=encoding, errors="replace", newline="")


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Numbered non-empty lines of a (gzip) text file; a corrupt gzip stream is a DataError."""
    try:
        with open_text(path, encoding) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, line
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise DataError(f"{path}: file not found") from None
        raise DataError(f"{path}: corrupt or truncated gzip file ({err})") from None


def _json_records(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{lineno}: not a valid JSON record (truncated or corrupt line)") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def _field(record: dict, name: str, path: Path, lineno: int) -> object:
    try:
        value = record[name]
    except KeyError:
        raise DataError(f"{path}:{lineno}: missing required field '{name}'") from None
    if value is None:
        raise DataError(f"{path}:{lineno}: required field '{name}' is null")
    return value


def _number(value: object, name: str, path: Path, lineno: int | str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: {name} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise DataError(f"{path}:{lineno}: {name} {value!r} is not a finite number")
    return number


def _reviews(path: Path, user_key: str, item_key: str, rating_key: str, time_key: str, time_scale: float) -> tuple[list, list, list, list]:
    users, items, ratings, times = [], [], [], []
    for lineno, rec in _json_records(path):
        users.append(str(_field(rec, user_key, path, lineno)))
        items.append(str(_field(rec, item_key, path, lineno)))
        ratings.append(_number(_field(rec, rating_key, path, lineno), "rating", path, lineno))
        t = rec.get(time_key)
        times.append(int(_number(t, "timestamp", path, lineno) / time_scale) if t is not None else 0)
    return users, items, ratings, times


def _last_category(value: object) -> str:
    if isinstance(value, list) and value:
        return clean_text(value[-1])
    return clean_text(value) if isinstance(value, str) else ""


def _meta(path: Path | None, item_key: str, brand_key: str, category_key: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    texts: dict[str, str] = {}
    side: dict[str, dict[str, str]] = {}
    if path is None:
        return texts, side
    for lineno, rec in _json_records(path):
        item = str(_field(rec, item_key, path, lineno))
        text = clean_text(rec.get("title")) or clean_text(rec.get("description"))
        if text:
            texts[item] = text
        feats = {"brand": clean_text(rec.get(brand_key)), "category": _last_category(rec.get(category_key))}
        side[item] = {k: v for k, v in feats.items() if v}
    return texts, side


def load_amazon2018(reviews: Path, meta: Path | None = None) -> RawData:
    """Amazon Review Data 2018: ``<Category>[_5].json[.gz]`` plus optional ``meta_<Category>.json[.gz]``.

    Reviews need ``reviewerID``, ``asin``, ``overall``; ``unixReviewTime`` is optional.
    Item text is the metadata title, falling back to the description.
    """
    users, items, ratings, times = _reviews(reviews, "reviewerID", "asin", "overall", "unixReviewTime", 1.0)
    texts, side = _meta(meta, "asin", "brand", "category")
    files = (reviews,) + ((meta,) if meta else ())
    return RawData(users, items, ratings, times, texts, side, source=str(reviews), files=files)


def load_amazon2023(reviews: Path, meta: Path | None = None) -> RawData:
    """Amazon Reviews 2023: ``<Category>.jsonl[.gz]`` (user_id, parent_asin, rating, timestamp in ms)
    plus optional ``meta_<Category>.jsonl[.gz]`` (parent_asin, title, description, store, categories)."""
    users, items, ratings, times = _reviews(reviews, "user_id", "parent_asin", "rating", "timestamp", 1000.0)
    texts, side = _meta(meta, "parent_asin", "store", "categories")
    files = (reviews,) + ((meta,) if meta else ())
    return RawData(users, items, ratings, times, texts, side, source=str(reviews), files=files)


def _split_rows(path: Path, sep: str, encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    for lineno, line in _lines(path, encoding):
        yield lineno, line.rstrip("\r\n").split(sep)


def _columns(path: Path, lineno: int, row: list[str], n: int) -> None:
    if len(row) < n:
        raise DataError(f"{path}:{lineno}: expected at least {n} fields, got {len(row)}")


def _delimited_interactions(path: Path, sep: str, encoding: str = "utf-8") -> tuple[list, list, list, list]:
    users, items, ratings, times = [], [], [], []
    for lineno, row in _split_rows(path, sep, encoding):
        _columns(path, lineno, row, 3)
        users.append(row[0].strip())
        items.append(row[1].strip())
        ratings.append(_number(row[2], "rating", path, lineno))
        times.append(int(_number(row[3], "timestamp", path, lineno)) if len(row) > 3 else 0)
    return users, items, ratings, times


def _delimited_titles(path: Path, sep: str, title_column: int, encoding: str) -> dict[str, str]:
    titles = {}
    if not path.exists():
        return titles
    for lineno, row in _split_rows(path, sep, encoding):
        _columns(path, lineno, row, title_column + 1)
        titles[row[0].strip()] = clean_text(row[title_column])
    return titles


def load_movielens_100k(directory: Path) -> RawData:
    """MovieLens 100K: ``u.data`` (tab-separated user, item, rating, timestamp) and ``u.item`` (``|``-separated, title 2nd)."""
    data = directory / "u.data"
    users, items, ratings, times = _delimited_interactions(data, "\t")
    titles = _delimited_titles(directory / "u.item", "|", 1, "latin-1")
    return RawData(users, items, ratings, times, titles, source=str(directory), files=tuple(p for p in (data, directory / "u.item") if p.exists()))


def load_movielens_1m(directory: Path) -> RawData:
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat``, both ``::``-separated."""
    data = directory / "ratings.dat"
    users, items, ratings, times = _delimited_interactions(data, "::")
    titles = _delimited_titles(directory / "movies.dat", "::", 1, "latin-1")
    return RawData(users, items, ratings, times, titles, source=str(directory), files=tuple(p for p in (data, directory / "movies.dat") if p.exists()))


def _recbole_header(path: Path, lineno: int, header: list[str]) -> list[str]:
    return [h.split(":", 1)[0].strip() for h in header]


def load_recbole(inter: Path) -> RawData:
    """RecBole atomic files: ``<name>.inter`` (``user_id:token``, ``item_id:token``, ``rating:float``,
    ``timestamp:float``) and optionally ``<name>.item`` with a title-like column."""
    rows = _split_rows(inter, "\t")
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{inter}: empty file") from None
    names = _recbole_header(inter, 1, header)
    for required in ("user_id", "item_id", "rating"):
        if required not in names:
            raise DataError(f"{inter}:1: header lacks the required column '{required}' (has {', '.join(names)})")
    cu, ci, cr = names.index("user_id"), names.index("item_id"), names.index("rating")
    ct = names.index("timestamp") if "timestamp" in names else None
    users, items, ratings, times = [], [], [], []
    for lineno, row in rows:
        _columns(inter, lineno, row, len(names))
        users.append(row[cu])
        items.append(row[ci])
        ratings.append(_number(row[cr], "rating", inter, lineno))
        times.append(int(_number(row[ct], "timestamp", inter, lineno)) if ct is not None else 0)
    titles: dict[str, str] = {}
    item_file = inter.with_suffix(".item")
    files = [inter]
    if item_file.exists():
        files.append(item_file)
        item_rows = _split_rows(item_file, "\t")
        _, header = next(item_rows, (0, []))
        inames = _recbole_header(item_file, 1, header)
        text_cols = [j for j, n in enumerate(inames) if "title" in n or n.endswith("name")]
        if "item_id" in inames and text_cols:
            cid, ctext = inames.index("item_id"), text_cols[0]
            for lineno, row in item_rows:
                if len(row) > max(cid, ctext):
                    titles[row[cid]] = clean_text(row[ctext])
    return RawData(users, items, ratings, times, titles, source=str(inter), files=tuple(files))


@dataclass(frozen=True)
class CsvLayout:
    """Column names and separator of the generic CSV/TSV layout."""

    sep: str = ","
    """Field separator (use "\\t" for TSV)."""
    user: str = "user"
    """Interactions column with the user id."""
    item: str = "item"
    """Interactions column with the item id (also the key column of items.csv)."""
    rating: str = "rating"
    """Interactions column with the rating."""
    timestamp: str = "timestamp"
    """Optional interactions column with a Unix timestamp."""
    title: str = "title"
    """items.csv column with the item text; any other items.csv columns become categorical side features."""


def _csv_rows(path: Path, sep: str) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with open_text(path) as f:
            reader = csv.DictReader(f, delimiter=sep)
            if reader.fieldnames is None:
                raise DataError(f"{path}: empty file (no header)")
            yield 1, {name: name for name in reader.fieldnames}  # the header, for column checks
            for row in reader:
                yield reader.line_num, row
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err})") from None
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from None


def _find(directory: Path, stem: str) -> Path | None:
    for suffix in (".csv", ".tsv", ".csv.gz", ".tsv.gz"):
        if (directory / f"{stem}{suffix}").exists():
            return directory / f"{stem}{suffix}"
    return None


def load_csv_dir(directory: Path, layout: CsvLayout = CsvLayout()) -> RawData:
    """A directory holding ``interactions.csv`` (user,item,rating[,timestamp]) and optionally ``items.csv`` (item,title,...)."""
    inter = _find(directory, "interactions")
    if inter is None:
        raise DataError(f"{directory}: no interactions.csv (or .tsv, .csv.gz) found")
    sep = "\t" if layout.sep == "," and ".tsv" in inter.name else layout.sep
    rows = _csv_rows(inter, sep)
    _, header = next(rows)
    for col in (layout.user, layout.item, layout.rating):
        if col not in header:
            raise DataError(f"{inter}:1: missing required column '{col}' (has {', '.join(header)})")
    has_time = layout.timestamp in header
    users, items, ratings, times = [], [], [], []
    for lineno, row in rows:
        for col in (layout.user, layout.item, layout.rating):
            if row.get(col) in (None, ""):
                raise DataError(f"{inter}:{lineno}: missing value in column '{col}'")
        users.append(row[layout.user])
        items.append(row[layout.item])
        ratings.append(_number(row[layout.rating], "rating", inter, lineno))
        times.append(int(_number(row[layout.timestamp], "timestamp", inter, lineno)) if has_time and row.get(layout.timestamp) else 0)
    texts: dict[str, str] = {}
    side: dict[str, dict[str, str]] = {}
    files = [inter]
    item_file = _find(directory, "items")
    if item_file is not None:
        files.append(item_file)
        isep = "\t" if layout.sep == "," and ".tsv" in item_file.name else layout.sep
        irows = _csv_rows(item_file, isep)
        _, iheader = next(irows)
        if layout.item not in iheader:
            raise DataError(f"{item_file}:1: missing required column '{layout.item}'")
        extra = [c for c in iheader if c not in (layout.item, layout.title)]
        for _, row in irows:
            key = row[layout.item]
            texts[key] = clean_text(row.get(layout.title) or "")
            feats = {c: (row.get(c) or "").strip() for c in extra}
            side[key] = {k: v for k, v in feats.items() if v}
    return RawData(users, items, ratings, times, texts, side, source=str(directory), files=tuple(files))


# ---- format detection ------------------------------------------------------------------------

FORMATS = ("amazon2018", "amazon2023", "movielens100k", "movielens1m", "recbole", "csv")

_AMAZON = re.compile(r"^(?!meta_)(?P<cat>.+?)(?P<five>_5)?\.(?P<ext>jsonl?)(\.gz)?$")


def _meta_for(reviews: Path, category: str, ext: str) -> Path | None:
    for name in (f"meta_{category}.{ext}.gz", f"meta_{category}.{ext}"):
        if (reviews.parent / name).exists():
            return reviews.parent / name
    return None


def detect_format(path: Path) -> str:
    """Guess a source's format from its file names.

    :raises DataError: when nothing recognisable is there.
    """
    if path.is_dir():
        if _find(path, "interactions"):
            return "csv"
        if (path / "u.data").exists():
            return "movielens100k"
        if (path / "ratings.dat").exists():
            return "movielens1m"
        if list(path.glob("*.inter")):
            return "recbole"
        raise DataError(
            f"{path}: no recognisable dataset files (interactions.csv, u.data, ratings.dat, *.inter); "
            "for Amazon files pass the review file itself"
        )
    name = path.name
    if name.endswith(".inter"):
        return "recbole"
    if name in ("u.data",):
        return "movielens100k"
    if name in ("ratings.dat",):
        return "movielens1m"
    if re.match(r"^interactions\.(csv|tsv)(\.gz)?$", name):
        return "csv"
    m = _AMAZON.match(name)
    if m:
        return "amazon2023" if m.group("ext") == "jsonl" else "amazon2018"
    raise DataError(f"{path}: cannot tell the dataset format from the file name; pass --format ({', '.join(FORMATS)})")


def load_raw(path: Path, format: str | None = None, layout: CsvLayout = CsvLayout()) -> RawData:
    """Read a dataset file or directory in any supported format.

    :param path: a review file, a MovieLens/RecBole/CSV directory, or a file inside one.
    :param format: one of :data:`FORMATS`; detected from the names when omitted.
    :param layout: column names for the generic CSV layout.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    fmt = format or detect_format(path)
    readers: dict[str, Callable[[], RawData]] = {
        "amazon2018": lambda: _amazon(path, load_amazon2018, "json"),
        "amazon2023": lambda: _amazon(path, load_amazon2023, "jsonl"),
        "movielens100k": lambda: load_movielens_100k(path if path.is_dir() else path.parent),
        "movielens1m": lambda: load_movielens_1m(path if path.is_dir() else path.parent),
        "recbole": lambda: load_recbole(path if path.is_file() else sorted(path.glob("*.inter"))[0]),
        "csv": lambda: load_csv_dir(path if path.is_dir() else path.parent, layout),
    }
    if fmt not in readers:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return readers[fmt]()


def _amazon(path: Path, reader: Callable[[Path, Path | None], RawData], ext: str) -> RawData:
    if path.is_dir():
        raise DataError(f"{path}: pass the Amazon review file itself, e.g. {path}/Appliances.json.gz")
    m = _AMAZON.match(path.name)
    category = m.group("cat") if m else path.name.split(".")[0]
    return reader(path, _meta_for(path, category, ext))
