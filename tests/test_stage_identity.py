"""Renames keep stage identities: the option ``--layout`` became ``--precision`` (issue 29) and the
CSV settings became a section of ``DataConfig``, and no finished stage, cache or dataset moves."""

from __future__ import annotations

from pathlib import Path

import pytest

import coral.pipeline.run as run_module
from coral.cli import build_parser
from coral.config import from_args, from_dict, to_dict
from coral.data.dataset import DataConfig
from coral.errors import CoralError
from coral.pipeline.config import RunConfig

#: The stage directory names of a default ``coral run`` on gift_cards (scorer hf in float32, 20 test
#: and 10 validation pairs, library versions pinned), computed on main at fa40ada, before the
#: renames, with the config key ``layout`` (the option's name there). A changed value here means
#: that every finished stage of every earlier run would be recomputed.
BEFORE_RENAME = [
    "baselines-seed0-8679e129bf17", "align-seed0-cac5eb42d273", "coral-random@zero-shot-seed0-4491776cc28e",
    "coral-greedy@zero-shot-seed0-ef36087ef430", "coral-ppo-dfm@zero-shot-seed0-bcc1f60181f9",
    "controls@zero-shot-seed0-97f889466eee",
]
#: gift_cards' dataset fingerprint and the hash of a TSV layout with renamed columns, at fa40ada.
DATASET_FINGERPRINT = "c0cc79516496"
CUSTOM_CSV_HASH = "728635073bfc"


def _stage_names(config: dict, tmp_path: Path, monkeypatch) -> tuple[list[str], str]:
    monkeypatch.setattr(run_module, "library_versions", lambda: "pinned")  # CI's versions differ from the ones hashed
    job = run_module.MainJob(from_dict(RunConfig, config), tmp_path, log=lambda _: None)
    ds = job.dataset("gift_cards", 0)
    pairs = job.pairs(ds, tmp_path, 0)
    stages = [
        job.baselines_stage(ds, 0), job.align_stage(ds, 0),
        job.fixed_policy_stage(ds, pairs, "hf", "zero-shot", "coral-random", 0),
        job.fixed_policy_stage(ds, pairs, "hf", "zero-shot", "coral-greedy", 0),
        job.trained_policy_stage(ds, pairs, "hf", "zero-shot", "coral-ppo", "dfm", 0),
        job.controls_stage(ds, pairs, "hf", "zero-shot", 0),
    ]
    return [stage.directory(Path(".")).name for stage in stages], ds.fingerprint


@pytest.mark.parametrize("key", ["precision", "layout"])
def test_stage_identities_are_those_of_before_the_renames(key, tmp_path, monkeypatch) -> None:
    # The alignment's prompt as it was at fa40ada: the default has since gained base rates and CF
    # tokens (issue 27), a change of recipe that does move the align stage, unlike the renames.
    config = {
        "dataset": "gift_cards", "scorer": "hf", key: "float32", "eval_pairs": 20, "valid_pairs": 10,
        "alignment": {"prompt": {"base_rates": False, "cf_tokens": 0}},
    }
    names, fingerprint = _stage_names(config, tmp_path, monkeypatch)
    assert names == BEFORE_RENAME
    assert fingerprint == DATASET_FINGERPRINT


def test_csv_settings_keep_their_keys_and_hash() -> None:
    config = from_dict(
        DataConfig, {"dataset": "x.tsv", "sep": "tab", "user_col": "uid", "item_col": "iid", "rating_col": "stars"}
    )
    assert config.hash == CUSTOM_CSV_HASH
    assert to_dict(config)["user_col"] == "uid" and to_dict(config)["sep"] == "\t"


def test_the_old_precision_flag_and_key_are_still_read(tmp_path) -> None:
    parser = build_parser()
    old = from_args(RunConfig, parser.parse_args(["run", "--layout", "int8"]))
    new = from_args(RunConfig, parser.parse_args(["run", "--precision", "int8"]))
    assert old == new and new.scorer.precision == "int8"
    assert from_dict(RunConfig, {"layout": "bfloat16"}).scorer.precision == "bfloat16"
    assert "precision" in to_dict(new) and "layout" not in to_dict(new)
    assert to_dict(new, identity=True)["layout"] == "int8"
    with pytest.raises(CoralError, match="precision is given twice"):
        from_dict(RunConfig, {"layout": "int8", "precision": "float32"})


def test_an_added_setting_enters_identities_only_away_from_its_default() -> None:
    """EnvConfig.reward came after the benchmark's stages were hashed (coral.config.added): at its default the
    identity dict is the one from before it existed; another value is in it (and so moves the stage)."""
    from coral.envs import EnvConfig

    default, log_odds = EnvConfig(), EnvConfig(reward="log_odds")
    assert "reward" in to_dict(default) and "reward" not in to_dict(default, identity=True)
    assert to_dict(log_odds, identity=True)["reward"] == "log_odds"
    assert {k: v for k, v in to_dict(log_odds, identity=True).items() if k != "reward"} == to_dict(
        default, identity=True
    )
