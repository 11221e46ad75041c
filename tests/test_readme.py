"""The README is a front page: the two commands, the results and the map of the code first, every
``coral`` command in its Commands table, and no link into a moved section."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from coral.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every sub-command of ``coral`` as its words (``data stats``), nested groups included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, (*prefix, name))
                out += nested or [" ".join((*prefix, name))]
    return out


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_every_command_is_in_the_commands_table() -> None:
    table = _section("Commands")
    commands = _commands(build_parser())
    assert "serve-scorer" in commands and "data stats" in commands
    missing = [c for c in commands if not re.search(rf"^\| `coral {re.escape(c)}[ `]", table, flags=re.M)]
    assert not missing, f"commands missing from the README's Commands table: {missing}"


def test_the_front_page_starts_with_the_commands_results_and_map() -> None:
    head = "\n".join(README.splitlines()[:60])  # with the headline table in place
    assert head.count("```bash") == 2 and "bash .ci/run" in head
    assert "## Results" in head and "experiments/results/benchmark.md" in head
    assert "## Map of the code" in head and "package-dir" in head and "tests/test_architecture.py" in head
    assert len(README.splitlines()) <= 200


def test_relative_links_of_the_readme_and_guides_exist() -> None:
    for page in [REPO / "README.md", *sorted((REPO / "coral" / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to a missing {target}"
        assert "](#" not in page.read_text(encoding="utf-8"), (
            f"{page.relative_to(REPO)} links to a section of itself that may have moved"
        )
