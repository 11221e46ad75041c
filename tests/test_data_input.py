"""Input that real users have (issue 10): byte-order marks, CSV layout values, MovieLens as
GroupLens ships it, a CSV file given by path, the missing-title warning from the cache, and
numbers no column can hold."""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

import coral.data.registry
from coral.cli import main
from coral.data import CsvColumns, load_dataset, load_raw
from coral.data.registry import resolve
from coral.errors import DataError

BOM = codecs.BOM_UTF8


def ratings_grid(n_users: int = 8, n_items: int = 8) -> list[tuple[str, str, float, int]]:
    """Every user rates every item (so any k-core up to 8 keeps all), half stars included."""
    return [
        (str(u + 1), str(i + 1), 0.5 + (u * 3 + i) % 10 / 2, 964_982_703 + u * 100 + i)
        for u in range(n_users)
        for i in range(n_items)
    ]


def write(path: Path, text: str, bom: bool = False) -> Path:
    """Write UTF-8 text (gzip-compressed for a ``.gz`` name), optionally with a byte-order mark."""
    data = (BOM if bom else b"") + text.encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of an in-process ``coral`` command; stderr is at most one line."""
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) <= 1, captured.err
    return code, captured.out, captured.err.strip()


def amazon_lines(
    key_user: str = "reviewerID", key_item: str = "asin", key_rating: str = "overall", key_time: str = "unixReviewTime"
) -> str:
    # Amazon ratings are whole stars 1-5 (half stars are outside the format's scale).
    return "".join(
        json.dumps({key_user: f"u{u}", key_item: f"i{i}", key_rating: float(int(r + 0.5)), key_time: t}) + "\n"
        for u, i, r, t in ratings_grid()
    )


def grouplens_dir(directory: Path, bom: bool = False, suffix: str = ".csv") -> Path:
    """A GroupLens-layout MovieLens folder: ratings.csv and movies.csv as ml-latest-small has them
    (CRLF line ends, half stars, quoted titles with commas, a movie without genres)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{u},{i},{r:.1f},{t}\r\n" for u, i, r, t in ratings_grid())
    write(directory / f"ratings{suffix}", "userId,movieId,rating,timestamp\r\n" + rows, bom)
    genres = [
        "Adventure|Animation|Children", "Comedy|Romance", "(no genres listed)", "Drama", "Comedy|Romance", "Drama",
        "Horror", "Drama",
    ]
    movies = "".join(f'{i + 1},"Movie {i + 1}, The ({1990 + i})",{genres[i]}\r\n' for i in range(8))
    write(directory / f"movies{suffix}", "movieId,title,genres\r\n" + movies, bom)
    return directory


# ---- byte-order marks ------------------------------------------------------------------------------


def same_counts(a: dict, b: dict) -> bool:
    """Two ``stats()`` dicts agree on everything but the source path (in the config) and the fingerprint."""

    def strip(stats: dict) -> dict:
        return {
            **{k: v for k, v in stats.items() if k != "fingerprint"},
            "config": {k: v for k, v in stats["config"].items() if k != "dataset"},
        }

    return strip(a) == strip(b)


@pytest.mark.parametrize("name", ["Software.json", "Software.json.gz", "Software_5.json.gz"])
def test_bom_amazon2018_json_loads_like_without(tmp_path: Path, name: str) -> None:
    (tmp_path / "plain").mkdir(), (tmp_path / "bom").mkdir()
    plain, marked = (
        write(tmp_path / "plain" / name, amazon_lines()),
        write(tmp_path / "bom" / name, amazon_lines(), bom=True),
    )
    a, b = load_raw(plain), load_raw(marked)
    assert len(a) == len(b) == 64
    assert a.users.tolist() == b.users.tolist() and a.ratings.tolist() == b.ratings.tolist()
    with pytest.warns(UserWarning):
        sa, sb = load_dataset(str(plain), use_cache=False).stats(), load_dataset(str(marked), use_cache=False).stats()
    assert same_counts(sa, sb)


def test_bom_amazon2023_jsonl_and_meta(tmp_path: Path) -> None:
    lines = amazon_lines("user_id", "parent_asin", "rating", "timestamp")
    meta = "".join(json.dumps({"parent_asin": f"i{i}", "title": f"Toy {i}"}) + "\n" for i in range(8))
    for folder, bom in (("plain", False), ("bom", True)):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / "Toys.jsonl.gz", lines, bom)
        write(tmp_path / folder / "meta_Toys.jsonl.gz", meta, bom)
    a, b = load_raw(tmp_path / "plain" / "Toys.jsonl.gz"), load_raw(tmp_path / "bom" / "Toys.jsonl.gz")
    assert len(a) == len(b) == 64 and a.item_text == b.item_text and len(b.item_text) == 8


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv"])
def test_bom_csv_and_items_load_like_without(tmp_path: Path, capsys, suffix: str) -> None:
    sep = "\t" if ".tsv" in suffix else ","
    inter = f"user{sep}item{sep}rating{sep}timestamp\n" + "".join(
        f"u{u}{sep}i{i}{sep}{r}{sep}{t}\n" for u, i, r, t in ratings_grid()
    )
    items = f"item{sep}title{sep}genre\n" + "".join(f"i{i + 1}{sep}Thing {i + 1}{sep}g{i % 3}\n" for i in range(8))
    for folder, bom in (("plain", False), ("bom", True)):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / f"interactions{suffix}", inter, bom)
        write(tmp_path / folder / f"items{suffix}", items, bom)
    a, b = load_raw(tmp_path / "plain"), load_raw(tmp_path / "bom")
    assert len(a) == len(b) == 64 and a.users.tolist() == b.users.tolist()
    assert a.item_text == b.item_text and b.item_text["i1"] == "Thing 1" and b.item_meta == a.item_meta
    stats = []
    for folder in ("plain", "bom"):
        code, out, err = run_cli(["data", "stats", "--dataset", str(tmp_path / folder), "--json"], capsys)
        assert code == 0, err
        stats.append({k: v for k, v in json.loads(out).items() if k != "name"})
    assert same_counts(stats[0], stats[1]) and stats[0]["interactions"] == 64


def test_bom_grouplens_and_movielens_100k(tmp_path: Path) -> None:
    a, b = load_raw(grouplens_dir(tmp_path / "plain")), load_raw(grouplens_dir(tmp_path / "bom", bom=True))
    assert len(a) == len(b) == 64 and a.item_text == b.item_text and a.item_meta == b.item_meta
    ml100k = tmp_path / "ml-100k"
    ml100k.mkdir()
    (ml100k / "u.data").write_bytes(
        BOM + "".join(f"{u}\t{i}\t{int(r + 0.5)}\t{t}\n" for u, i, r, t in ratings_grid()).encode()
    )
    (ml100k / "u.item").write_bytes(
        BOM + "".join(f"{i + 1}|Film {i + 1} (1995)|01-Jan-1995||http://x|0\n" for i in range(8)).encode("latin-1")
    )
    raw = load_raw(ml100k)
    assert raw.users[0] == "1" and raw.item_text["1"] == "Film 1 (1995)" and len(raw.item_text) == 8


# ---- CSV layout values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sep": ""}, "sep must be a single character"), ({"sep": ";;"}, "sep must be a single character .* got ';;'"),
        ({"sep": '"'}, "sep must not be a quote or a line break"),
        ({"sep": "\n"}, "sep must not be a quote or a line break"),
        ({"user_col": ""}, "user_col must name a column, got ''"),
        ({"rating_col": "  "}, "rating_col must name a column"),
        ({"user_col": "id", "item_col": "id"}, "item_col must differ from the user column, both are 'id'"),
        ({"timestamp_col": "rating"}, "timestamp_col must differ from the rating column"),
        ({"title_col": "item"}, "title_col must differ from the item column"),
    ],
)
def test_csv_layout_refuses_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        CsvColumns(**fields)


def test_csv_layout_tab_spellings() -> None:
    assert CsvColumns(sep="\\t").sep == CsvColumns(sep="tab").sep == CsvColumns(sep="\t").sep == "\t"
    assert CsvColumns(user_col=" uid ").user_col == "uid"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--sep", "", "error: --sep must be a single character (\\t for tab), got ''"),
        ("--sep", "::", "error: --sep must be a single character (\\t for tab), got '::'"),
        ("--user-col", "", "error: --user-col must name a column, got ''"),
        ("--item-col", "user", "error: --item-col must differ from the user column, both are 'user'"),
    ],
)
def test_cli_bad_layout_value_is_one_line(tmp_path: Path, capsys, option: str, value: str, message: str) -> None:
    write(
        tmp_path / "interactions.csv", "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in ratings_grid())
    )
    code, out, err = run_cli(["data", "stats", "--dataset", str(tmp_path), option, value], capsys)
    assert code == 2 and err == message and out == ""


def test_header_with_a_line_break_gives_one_line(tmp_path: Path, capsys) -> None:
    write(
        tmp_path / "interactions.csv",
        '"us\ner",item,rating\n' + "".join(f"{u},{i},{r}\n" for u, i, r, _ in ratings_grid()),
    )
    code, _, err = run_cli(["data", "stats", "--dataset", str(tmp_path)], capsys)
    assert code == 2 and "missing required column 'user'" in err and "us\\ner" in err


# ---- MovieLens as GroupLens ships it ------------------------------------------------------------------


def test_grouplens_directory_with_no_options(tmp_path: Path, capsys) -> None:
    folder = grouplens_dir(tmp_path / "ml-latest-small")
    code, out, err = run_cli(["data", "stats", "--dataset", str(folder), "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert (
        stats["users"] == 8
        and stats["items"] == 8
        and stats["interactions"] == 64
        and stats["name"] == "ml-latest-small"
    )
    ds = load_dataset(str(folder), use_cache=False)
    assert ds.item_ids[:2] == ["1", "2"] and ds.item_text[0] == "Movie 1, The (1990)"
    assert set(ds.item_features) == {"genres"}
    genres = ds.item_features["genres"]
    assert genres[ds.item_ids.index("3")] == 0  # "(no genres listed)" is no feature
    assert genres[ds.item_ids.index("2")] == genres[ds.item_ids.index("5")] > 0  # the same genre list, one code
    assert sorted(ds.train.rating.tolist() + ds.valid.rating.tolist() + ds.test.rating.tolist()) == sorted(
        r for _, _, r, _ in ratings_grid()
    )


def test_grouplens_ratings_file_itself(tmp_path: Path, capsys) -> None:
    folder = grouplens_dir(tmp_path / "ml-latest-small")
    by_dir, by_file = (
        load_dataset(str(folder), use_cache=False),
        load_dataset(str(folder / "ratings.csv"), use_cache=False),
    )
    assert by_file.item_text == by_dir.item_text and by_file.test.pairs() == by_dir.test.pairs()
    assert resolve(str(folder / "ratings.csv"))[0] == "ml-latest-small"
    code, out, err = run_cli(["data", "stats", "--dataset", str(folder / "ratings.csv"), "--json"], capsys)
    assert code == 0 and json.loads(out)["interactions"] == 64, err
    code, out, err = run_cli(
        ["data", "stats", "--dataset", str(folder / "ratings.csv"), "--format", "csv", "--json"], capsys
    )
    assert code == 0 and json.loads(out)["interactions"] == 64, err


def test_grouplens_gzip_files(tmp_path: Path) -> None:
    folder = grouplens_dir(tmp_path / "gz", suffix=".csv.gz")
    ds = load_dataset(str(folder), use_cache=False)
    assert ds.n_users == 8 and ds.item_text[0] == "Movie 1, The (1990)"


def test_grouplens_names_not_taken_when_columns_are_given(tmp_path: Path) -> None:
    """Only an untouched default layout falls back to GroupLens's names."""
    folder = grouplens_dir(tmp_path / "ml")
    with pytest.raises(DataError, match="missing required column 'uid'"):
        load_raw(folder, columns=CsvColumns(user_col="uid"))
    raw = load_raw(folder, columns=CsvColumns(user_col="userId", item_col="movieId"))
    assert len(raw) == 64 and raw.item_text["1"] == "Movie 1, The (1990)"


def test_missing_grouplens_release_by_name(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CORAL_DATA_DIR", str(tmp_path))
    code, _, err = run_cli(["data", "stats", "--dataset", "ml-25m"], capsys)
    assert code == 2 and "ml-25m" in err and "grouplens.org" in err
    grouplens_dir(tmp_path / "ml-25m")
    assert resolve("ml-25m") == ("ml-25m", tmp_path / "ml-25m")


# ---- a CSV file path given directly ----------------------------------------------------------------------


def test_format_csv_reads_a_file_of_any_name(tmp_path: Path, capsys) -> None:
    """`--format csv PATH` reads PATH as the interactions file, whatever its name, with items.csv beside it."""
    write(
        tmp_path / "my_export.tsv", "uid\tiid\tstars\n" + "".join(f"{u}\t{i}\t{r}\n" for u, i, r, _ in ratings_grid())
    )
    write(tmp_path / "items.csv", "iid\ttitle\n" + "".join(f"{i + 1}\tThing {i + 1}\n" for i in range(8)))
    columns = CsvColumns(sep="\t", user_col="uid", item_col="iid", rating_col="stars")
    raw = load_raw(tmp_path / "my_export.tsv", "csv", columns)
    assert len(raw) == 64 and raw.item_text["3"] == "Thing 3"
    args = [
        "data", "stats", "--dataset", str(tmp_path / "my_export.tsv"), "--format", "csv", "--sep", "\\t",
        "--user-col", "uid", "--item-col", "iid", "--rating-col", "stars", "--json",
    ]
    code, out, err = run_cli(args, capsys)
    assert code == 0 and json.loads(out)["interactions"] == 64, err


def test_csv_file_detected_by_extension(tmp_path: Path) -> None:
    write(tmp_path / "export.csv", "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in ratings_grid()))
    assert len(load_raw(tmp_path / "export.csv")) == 64
    # A generic ratings.csv (not GroupLens's columns) is read with the default names.
    (tmp_path / "g").mkdir()
    write(tmp_path / "g" / "ratings.csv", "user,item,rating\n1,2,3\n")
    assert load_raw(tmp_path / "g" / "ratings.csv").items.tolist() == ["2"]


# ---- the missing-title warning, also from the cache ---------------------------------------------------------


def test_missing_title_warning_on_every_load(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "d"
    src.mkdir()
    write(src / "interactions.csv", "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in ratings_grid()))
    with pytest.warns(UserWarning, match="8 of 8 items have no text"):
        first = load_dataset(str(src))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(coral.data.registry, "build_dataset", no_rebuild)
    with pytest.warns(UserWarning, match="8 of 8 items have no text") as record:
        again = load_dataset(str(src))
    assert len(record) == 1 and again.fingerprint == first.fingerprint
    # A cache entry written before warnings were stored still warns (derived from the texts).
    (meta,) = (tmp_path / "cache" / "datasets").glob("*/meta.json")
    stored = json.loads(meta.read_text())
    assert stored["warnings"] == ["d: 8 of 8 items have no text; using the fallback 'item <id>'"]
    del stored["warnings"]
    meta.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="8 of 8 items have no text"):
        load_dataset(str(src))


def test_no_warning_when_every_item_has_a_title(tmp_path: Path, monkeypatch, recwarn) -> None:
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    folder = grouplens_dir(tmp_path / "ml")
    load_dataset(str(folder))
    load_dataset(str(folder))
    assert not [w for w in recwarn if "have no text" in str(w.message)]


# ---- numbers no column can hold (found by the fuzz test) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("unixReviewTime", "1" + "0" * 30, "timestamp '1000000000000000000000000000000' is out of range"),
        ("overall", "1" + "0" * 400, "is not a number"), ("overall", "1e400", "is not a finite number"),
        ("unixReviewTime", "-1e999", "is not a finite number"),
    ],
)
def test_json_numbers_out_of_range(tmp_path: Path, capsys, field: str, text: str, message: str) -> None:
    lines = amazon_lines().splitlines()
    record = json.loads(lines[5])
    lines[5] = json.dumps(record).replace(f'"{field}": {json.dumps(record[field])}', f'"{field}": {text}')
    path = write(tmp_path / "Software.json", "\n".join(lines) + "\n")
    code, _, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:6:" in err and message in err and len(err) < 300


def test_csv_timestamp_out_of_range(tmp_path: Path, capsys) -> None:
    write(tmp_path / "interactions.csv", "user,item,rating,timestamp\nu1,i1,5,99999999999999999999\n")
    code, _, err = run_cli(["data", "stats", "--dataset", str(tmp_path)], capsys)
    assert code == 2 and "interactions.csv:2: timestamp '99999999999999999999' is out of range" in err


def test_deeply_nested_json_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "Software.json", amazon_lines() + "[" * 100_000 + "\n")
    code, _, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:65:" in err and "not a valid JSON record" in err
