"""Fuzz the readers: 200 corrupted variants of small real files, each through the CLI in-process.

Every variant must end in exit 0 (with a JSON answer) or exit 2 with exactly one stderr line
starting with ``error:``; never an uncaught exception. Two corruptions must always be refused,
naming the file and line, never read as something else: bytes that are not UTF-8 (never replaced
by U+FFFD) and ratings outside the format's scale. The sources are slices of the embedded
data (Amazon 2018 Gift Cards as review JSON plus metadata; MovieLens latest-small as GroupLens's
ratings.csv and movies.csv), so the test needs nothing outside the package. On failure it
prints the seed, the variant number, the mutations and where the variant's files are kept.
Set ``CORAL_FUZZ_SEED`` to explore other variants.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import os
import re
import shutil
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import coral.cli
from coral.data.registry import EMBEDDED

N_VARIANTS = 200
SEED = int(os.environ.get("CORAL_FUZZ_SEED", "0"))
BOM = b"\xef\xbb\xbf"


def read_embedded(name: str, file: str) -> list[dict[str, str]]:
    """The rows of one of the embedded gzip CSV files."""
    text = gzip.decompress((EMBEDDED[name] / file).read_bytes()).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def dense_slice(rows: list[dict[str, str]], n_items: int, n_users: int) -> list[dict[str, str]]:
    """Rows of the ``n_users`` most active users on the ``n_items`` most popular items: a slice
    dense enough to survive the default 5-core, so that unbroken variants load."""
    top_items = {i for i, _ in Counter(r["item"] for r in rows).most_common(n_items)}
    rows = [r for r in rows if r["item"] in top_items]
    top_users = {u for u, _ in Counter(r["user"] for r in rows).most_common(n_users)}
    return [r for r in rows if r["user"] in top_users]


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


@pytest.fixture(scope="module")
def sources() -> dict[str, dict[str, bytes]]:
    """Named sources: file name -> bytes of each file (the first file is the one passed to the CLI,
    or, for a source whose first name is ``""``, the folder holding the files)."""
    gift = dense_slice(read_embedded("gift_cards", "interactions.csv.gz"), n_items=20, n_users=60)
    gift_items = {r["item"]: r for r in read_embedded("gift_cards", "items.csv.gz")}
    reviews = "".join(
        json.dumps(
            {
                "overall": float(r["rating"]), "verified": True, "reviewerID": r["user"], "asin": r["item"],
                "unixReviewTime": int(r["timestamp"]),
            }
        )
        + "\n"
        for r in gift
    ).encode()
    meta = "".join(
        json.dumps(
            {
                "asin": i, "title": gift_items[i]["title"], "brand": gift_items[i]["brand"],
                "category": ["Gift Cards", gift_items[i]["category"]],
            }
        )
        + "\n"
        for i in sorted({r["item"] for r in gift})
    ).encode()
    movies = dense_slice(read_embedded("movielens_small", "interactions.csv.gz"), n_items=40, n_users=30)
    movie_rows = {r["item"]: r for r in read_embedded("movielens_small", "items.csv.gz")}
    ratings = csv_bytes(
        ["userId", "movieId", "rating", "timestamp"],
        [[r["user"], r["item"], f"{float(r['rating']):.1f}", r["timestamp"]] for r in movies],
    )
    titles = csv_bytes(
        ["movieId", "title", "genres"],
        [
            [i, movie_rows[i]["title"], movie_rows[i]["genres"] or "(no genres listed)"]
            for i in sorted({r["item"] for r in movies}, key=int)
        ],
    )
    return {
        "amazon_json": {"Gift_Cards_5.json": reviews, "meta_Gift_Cards.json": meta},
        "amazon_gzip": {
            "Gift_Cards_5.json.gz": gzip.compress(reviews, mtime=0),
            "meta_Gift_Cards.json.gz": gzip.compress(meta, mtime=0),
        },
        "grouplens_dir": {"": b"", "ratings.csv": ratings, "movies.csv": titles},
        "grouplens_file": {"ratings.csv": ratings, "movies.csv": titles},
    }


# ---- mutations: each takes the file's (decompressed) bytes and a generator -------------------------------


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def flip_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(0, max(len(out), 1), size=int(rng.integers(1, 6))):
        if out:
            out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def cut_at_byte(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def delete_lines(data: bytes, rng: np.random.Generator) -> bytes:
    lines = _lines(data)
    drop = set(rng.integers(0, len(lines), size=int(rng.integers(1, 4))).tolist())
    return b"\n".join(line for j, line in enumerate(lines) if j not in drop)


def cut_line(data: bytes, rng: np.random.Generator) -> bytes:
    lines = _lines(data)
    j = int(rng.integers(0, len(lines)))
    lines[j] = lines[j][: int(rng.integers(0, len(lines[j]) + 1))]
    return b"\n".join(lines)


#: Values that a field may be changed into, JSON-encoded for JSON lines.
WEIRD_VALUES = [
    None, [], {}, "", "abc", "five", True, -1, 0, 1e308, "1e400", "nan", "inf", 10**30, "99999999999999999999999",
    [1, [2]], {"a": 1}, "\u00e9\u4e2d", "\ud800", "a\nb", 3.5,
]


def change_field(data: bytes, rng: np.random.Generator) -> bytes:
    """A JSON line gets a field deleted or its value's type changed; a CSV line likewise."""
    lines = _lines(data)
    j = int(rng.integers(0, len(lines)))
    text = lines[j].decode("utf-8", errors="replace")
    delete = bool(rng.integers(0, 2))
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if isinstance(record, dict) and record:
        key = list(record)[int(rng.integers(0, len(record)))]
        if delete:
            del record[key]
        else:
            record[key] = WEIRD_VALUES[int(rng.integers(0, len(WEIRD_VALUES)))]
        lines[j] = json.dumps(record).encode()
    else:
        fields = text.split(",")
        k = int(rng.integers(0, len(fields)))
        if delete:
            del fields[k]
        else:
            value = WEIRD_VALUES[int(rng.integers(0, len(WEIRD_VALUES)))]
            fields[k] = value if isinstance(value, str) else json.dumps(value)
        lines[j] = ",".join(fields).encode("utf-8", errors="surrogatepass")
    return b"\n".join(lines)


#: Numbers no column can hold: overflow to infinity, beyond int64, not a number at all.
EXTREME_NUMBERS = [
    b"1" + b"0" * 400, b"1e400", b"-1e999", b"99999999999999999999", b"NaN", b"Infinity", b"-0", b"0x1F", b"1_000",
]
_DIGITS = re.compile(rb"\d+(\.\d+)?")


def extreme_number(data: bytes, rng: np.random.Generator) -> bytes:
    """A number on a random line (a rating, a timestamp, an id) becomes an extreme one."""
    lines = _lines(data)
    for j in rng.permutation(len(lines)):
        found = list(_DIGITS.finditer(lines[j]))
        if found:
            m = found[int(rng.integers(0, len(found)))]
            value = EXTREME_NUMBERS[int(rng.integers(0, len(EXTREME_NUMBERS)))]
            lines[j] = lines[j][: m.start()] + value + lines[j][m.end() :]
            break
    return b"\n".join(lines)


def add_bom(data: bytes, rng: np.random.Generator) -> bytes:
    if rng.integers(0, 3) == 0:  # a mark in the middle of the file is data, not a mark
        lines = _lines(data)
        j = int(rng.integers(0, len(lines)))
        lines[j] = BOM + lines[j]
        return b"\n".join(lines)
    return BOM + data


def empty(data: bytes, rng: np.random.Generator) -> bytes:
    return [b"", b"\n", b"\n\n  \n", BOM, data.split(b"\n", 1)[0] + b"\n"][int(rng.integers(0, 5))]


def insert_junk(data: bytes, rng: np.random.Generator) -> bytes:
    junk = [
        b"\x00", b"\xff\xfe\xfd", b"\r", b'"', b'"unterminated', b"[" * 5000, b"x" * 200_000, b"\x1f\x8b\x08\x00",
        b",,,,", b"\t",
    ]
    pos = int(rng.integers(0, len(data) + 1))
    return data[:pos] + junk[int(rng.integers(0, len(junk)))] + data[pos:]


def line_endings(data: bytes, rng: np.random.Generator) -> bytes:
    return data.replace(b"\n", [b"\r\n", b"\r", b"\n\n"][int(rng.integers(0, 3))])


#: Byte sequences that are not UTF-8: Latin-1 and cp1252 letters, a lone continuation byte, a
#: truncated two-byte sequence, an overlong encoding, a UTF-16 surrogate encoded in UTF-8.
NOT_UTF8 = [b"\xe9", b"\xe8", b"\x80", b"\xc3", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"Mis\xe9rables"]


def not_utf8(data: bytes, rng: np.random.Generator) -> tuple[bytes, int]:
    """Bytes outside UTF-8 inserted into a random line (a non-empty one if there is); returns the data and that line
    (1-based)."""
    lines = _lines(data)
    candidates = [j for j, line in enumerate(lines) if line.strip()] or [0]
    j = candidates[int(rng.integers(0, len(candidates)))]
    pos = int(rng.integers(0, len(lines[j]) + 1))
    lines[j] = lines[j][:pos] + NOT_UTF8[int(rng.integers(0, len(NOT_UTF8)))] + lines[j][pos:]
    return b"\n".join(lines), j + 1


#: Ratings outside every built-in scale (Amazon and MovieLens 1-5, GroupLens 0.5-5).
OFF_SCALE = ["99", "-1", "0", "5.5", "0.25", "1000000"]


def _rated(line: bytes) -> bool:
    """Whether a line is an interaction with a rating: a JSON review with ``overall``, or a CSV row with a number
    third."""
    try:
        return isinstance(json.loads(line), dict) and "overall" in json.loads(line)
    except ValueError:
        fields = line.split(b",")
        return len(fields) >= 3 and _DIGITS.fullmatch(fields[2].strip()) is not None


def rating_off_scale(data: bytes, rng: np.random.Generator) -> tuple[bytes, int]:
    """One data line's rating (JSON ``overall``, or a CSV's third column) set outside the scale;
    returns the data and that line (0 when no line has a rating: the data is unchanged)."""
    lines = _lines(data)
    rated = [j for j, line in enumerate(lines) if _rated(line)]
    if not rated:
        return data, 0
    j = rated[int(rng.integers(0, len(rated)))]
    value = OFF_SCALE[int(rng.integers(0, len(OFF_SCALE)))]
    if lines[j].lstrip().startswith(b"{"):
        record = json.loads(lines[j])
        record["overall"] = float(value)
        lines[j] = json.dumps(record).encode()
    else:
        fields = lines[j].split(b",")
        fields[2] = value.encode()
        lines[j] = b",".join(fields)
    return b"\n".join(lines), j + 1


def mutation(
    name: str, corrupt: Callable[[bytes, np.random.Generator], tuple[bytes, int]]
) -> Callable[[bytes, np.random.Generator], bytes]:
    """A fuzz mutation from a corruption that also reports its line."""

    def mutate(data: bytes, rng: np.random.Generator) -> bytes:
        return corrupt(data, rng)[0]

    mutate.__name__ = name
    return mutate


MUTATIONS: list[Callable[[bytes, np.random.Generator], bytes]] = [
    flip_bytes, cut_at_byte, delete_lines, cut_line, change_field, change_field, extreme_number, extreme_number,
    add_bom, empty, insert_junk, line_endings, mutation("not_utf8", not_utf8),
    mutation("rating_off_scale", rating_off_scale),
]


def make_variant(files: dict[str, bytes], rng: np.random.Generator) -> tuple[dict[str, bytes], list[str]]:
    """Corrupt one file of a source with one to three mutations (and maybe its gzip stream)."""
    names = [n for n in files if n]
    target = names[0] if rng.random() < 0.75 else names[int(rng.integers(0, len(names)))]
    data = gzip.decompress(files[target]) if target.endswith(".gz") else files[target]
    done = []
    for _ in range(int(rng.integers(1, 4))):
        mutation = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
        data = mutation(data, rng)
        done.append(f"{mutation.__name__}({target})")
    if target.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
        if rng.random() < 0.3:  # damage the compressed stream itself
            data = [flip_bytes, cut_at_byte][int(rng.integers(0, 2))](data, rng)
            done.append(f"gzip-stream({target})")
    return {**files, target: data}, done


def run_stats(path: Path) -> tuple[int, str, str]:
    """``coral data stats --dataset PATH --json`` in-process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = coral.cli.main(["data", "stats", "--dataset", str(path), "--json"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def write_source(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True)
    for name, data in files.items():
        if name:
            (directory / name).write_bytes(data)
    return directory if "" in files else directory / next(iter(files))


def check(code: int, out: str, err: str) -> str | None:
    """What is wrong with one run's outcome, or None."""
    if code == 0:
        stats = json.loads(out)
        if sum(s["interactions"] for s in stats["splits"].values()) != stats["interactions"]:
            return "split counts do not add up"
        return None
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    if code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err:
        return None
    return f"exit {code} with stderr {err!r}"


def test_unbroken_sources_load(sources: dict[str, dict[str, bytes]], tmp_path: Path, monkeypatch) -> None:
    """The fuzz starts from files that load: otherwise every variant would fail the same way."""
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    for name, files in sources.items():
        code, out, err = run_stats(write_source(tmp_path / name, files))
        assert code == 0, f"{name}: {err}"
        assert json.loads(out)["splits"]["test"]["interactions"] > 0


@pytest.mark.filterwarnings("ignore:.*items have no text")
def test_fuzz_corrupted_files(sources: dict[str, dict[str, bytes]], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    if hasattr(coral.cli, "build_parser"):
        # Building the whole command tree 200 times would take most of the time; one parser serves all.
        monkeypatch.setattr(coral.cli, "build_parser", functools.lru_cache(maxsize=1)(coral.cli.build_parser))
    monkeypatch.setenv("CORAL_DATA_DIR", str(tmp_path / "no-data"))
    rng = np.random.default_rng(SEED)
    kinds = list(sources)
    outcomes: Counter[int] = Counter()
    start = time.perf_counter()
    for n in range(N_VARIANTS):
        kind = kinds[n % len(kinds)]
        files, mutations = make_variant(sources[kind], rng)
        path = write_source(tmp_path / f"variant{n:03d}-{kind}", files)
        where = f"seed {SEED}, variant {n} ({kind}: {', '.join(mutations)}), files kept in {path}"
        try:
            code, out, err = run_stats(path)
        except Exception:  # noqa: BLE001 - the point of the test: report any uncaught exception
            pytest.fail(f"{where}: uncaught exception\n{traceback.format_exc()}")
        problem = check(code, out, err)
        if problem:
            changed = {k: v[:300] for k, v in files.items() if k and v != sources[kind].get(k)}
            pytest.fail(f"{where}: {problem}\nchanged files (first 300 bytes): {changed!r}")
        outcomes[code] += 1
        shutil.rmtree(path if path.is_dir() else path.parent)  # only a failing variant's files are kept
    elapsed = time.perf_counter() - start
    # Both outcomes occur: a fuzz whose variants all fail (or all pass) tests little.
    assert outcomes[0] >= 10 and outcomes[2] >= 50, outcomes
    assert elapsed < 60, f"{N_VARIANTS} variants took {elapsed:.0f} s"


@pytest.mark.parametrize(
    "corrupt,message", [(not_utf8, "not valid utf-8 text (byte 0x"), (rating_off_scale, "is outside the")]
)
def test_encoding_and_range_corruptions_are_refused_with_file_and_line(
    corrupt, message, sources: dict[str, dict[str, bytes]], tmp_path: Path, monkeypatch
) -> None:
    """Bytes outside UTF-8 and ratings outside the scale, in the interactions file of every source:
    always exit 2, one line naming the file and the corrupted line (before: U+FFFD and a silent label)."""
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(SEED + 1)
    for kind, files in sources.items():
        target = [n for n in files if n][0]
        for n in range(5):
            plain = gzip.decompress(files[target]) if target.endswith(".gz") else files[target]
            data, line = corrupt(plain, rng)
            variant = {**files, target: gzip.compress(data, mtime=0) if target.endswith(".gz") else data}
            path = write_source(tmp_path / f"{corrupt.__name__}-{kind}-{n}", variant)
            code, out, err = run_stats(path)
            assert code == 2 and check(code, out, err) is None, (kind, n, err)
            assert f"{target}:{line}: " in err and message in err, (kind, n, line, err)
