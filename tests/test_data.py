"""The data pipeline: real Amazon files, every format, preprocessing invariants, cache, bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coral.cli import main
from coral.data import CsvColumns, DataConfig, RawData, build_dataset, load_dataset, load_raw
from coral.data.dataset import _dedup_latest
from coral.errors import CoralError, DataError


def check_invariants(ds, k: int) -> None:
    """k-core holds, splits are disjoint and cover everything, no head item outside train."""
    rows = [ds.train, ds.valid, ds.test]
    users = np.concatenate([r.user for r in rows])
    items = np.concatenate([r.item for r in rows])
    assert np.bincount(users, minlength=ds.n_users).min() >= k
    assert np.bincount(items, minlength=ds.n_items).min() >= k
    keys = [set(r.keys(ds.n_items).tolist()) for r in rows]
    assert sum(len(s) for s in keys) == len(users), "a (user, item) pair appears twice"
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert len(set().union(*keys)) == len(users) == ds.stats()["interactions"]
    assert not ds.is_head[ds.valid.item].any() and not ds.is_head[ds.test.item].any()
    assert ds.is_head[ds.train.item].sum() == np.isin(items, np.flatnonzero(ds.is_head)).sum()


# ---- real files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Gift_Cards_5.json.gz", "AMAZON_FASHION_5.json.gz", "All_Beauty_5.json.gz"])
def test_real_amazon_invariants(amazon2018: Path, name: str) -> None:
    ds = load_dataset(str(amazon2018 / name), use_cache=False)
    check_invariants(ds, k=5)
    tail = ~ds.is_head
    assert tail.sum() == ds.n_items - round(0.2 * ds.n_items)
    # Head items are the most popular ones.
    assert ds.item_popularity[ds.is_head].min() >= ds.item_popularity[tail].max()


def test_real_split_seeded(amazon2018: Path) -> None:
    path = str(amazon2018 / "Gift_Cards_5.json.gz")
    a = load_dataset(DataConfig(dataset=path, split_seed=0), use_cache=False)
    b = load_dataset(DataConfig(dataset=path, split_seed=0), use_cache=False)
    c = load_dataset(DataConfig(dataset=path, split_seed=1), use_cache=False)
    assert a.test.pairs() == b.test.pairs() and a.valid.pairs() == b.valid.pairs()
    assert a.test.pairs() != c.test.pairs()
    assert a.train.pairs() | a.valid.pairs() | a.test.pairs() == c.train.pairs() | c.valid.pairs() | c.test.pairs()


def test_real_dedup_appliances(amazon2018: Path) -> None:
    raw = load_raw(amazon2018 / "Appliances_5.json.gz")
    assert len(raw) == 2277
    keep, _ = _dedup_latest(raw)
    assert len(keep) == 183
    assert len(set(zip(raw.users[keep], raw.items[keep], strict=False))) == 183
    ds = build_dataset(raw, DataConfig(k_core=1))
    assert ds.stats()["interactions"] == 183
    # The 2018 5-core was computed on the repeated rows: after deduplication nothing is 5-core.
    with pytest.raises(DataError, match="empty after 5-core"):
        build_dataset(raw, DataConfig(k_core=5))


def test_embedded_equals_official_files(amazon2018: Path) -> None:
    """The shipped gift_cards is the official 5-core + titles, processed identically."""
    embedded = load_dataset("gift_cards", use_cache=False)
    official = load_dataset(str(amazon2018 / "Gift_Cards_5.json.gz"), use_cache=False)
    assert embedded.user_ids == official.user_ids and embedded.item_ids == official.item_ids
    assert embedded.item_text == official.item_text
    for split in ("train", "valid", "test"):
        assert embedded.split(split).pairs() == official.split(split).pairs()
    assert set(embedded.item_features) == {"brand", "category"}


# ---- embedded default and CLI ----------------------------------------------------------------


def test_stats_json_fresh_clone_without_shared(tmp_path: Path) -> None:
    """`coral data stats --dataset gift_cards --json` works with no data directory and a fresh cache."""
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache"), "CORAL_DATA_DIR": ""}
    out = subprocess.run(
        [sys.executable, "-m", "coral.cli", "data", "stats", "--dataset", "gift_cards", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert {"users", "items", "interactions", "splits"} <= set(stats)
    assert stats["users"] == 453 and stats["items"] == 147
    assert sum(stats["splits"][s]["interactions"] for s in ("train", "valid", "test")) == stats["interactions"]
    for s in ("train", "valid", "test"):
        assert 0.0 <= stats["splits"][s]["positive_rate"] <= 1.0


def test_stats_table(capsys) -> None:
    assert main(["data", "stats"]) == 0
    out = capsys.readouterr().out
    assert "gift_cards" in out and "valid" in out


def test_history_in_time_order() -> None:
    ds = load_dataset("gift_cards")
    for user in range(0, ds.n_users, 50):
        items, labels = ds.history(user)
        rows = np.flatnonzero(ds.train.user == user)
        assert sorted(items.tolist()) == sorted(ds.train.item[rows].tolist())
        times = {i: t for i, t in zip(ds.train.item[rows], ds.train.timestamp[rows], strict=False)}
        assert [times[i] for i in items] == sorted(times[i] for i in items)


# ---- preprocessing on a synthetic table --------------------------------------------------------


def synthetic_raw(n_users: int = 40, n_items: int = 30, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    users, items, ratings, times = [], [], [], []
    for u in range(n_users):
        for i in rng.choice(
            n_items, size=12, replace=False, p=np.linspace(2, 1, n_items) / np.linspace(2, 1, n_items).sum()
        ):
            users.append(f"u{u}")
            items.append(f"i{i}")
            ratings.append(float(rng.integers(1, 6)))
            times.append(int(rng.integers(1_000, 2_000)))
    return RawData(users, items, ratings, times, {f"i{i}": f"title {i}" for i in range(n_items)}, source="synthetic")


def test_dedup_keeps_latest() -> None:
    raw = RawData(["a", "a", "a", "b", "b"], ["x", "x", "y", "x", "x"], [1, 5, 2, 4, 3], [10, 20, 5, 1, 1], source="t")
    keep, conflicts = _dedup_latest(raw)
    kept = {(raw.users[k], raw.items[k]): raw.ratings[k] for k in keep}
    # Latest timestamp wins; on a tie, the later row in the file.
    assert kept == {("a", "x"): 5.0, ("a", "y"): 2.0, ("b", "x"): 3.0}
    assert conflicts == 2  # (a, x) and (b, x) had different ratings


def test_iterative_k_core_and_labels() -> None:
    ds = build_dataset(synthetic_raw(), DataConfig(k_core=8))
    check_invariants(ds, k=8)
    ge = build_dataset(synthetic_raw(), DataConfig(k_core=8, label_rule="ge"))
    assert ge.train.label.mean() > ds.train.label.mean()
    assert np.array_equal(ds.train.label, (ds.train.rating > 3).astype(np.int8))
    assert np.array_equal(ge.train.label, (ge.train.rating >= 3).astype(np.int8))


def test_split_ratios() -> None:
    ds = build_dataset(synthetic_raw(), DataConfig(k_core=2))
    n_tail = len(ds.valid) + len(ds.test) + len(ds.tail_train)
    assert abs(len(ds.valid) / n_tail - 0.15) < 0.01 and abs(len(ds.test) / n_tail - 0.15) < 0.01


def test_fallback_text_warns_once() -> None:
    raw = synthetic_raw()
    raw.item_text = {}
    with pytest.warns(UserWarning, match=r"of \d+ items have no text") as record:
        ds = build_dataset(raw, DataConfig(k_core=2))
    assert len(record) == 1
    assert all(t == f"item {r}" for t, r in zip(ds.item_text, ds.item_ids, strict=False))


# ---- every format ------------------------------------------------------------------------------


def write_gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def grid(n_users: int = 8, n_items: int = 8) -> list[tuple[str, str, int, int]]:
    """A dense grid: every user rates every item, so any k-core up to 8 keeps it."""
    return [(f"u{u}", f"i{i}", 1 + (u + i) % 5, 1000 + u * 10 + i) for u in range(n_users) for i in range(n_items)]


def test_amazon2018_with_meta(tmp_path: Path) -> None:
    write_gz(
        tmp_path / "Software.json.gz",
        [
            json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t, "reviewText": "x"})
            for u, i, r, t in grid()
        ],
    )
    meta = [
        json.dumps({"asin": "i0", "title": "<b>Great</b> &amp; tool"}),
        json.dumps({"asin": "i1", "title": "", "description": ["A description"], "brand": "B"}),
    ]
    write_gz(tmp_path / "meta_Software.json.gz", meta)
    with pytest.warns(UserWarning, match="6 of 8 items"):
        ds = load_dataset(str(tmp_path / "Software.json.gz"), use_cache=False)
    assert ds.item_text[:3] == ["Great & tool", "A description", "item i2"]
    monkey_env = {"CORAL_DATA_DIR": str(tmp_path)}
    old = os.environ.get("CORAL_DATA_DIR")
    os.environ.update(monkey_env)
    try:
        by_name = load_dataset("software", use_cache=False)
    finally:
        os.environ.pop("CORAL_DATA_DIR") if old is None else os.environ.update({"CORAL_DATA_DIR": old})
    assert by_name.item_text == ds.item_text


@pytest.mark.parametrize("category", ["Software", "Prime_Pantry", "Gift_Cards", "Appliances"])
def test_paper_categories_by_name(tmp_path: Path, monkeypatch, category: str) -> None:
    (tmp_path / "amazon2018").mkdir()
    write_gz(
        tmp_path / "amazon2018" / f"{category}.json.gz",
        [json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) for u, i, r, t in grid()],
    )
    monkeypatch.setenv("CORAL_DATA_DIR", str(tmp_path))
    with pytest.warns(UserWarning):
        assert load_dataset(category, use_cache=False).n_users == 8


def test_amazon2023(tmp_path: Path) -> None:
    write_gz(
        tmp_path / "Toys.jsonl.gz",
        [json.dumps({"user_id": u, "parent_asin": i, "rating": r, "timestamp": t * 1000}) for u, i, r, t in grid()],
    )
    write_gz(
        tmp_path / "meta_Toys.jsonl.gz",
        [
            json.dumps({"parent_asin": f"i{i}", "title": f"Toy {i}", "store": "S", "categories": ["Toys", "Cars"]})
            for i in range(8)
        ],
    )
    ds = load_dataset(str(tmp_path / "Toys.jsonl.gz"), use_cache=False)
    assert ds.item_text[0] == "Toy 0" and ds.train.timestamp.max() < 10_000
    assert set(ds.item_features) == {"brand", "category"}


def test_movielens_100k_and_1m(tmp_path: Path) -> None:
    d100, d1m = tmp_path / "ml-100k", tmp_path / "ml-1m"
    d100.mkdir(), d1m.mkdir()
    rows = grid()
    (d100 / "u.data").write_text("".join(f"{u[1:]}\t{i[1:]}\t{r}\t{t}\n" for u, i, r, t in rows))
    (d100 / "u.item").write_bytes(
        "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|0|1\n" for i in range(8)).encode("latin-1")
    )
    (d1m / "ratings.dat").write_text("".join(f"{u[1:]}::{i[1:]}::{r}::{t}\n" for u, i, r, t in rows))
    (d1m / "movies.dat").write_bytes("".join(f"{i}::Film {i} (1995)::Drama\n" for i in range(8)).encode("latin-1"))
    a, b = load_dataset(str(d100), use_cache=False), load_dataset(str(d1m), use_cache=False)
    assert a.item_text[0] == "Movie 0 (1995)" and b.item_text[0] == "Film 0 (1995)"
    assert a.train.pairs() == b.train.pairs()


def test_recbole_atomic(tmp_path: Path) -> None:
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in grid())
    )
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\n" + "".join(f"i{i}\tTitle {i}\n" for i in range(8))
    )
    ds = load_dataset(str(tmp_path), use_cache=False)
    assert ds.item_text[0] == "Title 0" and ds.n_items == 8


def test_generic_csv_and_tsv_with_options(tmp_path: Path, capsys) -> None:
    (tmp_path / "interactions.csv").write_text(
        "user,item,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in grid())
    )
    (tmp_path / "items.csv").write_text("item,title,genre\n" + "".join(f"i{i},Thing {i},g{i % 2}\n" for i in range(8)))
    ds = load_dataset(str(tmp_path), use_cache=False)
    assert ds.item_text[1] == "Thing 1" and set(ds.item_features) == {"genre"}
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    (tsv / "interactions.tsv").write_text("uid\tiid\tstars\n" + "".join(f"{u}\t{i}\t{r}\n" for u, i, r, _ in grid()))
    other = load_dataset(
        DataConfig(dataset=str(tsv), csv=CsvColumns(sep="\t", user_col="uid", item_col="iid", rating_col="stars")),
        use_cache=False,
    )
    assert other.train.pairs() == ds.train.pairs()
    assert (
        main(
            [
                "data", "stats", "--dataset", str(tsv), "--sep",
                "\\t",
                "--user-col", "uid", "--item-col", "iid", "--rating-col", "stars", "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["users"] == 8


# ---- cache ---------------------------------------------------------------------------------------


def test_cache_keyed_by_config_and_contents(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "d"
    src.mkdir()
    (src / "interactions.csv").write_text("user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in grid()))
    first = load_dataset(str(src))
    again = load_dataset(str(src))
    assert again.fingerprint == first.fingerprint and again.test.pairs() == first.test.pairs()
    assert len(list((tmp_path / "cache" / "datasets").iterdir())) == 1
    other_seed = load_dataset(DataConfig(dataset=str(src), split_seed=3))
    assert other_seed.fingerprint != first.fingerprint
    # Change one rating: the cache must not serve the stale version.
    (src / "interactions.csv").write_text(
        "user,item,rating\n" + "".join(f"{u},{i},{5 if (u, i) == ('u0', 'i0') else r}\n" for u, i, r, _ in grid())
    )
    changed = load_dataset(str(src))
    assert changed.fingerprint != first.fingerprint
    assert len(list((tmp_path / "cache" / "datasets").iterdir())) == 3


# ---- bad input: one line, the file (and line), exit 2, no traceback ------------------------------


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return code, err.strip()


def review_lines() -> list[str]:
    return [json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) for u, i, r, t in grid()]


def test_bad_corrupt_gzip(tmp_path: Path, capsys) -> None:
    good = gzip.compress(("\n".join(review_lines()) + "\n").encode())
    path = tmp_path / "Software.json.gz"
    path.write_bytes(good[: len(good) // 2])
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and str(path) in err and "gzip" in err


def test_bad_not_gzip_at_all(tmp_path: Path, capsys) -> None:
    path = tmp_path / "Software.json.gz"
    path.write_bytes(b"this is not gzip data")
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and str(path) in err and "gzip" in err


def test_bad_truncated_json_line(tmp_path: Path, capsys) -> None:
    lines = review_lines()
    lines[10] = lines[10][:25]
    path = write_gz(tmp_path / "Software.json.gz", lines)
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:11:" in err and "JSON" in err


def test_bad_non_json_line(tmp_path: Path, capsys) -> None:
    lines = review_lines()
    lines[3] = "hello, world"
    path = write_gz(tmp_path / "Software.json.gz", lines)
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:4:" in err


def test_bad_missing_field(tmp_path: Path, capsys) -> None:
    lines = review_lines()
    lines[5] = json.dumps({"reviewerID": "u1", "asin": "i1", "unixReviewTime": 5})
    path = write_gz(tmp_path / "Software.json.gz", lines)
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:6:" in err and "'overall'" in err


def test_bad_non_numeric_rating(tmp_path: Path, capsys) -> None:
    lines = review_lines()
    lines[7] = json.dumps({"reviewerID": "u1", "asin": "i1", "overall": "five", "unixReviewTime": 5})
    path = write_gz(tmp_path / "Software.json.gz", lines)
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and f"{path}:8:" in err and "'five' is not a number" in err


def test_bad_csv_rating(tmp_path: Path, capsys) -> None:
    (tmp_path / "interactions.csv").write_text("user,item,rating\nu1,i1,5\nu2,i2,abc\n")
    code, err = run_cli(["data", "stats", "--dataset", str(tmp_path)], capsys)
    assert code == 2 and "interactions.csv:3:" in err


def test_bad_unknown_name(capsys) -> None:
    code, err = run_cli(["data", "stats", "--dataset", "no_such_dataset"], capsys)
    assert code == 2 and "unknown dataset 'no_such_dataset'" in err


def test_bad_category_without_files(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CORAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    code, err = run_cli(["data", "stats", "--dataset", "Prime_Pantry"], capsys)
    assert code == 2 and "Prime_Pantry.json.gz" in err and "coral data download" in err


def test_bad_empty_after_k_core(tmp_path: Path, capsys) -> None:
    lines = [json.dumps({"reviewerID": f"u{n}", "asin": f"i{n}", "overall": 5}) for n in range(30)]
    path = write_gz(tmp_path / "Software.json.gz", lines)
    code, err = run_cli(["data", "stats", "--dataset", str(path)], capsys)
    assert code == 2 and str(path) in err and "empty after 5-core" in err


def test_bad_input_exit_status_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "Software.json.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = subprocess.run(
        [sys.executable, "-m", "coral.cli", "data", "stats", "--dataset", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert (
        out.stderr.startswith("error: ") and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    )


def test_bad_config_values() -> None:
    with pytest.raises(CoralError, match="split_ratios"):
        DataConfig(split_ratios=(0.5, 0.5, 0.5))
    with pytest.raises(CoralError, match="head_fraction"):
        DataConfig(head_fraction=1.5)
