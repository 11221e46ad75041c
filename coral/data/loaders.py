"""Readers for the real formats. Each returns one :class:`~coral.data.dataset.RawData` table.

Every reader reports bad input as a :class:`~coral.errors.DataError` naming the file and,
where it applies, the line: a corrupt gzip stream, bytes that are not valid in the file's
encoding (UTF-8 unless ``encoding`` says otherwise; never replaced silently), a line that is not
JSON, a missing field, a rating that is not a number or is outside the format's scale. Messages
stay on one line: values from the file are shown quoted and shortened. A UTF-8 byte-order mark at
the start of any file is ignored.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import html
import io
import json
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from coral.data.dataset import CsvColumns, RawData
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


def show(value: object, limit: int = 60) -> str:
    """A value from a file as it may appear in a one-line message: quoted, escaped, shortened."""
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit] + "...") if len(text) > limit else repr(text)


def open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a plain or gzip-compressed text file, skipping a UTF-8 byte-order mark.

    Lines keep their own endings (``newline=""``), as the csv module wants.
    """
    binary: io.BufferedIOBase = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    try:
        # Spreadsheet programs write a byte-order mark; it is not part of the first field.
        if binary.peek(len(codecs.BOM_UTF8))[: len(codecs.BOM_UTF8)] == codecs.BOM_UTF8:
            binary.read(len(codecs.BOM_UTF8))
    except BaseException:
        binary.close()
        raise
    return io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")


def _undecodable(path: Path, encoding: str) -> DataError:
    """The DataError for a file that is not valid ``encoding`` text: the first bad line and byte.

    The text reader decodes ahead of the line it returns, so the culprit is found again here,
    line by line in the raw bytes.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    how = "pass --encoding with the file's encoding, e.g. --encoding latin-1"
    try:
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as f:
            for lineno, raw in enumerate(f, 1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError as err:
                    return DataError(
                        f"{path}:{lineno}: not valid {encoding} text (byte 0x{raw[err.start]:02x} at column "
                        f"{err.start + 1}); {how}"
                    )
    except READ_ERRORS as err:
        return _read_error(path, err)
    return DataError(f"{path}: not valid {encoding} text; {how}")


def _read_error(path: Path, err: BaseException) -> DataError:
    """The one-line DataError for an exception raised while opening or reading ``path``."""
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path}: file not found")
    if isinstance(err, IsADirectoryError):
        return DataError(f"{path}: is a directory, expected a file")
    if isinstance(err, PermissionError):
        return DataError(f"{path}: permission denied")
    if isinstance(err, (gzip.BadGzipFile, EOFError, zlib.error)) or path.name.endswith(".gz"):
        return DataError(f"{path}: corrupt or truncated gzip file ({err})")
    return DataError(f"{path}: cannot read ({err})")


#: What opening or reading a (gzip) text file raises on a damaged or unreadable file.
READ_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, OSError)


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Numbered non-empty lines of a (gzip) text file; a corrupt gzip stream or undecodable bytes are a DataError."""
    try:
        with open_text(path, encoding) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None
    except READ_ERRORS as err:
        raise _read_error(path, err) from None


def _json_records(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(path, encoding):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly nested arrays
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
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}:{lineno}: {name} {show(value)} is not a number") from None
    if not np.isfinite(number):
        raise DataError(f"{path}:{lineno}: {name} {show(value)} is not a finite number")
    return number


#: Timestamps must fit the int64 column they are stored in.
_INT64 = 2**63


def _timestamp(value: object, path: Path, lineno: int | str) -> int:
    number = _number(value, "timestamp", path, lineno)
    if not -_INT64 < number < _INT64:
        raise DataError(f"{path}:{lineno}: timestamp {show(value)} is out of range")
    return int(number)


def _number_column(values: list[str], lines: list[int], name: str, path: Path) -> np.ndarray:
    """A float64 column parsed from strings at once; the first bad value is reported with its line."""
    try:
        column = np.asarray(values, dtype=np.float64)
    except (ValueError, OverflowError):  # find the culprit (or accept what only numpy refused)
        column = np.array([_number(v, name, path, n) for v, n in zip(values, lines, strict=False)], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(column))
    if len(bad):
        raise DataError(f"{path}:{lines[bad[0]]}: {name} {show(values[bad[0]])} is not a finite number")
    return column


def _timestamp_column(values: list[str], lines: list[int], path: Path) -> np.ndarray:
    """An int64 column of Unix timestamps parsed from strings; an empty string means none (0)."""
    column = _number_column([v or "0" for v in values], lines, "timestamp", path)
    bad = np.flatnonzero(np.abs(column) >= float(_INT64))
    if len(bad):
        raise DataError(f"{path}:{lines[bad[0]]}: timestamp {show(values[bad[0]])} is out of range")
    return column.astype(np.int64)


#: The rating scales of the formats whose scale is known: (lowest, highest).
AMAZON_SCALE = (1.0, 5.0)
MOVIELENS_SCALE = (1.0, 5.0)
GROUPLENS_SCALE = (0.5, 5.0)


@dataclass(frozen=True)
class ReadOptions:
    """How every reader decodes and checks a source (the data section's ``encoding`` and ``rating_scale``)."""

    encoding: str = "utf-8"
    """Text encoding of the files; undecodable bytes are an error naming the file and line."""
    rating_scale: tuple[float, ...] = ()
    """(MIN, MAX) that every rating must lie in; empty: the format's own scale where it has one."""

    def check_ratings(
        self, ratings: np.ndarray, lines: Sequence[int], path: Path, own: tuple[float, float] | None, source: str
    ) -> None:
        """Refuse ratings outside the scale: ``rating_scale`` if given, else the format's ``own`` (None: any finite
        rating).

        :param ratings: the ratings read.
        :param lines: the line of each rating in ``path``.
        :param path: the file they come from.
        :param own: the format's scale, or None.
        :param source: the format's name, for the message.
        :raises DataError: naming the file, the line of the first rating outside, and how many are.
        """
        scale = self.rating_scale or own
        if not scale:
            return
        low, high = scale
        outside = np.flatnonzero((ratings < low) | (ratings > high))
        if not len(outside):
            return
        first = outside[0]
        which = f"--rating-scale {low:g},{high:g}" if self.rating_scale else f"the {source} scale {low:g}..{high:g}"
        how = "" if self.rating_scale else "; pass --rating-scale MIN,MAX if this file uses another scale"
        raise DataError(
            f"{path}:{lines[first]}: rating {ratings[first]:g} is outside {which} ({len(outside)} of {len(ratings)} "
            f"ratings are){how}"
        )


def _reviews(
    path: Path, user_key: str, item_key: str, rating_key: str, time_key: str, time_scale: float, options: ReadOptions
) -> tuple[list, list, np.ndarray, list]:
    users, items, ratings, times, lines = [], [], [], [], []
    for lineno, rec in _json_records(path, options.encoding):
        users.append(str(_field(rec, user_key, path, lineno)))
        items.append(str(_field(rec, item_key, path, lineno)))
        ratings.append(_number(_field(rec, rating_key, path, lineno), "rating", path, lineno))
        t = rec.get(time_key)
        times.append(int(_timestamp(t, path, lineno) / time_scale) if t is not None else 0)
        lines.append(lineno)
    rating_column = np.asarray(ratings, dtype=np.float64)
    options.check_ratings(rating_column, lines, path, AMAZON_SCALE, "Amazon")
    return users, items, rating_column, times


def _last_category(value: object) -> str:
    if isinstance(value, list) and value:
        return clean_text(value[-1])
    return clean_text(value) if isinstance(value, str) else ""


def _meta(
    path: Path | None, item_key: str, brand_key: str, category_key: str, encoding: str
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    texts: dict[str, str] = {}
    side: dict[str, dict[str, str]] = {}
    if path is None:
        return texts, side
    for lineno, rec in _json_records(path, encoding):
        item = str(_field(rec, item_key, path, lineno))
        text = clean_text(rec.get("title")) or clean_text(rec.get("description"))
        if text:
            texts[item] = text
        feats = {"brand": clean_text(rec.get(brand_key)), "category": _last_category(rec.get(category_key))}
        side[item] = {k: v for k, v in feats.items() if v}
    return texts, side


def load_amazon2018(reviews: Path, meta: Path | None = None, options: ReadOptions = ReadOptions()) -> RawData:
    """Amazon Review Data 2018: ``<Category>[_5].json[.gz]`` plus optional ``meta_<Category>.json[.gz]``.

    Reviews need ``reviewerID``, ``asin``, ``overall`` (1-5); ``unixReviewTime`` is optional.
    Item text is the metadata title, falling back to the description.
    """
    users, items, ratings, times = _reviews(reviews, "reviewerID", "asin", "overall", "unixReviewTime", 1.0, options)
    texts, side = _meta(meta, "asin", "brand", "category", options.encoding)
    files = (reviews,) + ((meta,) if meta else ())
    return RawData(users, items, ratings, times, texts, side, source=str(reviews), files=files)


def load_amazon2023(reviews: Path, meta: Path | None = None, options: ReadOptions = ReadOptions()) -> RawData:
    """Amazon Reviews 2023: ``<Category>.jsonl[.gz]`` (user_id, parent_asin, rating 1-5, timestamp in ms)
    plus optional ``meta_<Category>.jsonl[.gz]`` (parent_asin, title, description, store, categories)."""
    users, items, ratings, times = _reviews(reviews, "user_id", "parent_asin", "rating", "timestamp", 1000.0, options)
    texts, side = _meta(meta, "parent_asin", "store", "categories", options.encoding)
    files = (reviews,) + ((meta,) if meta else ())
    return RawData(users, items, ratings, times, texts, side, source=str(reviews), files=files)


def _split_rows(path: Path, sep: str, encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    for lineno, line in _lines(path, encoding):
        yield lineno, line.rstrip("\r\n").split(sep)


def _columns(path: Path, lineno: int, row: list[str], n: int) -> None:
    if len(row) < n:
        raise DataError(f"{path}:{lineno}: expected at least {n} fields, got {len(row)}")


def _cell(path: Path, lineno: int, row: list[str], index: int, column: str) -> str:
    value = row[index].strip() if index < len(row) else ""
    if not value:
        raise DataError(f"{path}:{lineno}: missing value in column {show(column)}")
    return value


def _delimited_interactions(path: Path, sep: str, options: ReadOptions) -> tuple[list, list, np.ndarray, np.ndarray]:
    """user, item, rating (1-5)[, timestamp] rows without a header (MovieLens 100K, 1M, 10M)."""
    users, items, ratings, stamps, lines = [], [], [], [], []
    for lineno, row in _split_rows(path, sep, options.encoding):
        _columns(path, lineno, row, 3)
        users.append(_cell(path, lineno, row, 0, "user"))
        items.append(_cell(path, lineno, row, 1, "item"))
        ratings.append(row[2].strip())
        stamps.append(row[3].strip() if len(row) > 3 else "")
        lines.append(lineno)
    rating_column = _number_column(ratings, lines, "rating", path)
    options.check_ratings(rating_column, lines, path, MOVIELENS_SCALE, "MovieLens")
    return users, items, rating_column, _timestamp_column(stamps, lines, path)


def _delimited_titles(path: Path, sep: str, title_column: int, encoding: str) -> dict[str, str]:
    titles = {}
    if not path.exists():
        return titles
    for lineno, row in _split_rows(path, sep, encoding):
        _columns(path, lineno, row, title_column + 1)
        titles[row[0].strip()] = clean_text(row[title_column])
    return titles


def load_movielens_100k(directory: Path, options: ReadOptions = ReadOptions()) -> RawData:
    """MovieLens 100K: ``u.data`` (tab-separated user, item, rating, timestamp) and ``u.item`` (``|``-separated, title
    2nd; Latin-1)."""
    data = directory / "u.data"
    users, items, ratings, times = _delimited_interactions(data, "\t", options)
    titles = _delimited_titles(directory / "u.item", "|", 1, "latin-1")
    return RawData(
        users, items, ratings, times, titles, source=str(directory),
        files=tuple(p for p in (data, directory / "u.item") if p.exists()),
    )


def load_movielens_1m(directory: Path, options: ReadOptions = ReadOptions()) -> RawData:
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat`` (Latin-1), both ``::``-separated."""
    data = directory / "ratings.dat"
    users, items, ratings, times = _delimited_interactions(data, "::", options)
    titles = _delimited_titles(directory / "movies.dat", "::", 1, "latin-1")
    return RawData(
        users, items, ratings, times, titles, source=str(directory),
        files=tuple(p for p in (data, directory / "movies.dat") if p.exists()),
    )


def _recbole_header(path: Path, lineno: int, header: list[str]) -> list[str]:
    return [h.split(":", 1)[0].strip() for h in header]


def load_recbole(inter: Path, options: ReadOptions = ReadOptions()) -> RawData:
    """RecBole atomic files: ``<name>.inter`` (``user_id:token``, ``item_id:token``, ``rating:float``,
    ``timestamp:float``) and optionally ``<name>.item`` with a title-like column."""
    rows = _split_rows(inter, "\t", options.encoding)
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
    users, items, ratings, times, lines = [], [], [], [], []
    for lineno, row in rows:
        _columns(inter, lineno, row, len(names))
        users.append(row[cu])
        items.append(row[ci])
        ratings.append(_number(row[cr], "rating", inter, lineno))
        times.append(_timestamp(row[ct], inter, lineno) if ct is not None else 0)
        lines.append(lineno)
    options.check_ratings(np.asarray(ratings, dtype=np.float64), lines, inter, None, "RecBole")
    titles: dict[str, str] = {}
    item_file = inter.with_suffix(".item")
    files = [inter]
    if item_file.exists():
        files.append(item_file)
        item_rows = _split_rows(item_file, "\t", options.encoding)
        _, header = next(item_rows, (0, []))
        inames = _recbole_header(item_file, 1, header)
        text_cols = [j for j, n in enumerate(inames) if "title" in n or n.endswith("name")]
        if "item_id" in inames and text_cols:
            cid, ctext = inames.index("item_id"), text_cols[0]
            for _, row in item_rows:
                if len(row) > max(cid, ctext):
                    titles[row[cid]] = clean_text(row[ctext])
    return RawData(users, items, ratings, times, titles, source=str(inter), files=tuple(files))


#: The column names of GroupLens's CSV releases (ratings.csv: userId,movieId,rating,timestamp;
#: movies.csv: movieId,title,genres).
GROUPLENS = CsvColumns(user_col="userId", item_col="movieId")

#: GroupLens's genres value of a movie without genres: no side feature.
GROUPLENS_NO_GENRES = "(no genres listed)"


def _csv_table(path: Path, sep: str, encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    """Numbered rows of a (gzip) CSV/TSV file, header first; blank lines are skipped."""
    reader = None
    try:
        with open_text(path, encoding) as f:
            reader = csv.reader(f, delimiter=sep)
            for row in reader:
                if len(row) > 1 or (row and row[0].strip()):
                    yield reader.line_num, row
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None
    except READ_ERRORS as err:
        raise _read_error(path, err) from None
    except csv.Error as err:
        where = f"{path}:{reader.line_num}" if reader is not None else str(path)
        raise DataError(f"{where}: malformed CSV ({err})") from None


def _header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> list[str]:
    _, header = next(rows, (0, None))
    if header is None:
        raise DataError(f"{path}: empty file (no header)")
    return [name.strip() for name in header]


def _column(path: Path, header: list[str], column: str) -> int:
    if column not in header:
        raise DataError(f"{path}:1: missing required column {show(column)} (has {show(', '.join(header), 120)})")
    return header.index(column)


def _sep_for(path: Path, columns: CsvColumns) -> str:
    """The separator, except that a ``.tsv`` file with the default ``,`` is read as TSV."""
    return "\t" if columns.sep == "," and ".tsv" in path.name.lower() else columns.sep


def _columns_for(header: list[str], columns: CsvColumns) -> tuple[CsvColumns, bool]:
    """The columns to read a file with this header: GroupLens's names when the defaults are absent.

    :returns: the columns, and whether it is GroupLens's (whose ratings are 0.5-5).
    """
    names = set(header)
    untouched = dataclasses.replace(columns, sep=CsvColumns.sep) == CsvColumns()
    if (
        untouched
        and not {columns.user_col, columns.item_col} <= names
        and {GROUPLENS.user_col, GROUPLENS.item_col} <= names
    ):
        return dataclasses.replace(GROUPLENS, sep=columns.sep), True
    return columns, False


_CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")


def _find_all(directory: Path, *stems: str) -> list[Path]:
    """Every ``<stem>.csv``/``.tsv`` (optionally gzip) in ``directory``, stems in order."""
    return [
        directory / f"{stem}{suffix}"
        for stem in stems
        for suffix in _CSV_SUFFIXES
        if (directory / f"{stem}{suffix}").is_file()
    ]


def _find(directory: Path, *stems: str) -> Path | None:
    """The first ``<stem>.csv``/``.tsv`` (optionally gzip) in ``directory``, trying stems in order."""
    found = _find_all(directory, *stems)
    return found[0] if found else None


def _csv_items(path: Path, columns: CsvColumns, encoding: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Item texts and categorical side features from an items file keyed by ``columns.item_col``."""
    rows = _csv_table(path, _sep_for(path, columns), encoding)
    header = _header(path, rows)
    key = _column(path, header, columns.item_col)
    title = header.index(columns.title_col) if columns.title_col in header else None
    extra = [(j, name) for j, name in enumerate(header) if name and name not in (columns.item_col, columns.title_col)]
    texts: dict[str, str] = {}
    side: dict[str, dict[str, str]] = {}
    for lineno, row in rows:
        item = _cell(path, lineno, row, key, columns.item_col)
        texts[item] = clean_text(row[title]) if title is not None and title < len(row) else ""
        values = {name: row[j].strip() for j, name in extra if j < len(row)}
        side[item] = {name: v for name, v in values.items() if v and v != GROUPLENS_NO_GENRES}
    return texts, side


def load_csv(
    interactions: Path, columns: CsvColumns = CsvColumns(), items: Path | None = None, source: str | None = None,
    options: ReadOptions = ReadOptions(),
) -> RawData:
    """A CSV/TSV interactions file (user, item, rating[, timestamp] columns, any file name).

    :param interactions: the interactions file (``.csv``, ``.tsv``, optionally ``.gz``).
    :param columns: column names and separator; see :class:`CsvColumns` for GroupLens headers.
    :param items: the items file (item, title, side features); by default ``items.csv`` beside
        ``interactions``, else ``movies.csv`` (GroupLens), else none.
    :param source: where the data came from, for messages (default: the interactions file).
    :param options: the encoding and the rating scale (GroupLens's 0.5-5 for its header, else any finite rating).
    """
    rows = _csv_table(interactions, _sep_for(interactions, columns), options.encoding)
    header = _header(interactions, rows)
    columns, grouplens = _columns_for(header, columns)
    cu, ci, cr = (_column(interactions, header, c) for c in (columns.user_col, columns.item_col, columns.rating_col))
    ct = header.index(columns.timestamp_col) if columns.timestamp_col in header else None
    users, item_ids, ratings, stamps, lines = [], [], [], [], []
    width = max(cu, ci, cr) + 1
    for lineno, row in rows:
        if len(row) < width or not (row[cu].strip() and row[ci].strip() and row[cr].strip()):
            for index, column in ((cu, columns.user_col), (ci, columns.item_col), (cr, columns.rating_col)):
                _cell(interactions, lineno, row, index, column)
        users.append(row[cu].strip())
        item_ids.append(row[ci].strip())
        ratings.append(row[cr].strip())
        stamps.append(row[ct].strip() if ct is not None and ct < len(row) else "")
        lines.append(lineno)
    # Numbers are parsed column-wise: GroupLens's larger releases have 20-33 million rows.
    rating_column = _number_column(ratings, lines, "rating", interactions)
    options.check_ratings(
        rating_column, lines, interactions, GROUPLENS_SCALE if grouplens else None, "GroupLens ratings.csv"
    )
    times = _timestamp_column(stamps, lines, interactions)
    items = items if items is not None else _find(interactions.parent, "items", "movies")
    texts, side = _csv_items(items, columns, options.encoding) if items is not None else ({}, {})
    files = (interactions,) + ((items,) if items is not None else ())
    return RawData(users, item_ids, rating_column, times, texts, side, source=source or str(interactions), files=files)


def load_csv_dir(directory: Path, columns: CsvColumns = CsvColumns(), options: ReadOptions = ReadOptions()) -> RawData:
    """A directory holding ``interactions.csv`` (user,item,rating[,timestamp]) and optionally
    ``items.csv`` (item,title,...), or GroupLens's ``ratings.csv`` and ``movies.csv``."""
    inter = _find(directory, "interactions", "ratings")
    if inter is None:
        raise DataError(f"{directory}: no interactions.csv or ratings.csv (or .tsv, .csv.gz) found")
    return load_csv(inter, columns, source=str(directory), options=options)


# ---- format detection ------------------------------------------------------------------------

FORMATS = ("amazon2018", "amazon2023", "movielens100k", "movielens1m", "recbole", "csv")

_AMAZON = re.compile(r"^(?!meta_)(?P<cat>.+?)(?P<five>_5)?\.(?P<ext>jsonl?)(\.gz)?$")


def _meta_for(reviews: Path, category: str, ext: str) -> Path | None:
    for name in (f"meta_{category}.{ext}.gz", f"meta_{category}.{ext}"):
        if (reviews.parent / name).exists():
            return reviews.parent / name
    return None


_CSV_FILE = re.compile(r"\.(csv|tsv)(\.gz)?$", re.IGNORECASE)


def directory_sources(directory: Path) -> list[tuple[Path, str]]:
    """The interactions files in a dataset directory that a reader would take, with their formats,
    in the order that format detection tries them."""
    found = [(p, "csv") for p in _find_all(directory, "interactions")]
    found += [
        (directory / name, fmt)
        for name, fmt in (("u.data", "movielens100k"), ("ratings.dat", "movielens1m"))
        if (directory / name).is_file()
    ]
    found += [(p, "csv") for p in _find_all(directory, "ratings")]  # GroupLens ml-latest(-small), ml-25m, ml-20m
    found += [(p, "recbole") for p in sorted(directory.glob("*.inter"))]
    return found


def _warn_if_ambiguous(directory: Path, fmt: str) -> None:
    """One warning when a directory holds the interactions files of several datasets: which one is read."""
    found = directory_sources(directory)
    chosen = next((p for p, f in found if f == fmt), None)
    others = [p.name for p, _ in found if p != chosen]
    if chosen is not None and others:
        warnings.warn(
            f"{directory} holds {chosen.name} and {', '.join(others)}; reading {chosen.name} ({fmt}); pass --format or "
            "the file itself to read another",
            stacklevel=3,
        )


def detect_format(path: Path) -> str:
    """Guess a source's format from its file names.

    :raises DataError: when nothing recognisable is there.
    """
    if path.is_dir():
        found = directory_sources(path)
        if found:
            return found[0][1]
        raise DataError(
            f"{path}: no recognisable dataset files (interactions.csv, ratings.csv, u.data, ratings.dat, *.inter); "
            "for Amazon files pass the review file itself"
        )
    name = path.name
    if name.endswith(".inter"):
        return "recbole"
    if name in ("u.data",):
        return "movielens100k"
    if name in ("ratings.dat",):
        return "movielens1m"
    if _CSV_FILE.search(name):
        return "csv"
    m = _AMAZON.match(name)
    if m:
        return "amazon2023" if m.group("ext") == "jsonl" else "amazon2018"
    raise DataError(f"{path}: cannot tell the dataset format from the file name; pass --format ({', '.join(FORMATS)})")


def load_raw(
    path: Path, format: str | None = None, columns: CsvColumns = CsvColumns(), options: ReadOptions = ReadOptions()
) -> RawData:
    """Read a dataset file or directory in any supported format.

    A directory holding the interactions files of several datasets (``u.data`` and ``ratings.csv``,
    say) is read as detection or ``format`` chooses, with one warning naming what was read.

    :param path: a review file, a MovieLens/RecBole/CSV directory, a file inside one, or a
        CSV/TSV interactions file of any name (read with ``columns``).
    :param format: one of :data:`FORMATS`; detected from the names when omitted.
    :param columns: separator and column names of a generic CSV file.
    :param options: the files' encoding and the ratings' scale.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    fmt = format or detect_format(path)
    readers: dict[str, Callable[[], RawData]] = {
        "amazon2018": lambda: _amazon(path, load_amazon2018, "json", options),
        "amazon2023": lambda: _amazon(path, load_amazon2023, "jsonl", options),
        "movielens100k": lambda: load_movielens_100k(path if path.is_dir() else path.parent, options),
        "movielens1m": lambda: load_movielens_1m(path if path.is_dir() else path.parent, options),
        "recbole": lambda: load_recbole(path if path.is_file() else _recbole_file(path), options),
        "csv": lambda: (
            load_csv_dir(path, columns, options) if path.is_dir() else load_csv(path, columns, options=options)
        ),
    }
    if fmt not in readers:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if path.is_dir():
        _warn_if_ambiguous(path, fmt)
    return readers[fmt]()


def _recbole_file(directory: Path) -> Path:
    found = sorted(directory.glob("*.inter"))
    if not found:
        raise DataError(f"{directory}: no RecBole *.inter file found")
    return found[0]


def _amazon(
    path: Path, reader: Callable[[Path, Path | None, ReadOptions], RawData], ext: str, options: ReadOptions
) -> RawData:
    if path.is_dir():
        raise DataError(f"{path}: pass the Amazon review file itself, e.g. {path}/Appliances.json.gz")
    m = _AMAZON.match(path.name)
    category = m.group("cat") if m else path.name.split(".")[0]
    return reader(path, _meta_for(path, category, ext), options)
