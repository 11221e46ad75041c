"""Bad input, round 3 (issue 25): what a new user's broken inputs got, and what they get now.

Every refusal is one line ``error: ...`` naming what and where, exit 2, no traceback, and nothing
written before the input was checked; data is never silently changed (undecodable bytes, ratings
outside the scale), and what preprocessing chooses on its own (conflicting duplicates, which
files of a directory) is said in one warning line.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from coral.cli import main


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))


def fails(argv: list[str], capsys) -> str:
    """Run ``coral argv`` in process; it must exit 2 with one line ``error: ...``; returns that line."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (code, err)
    return lines[0]


def succeeds(argv: list[str], capsys) -> tuple[str, list[str]]:
    """Run ``coral argv`` in process; it must exit 0; returns stdout and the warnings, as the CLI prints them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, [f"warning: {w.message}" for w in caught if w.category is UserWarning]


def nothing_in(directory: Path) -> bool:
    return not directory.exists() or not any(directory.rglob("*"))


# ---- 2. coral run --scorer ------------------------------------------------------------------------------

SCRIPTED_RUN = [
    "--baselines",
    "ips",
    "--baseline.epochs",
    "1",
    "--methods",
    "llm-only",
    "--eval-pairs",
    "20",
    "--valid-pairs",
    "10",
    "--n-boot",
    "0",
]


@pytest.mark.parametrize("align", [[], ["--no-align"]])
def test_run_refuses_a_bad_scorer_before_writing_anything(align, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    line = fails(["run", "--scorer", "bogus:thing", *align, *SCRIPTED_RUN, "--out", str(out)], capsys)
    assert line.startswith("error: unknown scorer spec 'bogus:thing'; expected hf, hf:PATH")
    line = fails(["run", "--scorer", f"hf:{tmp_path / 'no-model'}", *align, *SCRIPTED_RUN, "--out", str(out)], capsys)
    assert "no-model: no such file or directory" in line
    assert not out.exists() and nothing_in(tmp_path / "cache")


def test_run_refuses_specs_that_alignment_cannot_start_from(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    (tmp_path / "aligned").mkdir()
    for spec in (
        "vllm:Qwen/Qwen2.5-7B-Instruct",
        "openai:http://127.0.0.1:9/v1#m",
        "scripted",
        f"aligned:{tmp_path / 'aligned'}",
    ):
        line = fails(["run", "--scorer", spec, *SCRIPTED_RUN, "--out", str(out)], capsys)
        assert (
            f"--scorer {spec}: alignment (method topk) fine-tunes a local model, hf or hf:PATH" in line
            and "pass --no-align" in line
        )
    (tmp_path / "model").mkdir()
    line = fails(
        [
            "run",
            "--scorer",
            f"hf:{tmp_path / 'model'}",
            "--alignment.base-model",
            str(tmp_path / "other"),
            *SCRIPTED_RUN,
            "--out",
            str(out),
        ],
        capsys,
    )
    assert "name different models" in line
    assert not out.exists() and nothing_in(tmp_path / "cache")


def test_run_scores_its_zero_shot_stage_and_aligns_with_the_scorer_given(tiny_model_dir, tmp_path, capsys) -> None:
    """``--scorer hf:TINY`` with alignment on: the zero-shot llm-only row is the tiny model's, and the
    aligned scorer starts from the tiny model (before: both silently the embedded SmolLM2)."""
    out = tmp_path / "out"
    argv = [
        "run", "--dataset", "movielens_small", "--scorer", f"hf:{tiny_model_dir}", "--precision", "float32",
        "--alignment.topk-trunk", "1", "--alignment.topk-layers", "1", "--alignment.topk-targets", "16",
        "--alignment.topk-stop-pairs", "16", "--alignment.topk-epochs", "1", "--alignment.warm-start", "none",
        "--zero-shot-methods", "llm-only", *SCRIPTED_RUN, "--out", str(out),
    ]  # fmt: skip
    succeeds(argv, capsys)
    rows = {
        r["model"]: json.loads(r["config"]) for r in csv.DictReader(open(out / "results.csv")) if r["split"] == "test"
    }
    # The default alignment prompt has base rates and CF soft tokens: the tag names them (top1-finetune+rates+cf4),
    # the number of targets when it is not the default's 600, the epochs when not the default's 2, and the base LLM,
    # not the embedded one, after an "@".
    tag = f"top1-finetune+rates+cf4+targets16+e1@{tiny_model_dir.name}"
    zero_shot, aligned = rows["llm-only@zero-shot"]["scorer_fingerprint"], rows[f"llm-only@{tag}"]["scorer_fingerprint"]
    assert {"twin-rates", "twin-cf-none", "twin-rates+cf-none", "twin-rates+cf+share-none"} <= set(
        rows
    )  # the aligned scorer's input twins
    assert zero_shot.startswith(f"hf|{tiny_model_dir}:") and "|float32|" in zero_shot
    assert aligned.startswith(f"hf|{tiny_model_dir}:") and "aligned=topk:" in aligned
    aligned_dir = next((out / "stages").glob("align-seed0-*/aligned"))
    assert json.loads((aligned_dir / "align.json").read_text())["config"]["base_model"] == str(tiny_model_dir)
    # The same alignment given back with --no-align: its rows are named by what produced it, not "zero-shot"
    # (before: "llm-only@zero-shot", the legend's "the LLM as shipped"), and score as the run's own aligned row.
    again = tmp_path / "again"
    succeeds(
        ["run", "--dataset", "movielens_small", "--scorer", f"aligned:{aligned_dir}", "--precision", "float32",
         "--no-align", *SCRIPTED_RUN, "--out", str(again)],
        capsys,
    )  # fmt: skip
    given = {r["model"]: r for r in csv.DictReader(open(again / "results.csv")) if r["split"] == "test"}
    assert f"llm-only@{tag}" in given and not any("zero-shot" in model for model in given)
    first = {r["model"]: r for r in csv.DictReader(open(out / "results.csv")) if r["split"] == "test"}
    assert given[f"llm-only@{tag}"]["auc"] == first[f"llm-only@{tag}"]["auc"]


def test_run_help_says_which_stages_the_scorer_changes(capsys) -> None:
    assert main(["run", "--help"]) == 0
    text = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))  # argparse wraps lines at hyphens
    assert (
        "In coral run: the LLM of the zero-shot stages (--methods with --no-align, --zero-shot-methods with alignment "
        "on)" in text
    )
    assert "also the model the alignment fine-tunes" in text


def test_one_spec_parser_everywhere() -> None:
    from coral.errors import CoralError
    from coral.llm import make_scorer, parse_scorer_spec

    assert parse_scorer_spec("hf:models/x").path == Path("models/x") and parse_scorer_spec("hf").path is None
    assert parse_scorer_spec("openai:http://h:1/v1#m").backend == "openai" and not parse_scorer_spec("vllm:m").local
    for bad, fragment in (
        ("bogus:thing", "unknown scorer spec"),
        ("aligned:", "needs a directory"),
        ("vllm:", "needs a model"),
        ("openai:x", "needs a URL and a model"),
        ("scripted:k=1", "expected key=value"),
        ("", "must not be empty"),
    ):
        with pytest.raises(CoralError, match=fragment):
            parse_scorer_spec(bad)
        with pytest.raises(CoralError, match=fragment):
            make_scorer(bad)


# ---- 4. data silently changed ----------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n").encode(encoding))
    return path


def grid(n_users: int = 40, n_items: int = 8, users: dict[int, str] | None = None) -> list[list[object]]:
    """Every user rates every item (any k-core up to 8 keeps everything); ``users`` renames some users."""
    names = {u: f"u{u}" for u in range(n_users)} | (users or {})
    return [[names[u], i + 1, 1 + (u + i) % 5, 1_000_000 + 100 * u + i] for u in range(n_users) for i in range(n_items)]


def test_undecodable_bytes_are_an_error_naming_file_and_line_or_read_with_encoding(tmp_path, capsys) -> None:
    directory = tmp_path / "latin1"
    # Two users differ only in a Latin-1 letter; replaced by U+FFFD they had merged (39 users, not 40).
    ratings = write_csv(
        directory / "ratings.csv",
        ["userId", "movieId", "rating", "timestamp"],
        grid(users={0: "X\u00e9", 1: "X\u00e8"}),
        "latin-1",
    )
    write_csv(
        directory / "movies.csv",
        ["movieId", "title", "genres"],
        [[i + 1, f"Les Mis\u00e9rables {i}", "Drama"] for i in range(8)],
        "latin-1",
    )
    line = fails(["data", "stats", "--dataset", str(directory)], capsys)
    assert (
        line == f"error: {ratings}:2: not valid utf-8 text (byte 0xe9 at column 2); pass --encoding with the file's "
        "encoding, e.g. --encoding latin-1"
    )
    out, _ = succeeds(["data", "stats", "--dataset", str(directory), "--encoding", "latin-1", "--json"], capsys)
    assert json.loads(out)["users"] == 40
    from coral.data import DataConfig, load_dataset

    dataset = load_dataset(DataConfig(dataset=str(directory), encoding="latin-1"))
    assert {"X\u00e9", "X\u00e8"} <= set(dataset.user_ids) and dataset.item_text[0] == "Les Mis\u00e9rables 0"
    assert (
        DataConfig(encoding="latin-1").hash != DataConfig().hash
        and DataConfig(encoding="UTF8").hash == DataConfig().hash
    )


def test_binary_garbage_is_refused_without_echoing_it(tmp_path, capsys) -> None:
    path = tmp_path / "garbage" / "ratings.csv"
    path.parent.mkdir()
    path.write_bytes(b"userId,movieId,rating\n" + bytes(range(128, 256)) * 20 + b"\n")
    line = fails(["data", "stats", "--dataset", str(path.parent)], capsys)
    assert line.isascii() and line.isprintable() and f"{path}:2: not valid utf-8 text (byte 0x80" in line


def test_ratings_outside_the_scale_are_an_error_or_a_stated_scale(tmp_path, capsys) -> None:
    directory = tmp_path / "grouplens"
    rows = grid()
    rows[5][2], rows[9][2] = 99, -1
    ratings = write_csv(directory / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], rows)
    line = fails(["data", "stats", "--dataset", str(directory)], capsys)
    assert (
        line
        == f"error: {ratings}:7: rating 99 is outside the GroupLens ratings.csv scale 0.5..5 (2 of 320 ratings are); "
        "pass --rating-scale MIN,MAX if this file uses another scale"
    )
    out, _ = succeeds(["data", "stats", "--dataset", str(directory), "--rating-scale=-1,100", "--json"], capsys)
    assert json.loads(out)["interactions"] == 320
    assert "outside --rating-scale 0,10" in fails(
        ["data", "stats", "--dataset", str(directory), "--rating-scale", "0,10"], capsys
    )
    # MovieLens 100K: whole stars 1-5.
    ml = tmp_path / "ml-100k"
    ml.mkdir()
    (ml / "u.data").write_text(
        "".join(f"{u[1:]}\t{i}\t{r if (u, i) != ('u3', 2) else 6}\t{t}\n" for u, i, r, t in grid())
    )
    assert (
        fails(["data", "stats", "--dataset", str(ml)], capsys)
        == f"error: {ml / 'u.data'}:26: rating 6 is outside the MovieLens scale 1..5 (1 of 320 ratings are); pass "
        "--rating-scale MIN,MAX if this file uses another scale"
    )
    # Generic CSV has no scale of its own: any finite rating, unless one is stated.
    generic = write_csv(tmp_path / "generic" / "interactions.csv", ["user", "item", "rating", "timestamp"], rows)
    succeeds(["data", "stats", "--dataset", str(generic.parent)], capsys)


def test_conflicting_duplicates_get_one_warning_saying_what_was_kept(tmp_path, capsys) -> None:
    rows = grid()
    rows += [
        ["u3", 1, 5, 2_000_000],
        ["u3", 1, 1, 500],
        ["u4", 2, rows[33][2], 3_000_000],
    ]  # u3/1 conflicts; u4/2 repeats the same rating
    path = write_csv(tmp_path / "dups" / "interactions.csv", ["user", "item", "rating", "timestamp"], rows)
    for _ in range(2):  # the first load, and the cached one
        _, warned = succeeds(["data", "stats", "--dataset", str(path.parent)], capsys)
        warned = [w for w in warned if "items have no text" not in w]
        assert warned == [
            f"warning: {path.parent}: 1 (user, item) pairs have several rows with different ratings; kept the latest "
            "row of each (largest timestamp, then the last in the file)"
        ]


def test_an_ambiguous_directory_gets_one_warning_saying_what_is_read(tmp_path, capsys) -> None:
    directory = tmp_path / "both"
    write_csv(directory / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], grid())
    (directory / "u.data").write_text("".join(f"{u[1:]}\t{i}\t{r}\t{t}\n" for u, i, r, t in grid()))

    def warnings(argv: list[str]) -> list[str]:
        return [w for w in succeeds(argv, capsys)[1] if "items have no text" not in w]

    assert warnings(["data", "stats", "--dataset", str(directory)]) == [
        f"warning: {directory} holds u.data and ratings.csv; reading u.data (movielens100k); pass --format or the file "
        "itself to read another"
    ]
    assert warnings(["data", "stats", "--dataset", str(directory), "--format", "csv"]) == [
        f"warning: {directory} holds ratings.csv and u.data; reading ratings.csv (csv); pass --format or the file "
        "itself to read another"
    ]
    assert warnings(["data", "stats", "--dataset", str(directory / "ratings.csv")]) == []


# ---- 5. tracebacks -------------------------------------------------------------------------------------


def test_out_naming_an_existing_file_is_one_line_before_any_work(tmp_path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    commands = [
        ["baselines", "--models", "ips", "--seeds", "0", "--out", str(taken)],
        ["train", "--scorer", "scripted", "--out", str(taken)],
        ["score", "--scorer", "scripted", "--out", str(taken)],
        ["run", "--scorer", "scripted", "--no-align", "--out", str(taken)],
        ["align", "--out", str(taken)],
        ["evaluate", "--policy", "random", "--scorer", "scripted", "--out", str(taken)],
    ]
    for argv in commands:
        assert fails(argv, capsys) == f"error: --out {taken}: exists and is not a directory; name a directory", argv
    assert (
        fails(["score", "--scorer", "scripted", "--out", str(taken / "sub")], capsys)
        == f"error: --out {taken / 'sub'}: {taken} is a file, so nothing can be made under it"
    )
    assert (
        fails(["align-diagnostics", "--json", str(tmp_path), "--scorer", "scripted"], capsys)
        == f"error: --json {tmp_path}: is a directory; name a file"
    )
    assert taken.read_text() == "mine" and nothing_in(tmp_path / "cache")


def read_only_command(mount: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``coral argv`` with ``mount`` a read-only file system, in a private mount namespace (unshare)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    mount.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {mount}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {probe.stderr.decode().strip()}")
    script = f'mount -t tmpfs -o ro tmpfs "{mount}" && exec "{sys.executable}" -m coral.cli "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *argv], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_read_only_out_or_cache_is_one_line(tmp_path) -> None:
    mount = tmp_path / "ro"
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache")}
    proc = read_only_command(mount, ["baselines", "--models", "ips", "--seeds", "0", "--out", str(mount / "b")], env)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: --out {mount / 'b'}: {mount} is not writable (a read-only file system)\n",
    ), proc.stderr
    proc = read_only_command(mount, ["data", "stats"], {**env, "CORAL_CACHE_DIR": str(mount / "cache")})
    assert proc.returncode == 2 and proc.stderr.startswith(
        f"error: cannot create the coral cache directory {mount / 'cache' / 'datasets'}: Read-only file system; set "
        "CORAL_CACHE_DIR"
    ), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_file_system_error_mid_command_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """A disk that fills or turns read-only after the up-front checks: one line naming the file, exit 2."""
    import errno

    import coral.data

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "datasets" / "x.npz"))

    monkeypatch.setattr(coral.data, "load_dataset", full)
    line = fails(["data", "stats"], capsys)
    assert (
        line == f"error: {tmp_path / 'cache' / 'datasets' / 'x.npz'}: No space left on device (the coral cache: set "
        f"CORAL_CACHE_DIR to a writable directory; now {tmp_path / 'cache'})"
    )

    def missing(*_args, **_kwargs):  # not a file-system condition the user can fix: a bug, with its traceback
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "internal")

    monkeypatch.setattr(coral.data, "load_dataset", missing)
    with pytest.raises(FileNotFoundError):
        main(["data", "stats"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["baselines", "--seeds", "-1", "--out", "{out}"],
            "error: --seeds must be in 0..4294967295 (the range numpy accepts), got -1",
        ),
        (["run", "--seeds", "0,0", "--out", "{out}"], "error: --seeds must not repeat a seed, got 0,0"),
        (
            ["run", "--split-seed", "-1", "--out", "{out}"],
            "error: --split-seed must be in 0..4294967295 (the range numpy accepts), got -1",
        ),
        (
            ["train", "--seed", "-1", "--out", "{out}"],
            "error: --seed must be in 0..4294967295 (the range numpy accepts), got -1",
        ),
        (
            ["train", "--seed", "99999999999", "--out", "{out}"],
            "error: --seed must be in 0..4294967295 (the range numpy accepts), got 99999999999",
        ),
        (
            ["score", "--limit", "1", "--scorer", "scripted", "--out", "{out}"],
            "error: --limit must be 0 (all pairs) or >= 2 (a sample that keeps both classes), got 1",
        ),
    ],
)
def test_bad_seeds_and_limits_are_one_line(argv, message, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert fails([a.replace("{out}", str(out)) for a in argv], capsys) == message
    assert not out.exists()


def test_seeds_in_a_config_file_are_checked_too(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seeds: [1, 2, 1]\n")
    assert (
        fails(["run", "--config", str(path), "--out", str(tmp_path / "o")], capsys)
        == f"error: {path}: seeds must not repeat a seed, got 1,2,1"
    )


# ---- 6. smaller ------------------------------------------------------------------------------------------


def test_explain_resolves_ids_in_the_runs_own_dataset(tmp_path, capsys) -> None:
    out = tmp_path / "ml"
    succeeds(
        ["run", "--dataset", "movielens_small", "--scorer", "scripted", "--no-align", *SCRIPTED_RUN, "--out", str(out)],
        capsys,
    )
    episode = json.loads(
        next((out / "stages").glob("llm-only@zero-shot-*/eval_test.jsonl")).read_text().splitlines()[0]
    )
    text, _ = succeeds(
        ["explain", "--run", str(out), "--user", episode["user"], "--item", episode["item"], "--no-prompt"], capsys
    )
    assert f"user {episode['user']} (index {episode['user_index']})" in text
    # A flag given still wins: the default dataset (gift_cards) does not know this MovieLens pair.
    assert "neither a raw id nor an index below" in fails(
        ["explain", "--run", str(out), "--user", episode["user"], "--item", episode["item"], "--dataset", "gift_cards"],
        capsys,
    )


TRAIN = [
    "train",
    "--scorer",
    "scripted",
    "--warm-start",
    "none",
    "--algo",
    "ppo",
    "--n-envs",
    "2",
    "--n-steps",
    "8",
    "--batch-size",
    "16",
    "--val-every",
    "0",
    "--no-progress",
    "--threads",
    "1",
]


def test_resume_with_nothing_left_to_train_is_refused_before_rewriting_the_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    succeeds([*TRAIN, "--timesteps", "64", "--checkpoint-every", "32", "--out", str(run)], capsys)
    config, segments = (run / "config.json").read_text(), sorted(p.name for p in (run / "logs").iterdir())
    for total in ("32", "64"):
        line = fails(["train", "--resume", "--timesteps", total, "--out", str(run)], capsys)
        assert (
            line
            == f"error: {run}: the run has trained 64 timesteps; --timesteps is the total, so give more than 64 to "
            f"train further (got {total})"
        )
    assert (run / "config.json").read_text() == config and sorted(p.name for p in (run / "logs").iterdir()) == segments


def test_train_summary_counts_every_segment_after_a_kill(tmp_path, capsys) -> None:
    """A SIGKILLed run resumed to the same total reports about the prompts and seconds of an
    uninterrupted one (before: only the last segment's)."""
    total = 512
    whole = tmp_path / "whole"
    succeeds([*TRAIN, "--timesteps", str(total), "--checkpoint-every", "64", "--out", str(whole)], capsys)
    killed = tmp_path / "killed"
    env = {**os.environ, "CORAL_CACHE_DIR": os.environ["CORAL_CACHE_DIR"]}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coral.cli",
            *TRAIN,
            "--timesteps",
            "100000",
            "--checkpoint-every",
            "64",
            "--out",
            str(killed),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    while not (latest.is_file() and json.loads(latest.read_text())["timesteps"] >= 192):
        assert proc.poll() is None and time.monotonic() < deadline, "the training to kill did not checkpoint"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = json.loads(
        (killed / "checkpoints" / f"totals_{json.loads(latest.read_text())['timesteps']}.json").read_text()
    )
    succeeds(["train", "--resume", "--timesteps", str(total), "--out", str(killed)], capsys)
    resumed, uninterrupted = (json.loads((d / "train_summary.json").read_text()) for d in (killed, whole))
    print(
        f"uninterrupted {uninterrupted['prompts_scored']} prompts {uninterrupted['train_seconds']:.1f} s; killed at "
        f"{at_kill['timesteps']} and resumed: {resumed['prompts_scored']} prompts {resumed['train_seconds']:.1f} s"
    )
    assert resumed["timesteps"] == uninterrupted["timesteps"] == total and resumed["segments"] == 2
    assert resumed["prompts_scored"] > at_kill["prompts_scored"] and resumed["train_seconds"] > at_kill["train_seconds"]
    assert abs(resumed["prompts_scored"] - uninterrupted["prompts_scored"]) <= 0.1 * uninterrupted["prompts_scored"]
