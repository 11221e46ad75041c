"""The configuration system: dataclasses -> dicts, YAML and flags, with one unknown-key check and typed values."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from coral.cli import main as cli_main
from coral.config import (
    ArgumentParser,
    add_arguments,
    dump_yaml,
    field_docs,
    from_args,
    from_dict,
    leaves,
    load_yaml,
    require,
    section,
    to_dict,
)
from coral.errors import CoralError
from coral.pipeline.config import RunConfig


@dataclass(frozen=True)
class Inner:
    """A nested section."""

    size: int = 3
    """How big."""
    names: tuple[str, ...] = ("a", "b")
    """Some names."""

    def __post_init__(self) -> None:
        require(self.size >= 1, "size", f"must be >= 1, got {self.size}")


@dataclass(frozen=True)
class Flat:
    """A flat section."""

    rate: float = 0.5
    """A rate."""
    mode: Literal["x", "y"] = "x"
    """A mode."""
    hidden: int = 7
    """Set by the parent."""


@dataclass(frozen=True)
class Root:
    """A root config."""

    flat: Flat = section(Flat, flat=True, skip=("hidden",))
    """Flat."""
    inner: Inner = section(lambda: Inner(size=4))
    """Nested, with a preset."""
    on: bool = True
    """A switch."""
    limit: Optional[int] = None
    """An optional number."""
    out: Optional[str] = field(default=None, metadata={"required": True})
    """Where to."""


def parse(argv: list[str]) -> Root:
    parser = ArgumentParser(prog="t")
    add_arguments(parser, Root)
    return from_args(Root, parser.parse_args(argv))


def test_keys_follow_sections_flat_ones_merged_and_skipped_ones_left_out() -> None:
    assert to_dict(Root()) == {
        "rate": 0.5, "mode": "x", "inner": {"size": 4, "names": ["a", "b"]}, "on": True, "limit": None, "out": None,
    }
    assert [leaf.flag for leaf in leaves(Root)] == [
        "--rate", "--mode", "--inner.size", "--inner.names", "--on", "--limit", "--out",
    ]
    assert field_docs(Inner) == {"size": "How big.", "names": "Some names."}


def test_from_dict_round_trips_and_refuses_unknown_keys_and_bad_types() -> None:
    config = Root(out="o")
    assert from_dict(Root, to_dict(config)) == config
    assert from_dict(Root, {"inner": {"size": 9}}).inner == Inner(size=9)
    with pytest.raises(CoralError, match=r"^f.yaml: unknown key 'inner.sise'; known: inner.names, inner.size$"):
        from_dict(Root, {"inner": {"sise": 1}}, where="f.yaml")
    with pytest.raises(CoralError, match="unknown key 'hidden'"):  # skipped: no key
        from_dict(Root, {"hidden": 1})
    with pytest.raises(CoralError, match=r"^config: inner.size must be int, got '3'$"):
        from_dict(Root, {"inner": {"size": "3"}})
    with pytest.raises(CoralError, match="on must be bool, got 1"):
        from_dict(Root, {"on": 1})
    with pytest.raises(CoralError, match="mode must be one of x, y, got 'z'"):
        from_dict(Root, {"mode": "z"})
    with pytest.raises(
        CoralError, match=r"^config: inner.size must be >= 1, got 0$"
    ):  # __post_init__'s check, named by its key
        from_dict(Root, {"inner": {"size": 0}})
    assert from_dict(Root, {"rate": 1, "inner": {"names": "c"}}) == Root(
        flat=Flat(rate=1.0), inner=Inner(size=4, names=("c",))
    )


def test_yaml_files_use_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(Root(out="x", limit=3)))
    assert load_yaml(Root, path) == Root(out="x", limit=3)
    path.write_text("inner:\n  size: [\n")
    with pytest.raises(CoralError, match=r"c.yaml:\d+: not valid YAML"):
        load_yaml(Root, path)


def test_flags_types_booleans_optionals_and_the_required_check() -> None:
    config = parse(
        [
            "--rate", "2", "--mode", "y", "--inner.size", "5", "--inner.names", "p,q", "--no-on", "--limit", "7",
            "--out", "d",
        ]
    )
    assert config == Root(
        flat=Flat(rate=2.0, mode="y"), inner=Inner(size=5, names=("p", "q")), on=False, limit=7, out="d"
    )
    assert parse(["--out", "d", "--limit", "none"]).limit is None
    with pytest.raises(CoralError, match="^the following arguments are required: --out$"):
        parse([])
    with pytest.raises(CoralError, match=r"^--inner.size must be >= 1, got 0$"):  # the flag, not the field
        parse(["--out", "d", "--inner.size", "0"])


def test_explicit_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"rate": 3.0, "inner": {"size": 6}, "out": "from-file"}))
    config = parse(["--config", str(path), "--inner.size", "8"])
    assert (config.flat.rate, config.inner.size, config.out) == (3.0, 8, "from-file")


def test_argparse_errors_are_one_line_and_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(["--inner.size", "abc"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: argument --inner.size: invalid int value: 'abc'\n"
    with pytest.raises(SystemExit):
        parse(["--mode", "z"])
    assert capsys.readouterr().err.startswith("error: argument --mode: invalid choice: 'z'")


def test_a_duplicate_flag_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Clash:
        flat: Flat = section(Flat, flat=True)
        rate: float = 1.0

    with pytest.raises(ValueError, match="share the key 'rate'"):
        add_arguments(argparse.ArgumentParser(), Clash)


# ---- every command ------------------------------------------------------------------------------
def commands() -> list[tuple[list[str], type]]:
    """(argv prefix, root config class) of every sub-command of ``coral``."""
    from coral.cli import build_parser

    out = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, prefix + [name])
        cls = parser.get_default("config_class")
        if cls is not None:
            out.append((prefix, cls))

    walk(build_parser(), [])
    return out


def test_every_command_is_generated_from_a_config_class() -> None:
    names = {" ".join(p) for p, _ in commands()}
    assert names == {
        "data stats", "data download", "score", "baselines", "train", "evaluate", "align", "align-diagnostics", "run",
        "explain", "serve-scorer",
    }


def _flatten(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        keys |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return keys


def _fields(cls: type, prefix: str = "", skip: frozenset = frozenset()) -> set[str]:
    """The dataclass fields, walked independently of coral.config (flat sections merged, skips left out)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            inner = frozenset(s[len(f.name) + 1 :] for s in skip if s.startswith(f.name + ".")) | frozenset(
                f.metadata.get("skip", ())
            )
            out |= _fields(tp, prefix if f.metadata.get("flat") else f"{prefix}{f.name}.", inner)
        else:
            out.add(prefix + f.name)
    return out


@pytest.mark.parametrize("argv,cls", commands(), ids=lambda x: " ".join(x) if isinstance(x, list) else x.__name__)
def test_help_text_yaml_keys_and_fields_are_the_same_set(argv, cls, capsys) -> None:
    from coral.cli import main

    assert main([*argv, "--help"]) == 0
    text = capsys.readouterr().out
    # The options section: one line per flag ("  --x, --no-x" for a boolean), then its help.
    flags = set(re.findall(r"^\s{2}(?:-h, )?--([a-z0-9][a-z0-9.-]*)", text, flags=re.MULTILINE)) - {
        "help",
        "config",
        "print-config",
    }
    positional = {leaf.name for leaf in leaves(cls) if leaf.metadata.get("positional")}
    as_keys = {f.replace("-", "_") for f in flags} | positional
    yaml_keys = _flatten(yaml.safe_load(dump_yaml(cls())))
    assert as_keys == yaml_keys == _fields(cls)
    # Each setting's help is its field's docstring and its default.
    for leaf in leaves(cls):
        if leaf.metadata.get("positional"):
            continue
        first_words = " ".join(leaf.doc.split()[:4])
        assert first_words in " ".join(text.split()), (leaf.flag, first_words)
    assert "(default:" in text


# ---- --print-config and skip paths ---------------------------------------------------------------
#: Positional arguments of commands that have them (their values are only read back, never used).
REQUIRED = {("data", "download"): ["ml-100k"]}


def test_every_command_prints_a_config_that_reads_back(tmp_path: Path, capsys) -> None:
    every = [(tuple(argv), cls) for argv, cls in commands()]
    assert ("run",) in [words for words, _ in every] and len(every) >= 10
    for words, _ in every:
        flags = [*words, *REQUIRED.get(words, []), "--print-config"]
        assert cli_main(flags) == 0, words
        printed = capsys.readouterr().out
        path = tmp_path / f"{'-'.join(words)}.yaml"
        path.write_text(printed)
        assert cli_main([*words, *REQUIRED.get(words, []), "--config", str(path), "--print-config"]) == 0, words
        assert capsys.readouterr().out == printed, words


def test_run_print_config_round_trip(tmp_path: Path, capsys) -> None:
    flags = [
        "--seeds", "0,3", "--precision", "int8", "--sep", "tab", "--train.rounds", "3", "--no-align", "--warm-starts",
        "dfm,wdl",
    ]
    assert cli_main(["run", *flags, "--print-config"]) == 0
    path = tmp_path / "run.yaml"
    path.write_text(capsys.readouterr().out)
    from coral.cli import build_parser
    from coral.cli.run import RunCommand

    parser = build_parser()

    given = from_args(RunCommand, parser.parse_args(["run", *flags]))
    read_back = from_args(RunCommand, parser.parse_args(["run", "--config", str(path)]))
    assert read_back == given and read_back != RunCommand()
    assert (
        read_back.run.scorer.precision == "int8"
        and read_back.run.seeds == (0, 3)
        and read_back.run.data.csv.sep == "\t"
    )
    assert isinstance(read_back.run, RunConfig)


@dataclass(frozen=True)
class _Inner:
    kept: int = 1
    """A setting."""
    hidden: int = 2
    """A setting the parent sets itself."""


@dataclass(frozen=True)
class _Outer:
    inner: _Inner = section(_Inner, skip=("hiden",))
    """A section whose skip path is misspelt."""


def test_a_misspelt_skip_path_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="_Outer.inner: skip path 'hiden' names no setting"):
        leaves(_Outer)


def test_every_declared_skip_path_names_a_setting() -> None:
    """The project's own configs: building every command's flags checks their skip paths."""
    for _, config_class in commands():
        leaves(config_class)
