"""TrainSettings: defaults, validation naming the key, unknown keys rejected."""

from __future__ import annotations

import pytest

from galforge.settings import Settings, SettingsError
from galforge.train.settings import RESUME_SAFE_FIELDS, TrainSettings


def test_defaults_round_trip():
    cfg = TrainSettings()
    assert TrainSettings.from_dict(cfg.to_dict()) == cfg
    assert TrainSettings.from_dict(None) == cfg
    assert cfg.replace(epochs=3).epochs == 3


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(SettingsError, match=r"^learning_rate: unknown key.*known keys:.*\blr\b"):
        TrainSettings.from_dict({"learning_rate": 1e-3})
    with pytest.raises(SettingsError, match=r"^bogus: unknown key \(and zzz\)"):
        TrainSettings.from_dict({"bogus": 1, "zzz": 2})


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("epochs", 0, "^epochs = 0 must be >= 1"),
        ("batch_size", 2.5, "^batch_size: must be an integer"),
        ("lr", 0.0, r"^lr = 0.0 must be > 0.0"),
        ("lr", float("nan"), "^lr: must be finite"),
        ("optimizer", "sgd", r"^optimizer = 'sgd'; choose one of 'adam', 'adamw'"),
        ("scheduler", "step", "^scheduler = 'step'"),
        ("grad_clip", -1.0, "^grad_clip = -1.0 must be > 0.0"),
        ("early_stopping_patience", 0, "^early_stopping_patience = 0 must be >= 1"),
        ("amp", "yes", "^amp: must be true or false"),
        ("plateau_factor", 1.0, r"^plateau_factor = 1.0 must be in \(0.0, 1.0\)"),
        ("seed", -1, r"^seed = -1 must be in \[0, 9223372036854775807\]"),
    ],
)
def test_bad_values_name_the_key(key, value, pattern):
    with pytest.raises(SettingsError, match=pattern) as info:
        TrainSettings.from_dict({key: value})
    assert info.value.key == key


def test_lr_min_below_lr_with_a_schedule():
    with pytest.raises(SettingsError, match="^lr_min = 0.01 must be below lr = 0.001"):
        TrainSettings.from_dict({"scheduler": "cosine", "lr": 1e-3, "lr_min": 1e-2})


def test_integral_floats_become_ints_and_config_is_frozen():
    cfg = TrainSettings.from_dict({"epochs": 3.0, "lr": 1})
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(AttributeError):
        cfg.epochs = 4  # type: ignore[misc]


def test_resume_mismatches_ignore_harmless_fields():
    cfg = TrainSettings()
    assert cfg.resume_mismatches(cfg.replace(num_workers=2, progress=False, checkpoint_every=9).to_dict()) == []
    assert cfg.resume_mismatches(cfg.replace(lr=0.1, seed=3).to_dict()) == ["lr", "seed"]


def test_is_a_settings_section_with_every_field_documented():
    assert issubclass(TrainSettings, Settings)
    schema = TrainSettings.json_schema()
    assert schema["additionalProperties"] is False
    assert all(p.get("description") for p in schema["properties"].values())
    assert schema["properties"]["grad_clip"]["type"] == ["number", "null"]
    assert RESUME_SAFE_FIELDS <= set(TrainSettings.keys())


def test_defaults_are_unchanged():
    assert TrainSettings().to_dict() == {
        "epochs": 10, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "optimizer": "adam",
        "betas": [0.9, 0.999],
        "scheduler": "none", "lr_min": 0.0, "plateau_factor": 0.5, "plateau_patience": 5,
        "gamma": 0.998, "gamma_every": 10, "gamma_slow_every": 120, "gamma_slow_below": 3e-6,
        "grad_clip": None, "checkpoint_every": 0, "early_stopping_patience": None,
        "early_stopping_min_delta": 0.0, "restore_best_weights": False, "seed": 0,
        "deterministic": True, "drop_last": False, "amp": False, "amp_dtype": "float16",
        "compile": False, "num_workers": 0, "devices": 1, "progress": True,
    }
