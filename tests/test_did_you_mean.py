"""'did you mean' in the messages for recipe keys and names: models, optimizers, schedulers, datasets, recipes."""

from __future__ import annotations

import pytest

from unilk.errors import ConfigError, did_you_mean


def test_did_you_mean_finds_typos_and_case_and_stays_quiet_otherwise() -> None:
    assert did_you_mean("adamww", ["adam", "adamw", "sgd"]).startswith("did you mean 'adamw'")
    assert did_you_mean("cosin", ["cosine", "step"]) == "did you mean 'cosine'? "
    assert did_you_mean("ADAMW", ["adamw", "sgd"]) == "did you mean 'adamw'? "
    assert did_you_mean("zzz", ["cosine", "step"]) == ""


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("optim.weight_decy=0.1", "did you mean 'weight_decay'"),  # an unknown key
        ("model.arch=unireplknet_aa", "did you mean 'unireplknet_a'"),
        ("optim.opt=adamww", "did you mean 'adamw'"),
        ("sched.sched=cosin", "did you mean 'cosine'"),
        ("data.dataset=SpeechComands", "did you mean 'SpeechCommands'"),
    ],
)
def test_recipe_names_and_keys_suggest_the_closest(override: str, suggestion: str) -> None:
    from unilk.train.build import validate_recipe
    from unilk.train.config import load_recipe

    with pytest.raises(ConfigError, match=suggestion):
        validate_recipe(load_recipe("audio/quick_speech_commands").replace([override]))


def test_recipe_name_typo_suggests_the_shipped_one() -> None:
    from unilk.train.config import load_recipe

    with pytest.raises(ConfigError, match="did you mean 'audio/quick_speech_commands'"):
        load_recipe("audio/quick_speech_comands")
