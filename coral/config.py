"""One configuration system: typed dataclasses -> dicts, YAML files and command-line flags.

Every setting of coral is a field of a (possibly nested) dataclass, with a one-line docstring
under it. From those classes this module derives, in one place:

- :func:`to_dict` / :func:`from_dict`: plain nested dicts; unknown keys and values of the wrong
  type are refused with one line naming the key (the check is written once, here);
- :func:`load_yaml` / :func:`dump_yaml`: YAML files of the same keys;
- :func:`add_arguments` / :func:`from_args`: one command-line flag per field, whose ``--help``
  text is the field's docstring with its default; ``--config FILE.yaml`` reads a file first and
  flags given explicitly override it; ``--print-config`` prints the YAML of the settings that
  the flags describe, which ``--config`` reads back to the same configuration.

Names. A field ``x_y`` of the root config is the key ``x_y`` and the flag ``--x-y``; a field of a
nested section ``s`` is the key ``x_y`` inside the mapping ``s`` and the flag ``--s.x-y``. A
section declared with ``section(Cls, flat=True)`` puts its fields at its parent's level instead
(keys and flags without prefix): the data section is flat, so every command that reads data takes
``--dataset``, ``--k-core``, ... A section may ``skip`` fields (attribute paths relative to it,
e.g. ``"env.data"``) that the command sets itself: they have no key and no flag, and keep their
defaults in the object. Two fields with the same key at one level are a programming error
(:class:`ValueError` when the flags are generated).

Types come from the annotations: ``int``, ``float``, ``bool`` (flags ``--x`` / ``--no-x``), ``str``,
``Path``, ``Optional[...]`` (the word ``none`` on the command line), ``Literal[...]`` (choices) and
``tuple``/``list`` of those (comma-separated on the command line, lists in YAML).

Validation in a dataclass's ``__post_init__`` goes through :func:`require`, whose error names
the field; :func:`from_args` rewrites that name as the flag (``--k-core must be >= 1, got 0``),
:func:`from_dict` as the key. One rule is checked here for every config, by the field's name:
a seed (a field named ``seed`` or ``*_seed``, or each value of ``seeds``) must be in
0..2**32-1, the range numpy, torch and Stable-Baselines3 all accept, and ``seeds`` must not
repeat a value (two runs of one seed are one run counted twice).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, NoReturn, TypeVar, Union

from coral.errors import CoralError

T = TypeVar("T")

#: Attribute of an argparse namespace holding the ``--config`` file.
CONFIG_FILE_DEST = "config_file"
#: Attribute of an argparse namespace that is true with ``--print-config``.
PRINT_CONFIG_DEST = "print_config"


# ---- declaring configs -----------------------------------------------------------------------
def section(factory: Callable[[], Any], *, flat: bool = False, skip: tuple[str, ...] = ()) -> Any:
    """A nested config section: a dataclass field built by ``factory``.

    :param factory: the section's class, or a function returning its default value (a preset).
    :param flat: put the section's keys and flags at its parent's level (no prefix).
    :param skip: attribute paths, relative to the section, that this parent sets itself: they get
        no key and no flag.
    """
    return dataclasses.field(default_factory=factory, metadata={"flat": flat, "skip": tuple(skip)})


def renamed(default: Any, *, old: str) -> Any:
    """A setting renamed from ``old``, whose old key and flag are still read (for one release).

    Stage identities (:func:`to_dict` with ``identity=True``) keep naming it ``old``, so that the
    rename moves no finished stage, cache or result.

    :param default: the field's default value.
    :param old: the field's former name.
    """
    return dataclasses.field(default=default, metadata={"old_name": old})


def added(default: Any) -> Any:
    """A setting added after stages were hashed: at its default it stays out of stage identities (:func:`to_dict`
    with ``identity=True``), so that adding it moves no finished stage, cache or result; any other value enters them.

    :param default: the field's default value (the behaviour from before the setting existed).
    """
    return dataclasses.field(default=default, metadata={"added_default": default})


def require(ok: bool, field: str, message: str, error: type[CoralError] = CoralError) -> None:
    """Raise ``error("<field> <message>")`` unless ``ok``; the field is rewritten as a key or flag by the loaders.

    :param ok: the condition that must hold.
    :param field: the field's attribute name.
    :param message: what is wrong, e.g. ``"must be >= 1, got 0"``.
    :param error: the exception class (a :class:`~coral.errors.CoralError`).
    """
    if not ok:
        err = error(f"{field} {message}")
        err.config_field = field  # type: ignore[attr-defined]
        err.config_message = message  # type: ignore[attr-defined]
        raise err


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings under the fields of ``cls`` (and its dataclass bases), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:], strict=False):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if (
                    isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One setting of a config: where it lives in the object and what it is called outside."""

    attrs: tuple[str, ...]
    """Attribute path from the root object, e.g. ``("env", "data", "k_core")``."""
    key: tuple[str, ...]
    """Key path in dicts and YAML, e.g. ``("k_core",)`` (flat sections add no part)."""
    type: Any
    """The field's annotation, resolved."""
    default: Any
    """The value in the root config's default object."""
    doc: str
    """The field's docstring (one line)."""
    metadata: Mapping[str, Any]
    """The field's metadata (``required``, ``positional``)."""

    @property
    def name(self) -> str:
        """The dotted key, e.g. ``train.rounds``."""
        return ".".join(self.key)

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--train.n-envs``."""
        return _flag(self.key)

    @property
    def old_key(self) -> tuple[str, ...] | None:
        """The key the setting had before a rename (:func:`renamed`), still read; None if never renamed."""
        old = self.metadata.get("old_name")
        return self.key[:-1] + (old,) if old else None


def _flag(key: tuple[str, ...]) -> str:
    return "--" + ".".join(part.replace("_", "-") for part in key)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _child_skip(skip: frozenset[str], name: str, own: tuple[str, ...]) -> frozenset[str]:
    prefix = name + "."
    return frozenset(p[len(prefix):] for p in skip if p.startswith(prefix)) | frozenset(own)


def _walk(obj: Any, attrs: tuple[str, ...], key: tuple[str, ...], skip: frozenset[str]) -> Iterator[Leaf]:
    cls = type(obj)
    hints, docs = _hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        value, tp = getattr(obj, f.name), hints[f.name]
        if _is_section(tp):
            _check_skip(value, f.metadata.get("skip", ()), f"{cls.__name__}.{f.name}")
            sub_key = key if f.metadata.get("flat") else key + (f.name,)
            yield from _walk(value, attrs + (f.name,), sub_key, _child_skip(skip, f.name, f.metadata.get("skip", ())))
        else:
            yield Leaf(attrs + (f.name,), key + (f.name,), tp, value, docs.get(f.name, ""), f.metadata)


def _check_skip(section_value: Any, skip: tuple[str, ...], where: str) -> None:
    """:raises ValueError: for a ``skip`` path that names no field of the section (a misspelt path would hide
    nothing)."""
    for path in skip:
        node: Any = section_value
        for part in path.split("."):
            names = {f.name for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else set()
            if part not in names:
                raise ValueError(
                    f"{where}: skip path {path!r} names no setting ({part!r} is not a field of {type(node).__name__})"
                )
            node = getattr(node, part)


def leaves(cls_or_obj: Any) -> list[Leaf]:
    """Every setting of a config class (its defaults) or object (its values), in declaration order.

    :raises ValueError: when two settings have the same key (a flat section's field clashing with its parent's).
    """
    obj = cls_or_obj() if isinstance(cls_or_obj, type) else cls_or_obj
    out = list(_walk(obj, (), (), frozenset()))
    seen: dict[tuple[str, ...], Leaf] = {}
    for leaf in out:
        if leaf.key in seen:
            raise ValueError(
                f"{type(obj).__name__}: fields {'.'.join(seen[leaf.key].attrs)} and {'.'.join(leaf.attrs)} share the "
                f"key {leaf.name!r} (flag {leaf.flag})"
            )
        seen[leaf.key] = leaf
    return out


# ---- values ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(obj: Any, *, identity: bool = False) -> dict[str, Any]:
    """The config ``obj`` as a nested dict of plain values (flat sections merged, skipped fields left out).

    :param identity: name renamed settings by their old keys (:func:`renamed`) and leave out added settings at their
        defaults (:func:`added`): the dict that stage identities hash, unchanged by a rename or an addition.
    """
    out: dict[str, Any] = {}
    for leaf in leaves(obj):
        if identity and "added_default" in leaf.metadata and leaf.default == leaf.metadata["added_default"]:
            continue
        key = leaf.old_key if identity and leaf.old_key else leaf.key
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = _plain(leaf.default)
    return out


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def describe(tp: Any) -> str:
    """A short human name of a type: ``int``, ``one of a, b``, ``a list of int``."""
    args = _union_args(tp)
    if args is not None:
        inner = [describe(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {describe(args[0])}"
        return f"a list of {describe(args[0]) if args else 'values'}"
    if tp is Path:
        return "a path"
    return getattr(tp, "__name__", str(tp))


class _Invalid(Exception):
    """A value that does not fit its annotation."""


def coerce(value: Any, tp: Any) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``.

    :raises _Invalid: when it does not fit.
    """
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except _Invalid:
                continue
        raise _Invalid
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise _Invalid
    if origin in (tuple, list):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _Invalid
            out = [coerce(v, a) for v, a in zip(items, args, strict=False)]
        else:
            out = [coerce(v, args[0]) if args else v for v in items]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _Invalid from None
        raise _Invalid
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _Invalid
    raise TypeError(f"config fields of type {tp!r} are not supported")


#: The largest seed: numpy's legacy ``np.random.seed`` (which Stable-Baselines3 calls) takes 0..2**32-1.
MAX_SEED = 2**32 - 1


def seed_problem(name: str, value: Any) -> str | None:
    """What is wrong with the value of a seed setting (see the module docstring), or None.

    :param name: the setting's name (``seed``, ``split_seed``, ``seeds``, ...; other names are not seeds).
    :param value: its value after type checking.
    """
    if name in ("seed", "seeds") or name.endswith("_seed"):
        seeds = list(value) if isinstance(value, (tuple, list)) else [value]
        bad = [s for s in seeds if isinstance(s, int) and not 0 <= s <= MAX_SEED]
        if bad:
            return f"must be in 0..{MAX_SEED} (the range numpy accepts), got {bad[0]}"
        if name == "seeds" and len(set(seeds)) < len(seeds):
            return f"must not repeat a seed, got {','.join(map(str, seeds))}"
    return None


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def from_dict(
    cls: type[T], data: Mapping[str, Any], where: str = "config", base: T | None = None,
    names: Callable[[Leaf], str] = lambda leaf: leaf.name,
) -> T:
    """Build a config of class ``cls`` from a nested dict of its keys, over ``base`` (default: ``cls()``).

    :param cls: the config class.
    :param data: nested keys as :func:`to_dict` writes them; missing keys keep ``base``'s values.
    :param where: where the data came from (a file name), for messages.
    :param base: the values of keys that ``data`` does not hold.
    :param names: how a setting is named in messages (its key; :func:`from_args` passes the flag).
    :raises CoralError: one line naming the unknown key, the ill-typed value or the invalid setting.
    """
    base = base if base is not None else cls()
    if not isinstance(data, Mapping):
        raise CoralError(f"{_where(where)}expected a mapping of config keys, got {type(data).__name__}")
    all_leaves = leaves(base)
    by_key = {leaf.key: leaf for leaf in all_leaves}
    by_old_key = {leaf.old_key: leaf for leaf in all_leaves if leaf.old_key}
    sections = {leaf.key[:n] for leaf in all_leaves for n in range(1, len(leaf.key))}
    values: dict[tuple[str, ...], Any] = {}

    def visit(node: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for k, v in node.items():
            key = prefix + (str(k),)
            if key in sections:
                if not isinstance(v, Mapping):
                    raise CoralError(f"{_where(where)}{'.'.join(key)} must be a mapping of its keys, got {v!r}")
                visit(v, key)
            elif key in by_key or key in by_old_key:
                leaf = by_key.get(key) or by_old_key[key]
                if leaf.attrs in values:
                    raise CoralError(
                        f"{_where(where)}{'.'.join(leaf.key)} is given twice (once by its old name "
                        f"{'.'.join(leaf.old_key or ())})"
                    )
                try:
                    values[leaf.attrs] = coerce(v, leaf.type)
                except _Invalid:
                    raise CoralError(f"{_where(where)}{names(leaf)} must be {describe(leaf.type)}, got {v!r}") from None
                problem = seed_problem(leaf.key[-1], values[leaf.attrs])
                if problem:
                    raise CoralError(f"{_where(where)}{names(leaf)} {problem}")
            else:
                known = sorted(".".join(x) for x in by_key if x[:-1] == prefix) + sorted(
                    ".".join(s) for s in sections if s[:-1] == prefix
                )
                raise CoralError(f"{_where(where)}unknown key {'.'.join(key)!r}; known: {', '.join(known)}")

    visit(data, ())
    return _rebuild(base, (), values, where, {leaf.attrs: leaf for leaf in all_leaves}, names)


def _rebuild(
    obj: Any, attrs: tuple[str, ...], values: dict[tuple[str, ...], Any], where: str,
    by_attrs: dict[tuple[str, ...], Leaf], names: Callable[[Leaf], str],
) -> Any:
    cls = type(obj)
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = attrs + (f.name,)
        current = getattr(obj, f.name)
        if _is_section(hints[f.name]):
            kwargs[f.name] = (
                _rebuild(current, path, values, where, by_attrs, names)
                if any(a[: len(path)] == path for a in values)
                else current
            )
        else:
            kwargs[f.name] = values.get(path, current)
    try:
        return cls(**kwargs)
    except CoralError as err:
        field = getattr(err, "config_field", None)
        leaf = by_attrs.get(attrs + (field,)) if field else None
        if leaf is None:
            raise type(err)(f"{_where(where)}{err}") from None
        raise type(err)(f"{_where(where)}{names(leaf)} {err.config_message}") from None  # type: ignore[attr-defined]


# ---- YAML ------------------------------------------------------------------------------------
def load_yaml(cls: type[T], path: str | Path, base: T | None = None) -> T:
    """Read a config of class ``cls`` from a YAML (or JSON) file of its keys.

    :raises CoralError: missing file, invalid YAML (with its line), unknown keys, bad values.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except FileNotFoundError:
        raise CoralError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise CoralError(f"{path}: is a directory, not a config file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise CoralError(f"{path}{f':{mark.line + 1}' if mark is not None else ''}: not valid YAML") from None
    if not isinstance(data, dict):
        raise CoralError(f"{path}: expected a mapping of config keys at the top level")
    return from_dict(cls, data, where=str(path), base=base)


def dump_yaml(obj: Any) -> str:
    """The config ``obj`` as YAML text (the keys of :func:`to_dict`, in declaration order)."""
    import yaml

    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)


def config_hash(obj: Any) -> str:
    """A short stable hash of the whole config (every setting, defaults included)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(to_dict(obj), sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---- command line ----------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line ``error: ...`` on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


def _scalar_parser(tp: Any) -> Callable[[str], Any]:
    """Parse one command-line word as ``tp``; argparse reports failures as "invalid <name> value"."""
    args = _union_args(tp)
    if args is not None:
        inner = [a for a in args if a is not type(None)]
        convert = _scalar_parser(inner[0]) if len(inner) == 1 else str

        def optional(text: str) -> Any:
            return None if text.strip().lower() in ("none", "null") else convert(text)

        optional.__name__ = getattr(convert, "__name__", "value")
        return optional
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)

        def choice(text: str) -> Any:
            for c in choices:
                if str(c) == text:
                    return c
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(map(str, choices))})")

        return choice
    if tp is float:
        return float
    if tp is int:
        return int
    if tp is Path:
        return Path
    return str


def _list_parser(tp: Any) -> Callable[[str], Any]:
    args = typing.get_args(tp)
    element = args[0] if args else str
    convert = _scalar_parser(element)

    def parse(text: str) -> Any:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [convert(p) for p in parts]
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {describe(element)} values, got {text!r}"
            ) from None
        try:
            return coerce(values, tp)
        except _Invalid:
            raise argparse.ArgumentTypeError(f"expected {describe(tp)} (comma-separated), got {text!r}") from None

    return parse


def _format_default(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def _metavar(tp: Any) -> str | None:
    args = _union_args(tp)
    if args is not None:
        inner = [a for a in args if a is not type(None)]
        return _metavar(inner[0]) if len(inner) == 1 else "VALUE"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(tp)) + "}"
    if origin in (tuple, list):
        args = typing.get_args(tp)
        return f"{_metavar(args[0]) if args else 'VALUE'},..."
    return {int: "N", float: "X", str: "TEXT", Path: "PATH"}.get(tp, "VALUE")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> list[Leaf]:
    """Add ``--config FILE``, ``--print-config`` and one flag per setting of ``cls`` to ``parser``.

    Flags default to "not given" (argparse's SUPPRESS), so that :func:`from_args` can tell explicit
    flags from defaults; the help text shows the config's default.

    :returns: the settings, in order.
    :raises ValueError: on a duplicate flag.
    """
    settings = leaves(cls)
    parser.add_argument(
        "--print-config", dest=PRINT_CONFIG_DEST, action="store_true",
        help="print the settings as YAML (what --config reads back) and exit",
    )
    parser.add_argument(
        "--config", dest=CONFIG_FILE_DEST, metavar="FILE.yaml", default=None,
        help="read settings from this YAML file first (keys as the flags without --, sections as nested mappings); "
             "flags given explicitly override it",
    )
    groups: dict[tuple[str, ...], Any] = {}
    for leaf in settings:
        if leaf.name in (CONFIG_FILE_DEST, PRINT_CONFIG_DEST, "func", "command"):
            raise ValueError(f"{cls.__name__}: a setting may not be called {leaf.name!r}")
        section_key = leaf.key[:-1]
        target = parser
        if section_key:
            if section_key not in groups:
                groups[section_key] = parser.add_argument_group(".".join(section_key))
            target = groups[section_key]
        default = leaf.default
        help_text = (
            f"{leaf.doc} (default: {_format_default(default)})"
            if leaf.doc
            else f"(default: {_format_default(default)})"
        )
        help_text = help_text.replace("%", "%%")
        if leaf.metadata.get("positional"):
            target.add_argument(
                leaf.name, metavar=leaf.key[-1].upper(), type=_scalar_parser(leaf.type),
                help=leaf.doc.replace("%", "%%"),
            )
            continue
        names = [leaf.flag] + ([_flag(leaf.old_key)] if leaf.old_key else [])
        if leaf.old_key:
            help_text += f" ({names[1]}: its old name, still accepted)"
        if leaf.type is bool:
            target.add_argument(
                *names, dest=leaf.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
            continue
        origin = typing.get_origin(leaf.type)
        convert = _list_parser(leaf.type) if origin in (tuple, list) else _scalar_parser(leaf.type)
        target.add_argument(
            *names, dest=leaf.name, type=convert, default=argparse.SUPPRESS, metavar=_metavar(leaf.type), help=help_text
        )
    return settings


def from_args(cls: type[T], args: argparse.Namespace, base: T | None = None, check_required: bool = True) -> T:
    """The config that the parsed flags describe: ``base`` (default: ``--config`` FILE, else ``cls()``) with every
    explicit flag applied.

    :param check_required: refuse a required setting left empty (``--print-config`` shows it empty).
    :raises CoralError: one line naming the flag (or the file's key) and the bad value; a missing
        required setting.
    """
    if base is None:
        path = getattr(args, CONFIG_FILE_DEST, None)
        base = load_yaml(cls, path) if path else cls()
    settings = leaves(base)
    data: dict[str, Any] = {}
    for leaf in settings:
        if hasattr(args, leaf.name):
            node = data
            for part in leaf.key[:-1]:
                node = node.setdefault(part, {})
            node[leaf.key[-1]] = getattr(args, leaf.name)
    config = from_dict(cls, data, where="", base=base, names=lambda leaf: leaf.flag)
    for leaf in leaves(config) if check_required else ():
        if leaf.metadata.get("required") and leaf.default in (None, ""):
            raise CoralError(f"the following arguments are required: {leaf.flag}")
    return config
