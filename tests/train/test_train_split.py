"""train.split: one seeded split for every study, each study's rows kept by its salt."""

from __future__ import annotations

import numpy as np
import pytest

from galforge.environment.training import SPLIT_SALT as ENV_SALT
from galforge.settings import SettingsError
from galforge.spectra.training import SPLIT_SALT as SPECTRA_SALT
from galforge.train.split import SplitSettings, split_indices


def _legacy_environment(n, val_fraction, seed):
    """The environment study's split before it was shared (no guards)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    perm = rng.permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _legacy_spectra(n, val_fraction, seed):
    """The spectra study's split before it was shared."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EC7]))
    perm = rng.permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def test_salts_are_the_studies_own():
    assert (ENV_SALT, SPECTRA_SALT) == (0x5EED, 0x5EC7)


def test_pinned_rows():
    tr, va = split_indices(12, 0.25, 7, salt=ENV_SALT)
    assert va.tolist() == [6, 9, 10] and tr.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 11]
    tr, va = split_indices(12, 0.25, 7, salt=SPECTRA_SALT)
    assert va.tolist() == [6, 7, 9] and tr.tolist() == [0, 1, 2, 3, 4, 5, 8, 10, 11]


@pytest.mark.parametrize("n", [2, 3, 10, 11, 97, 1000])
@pytest.mark.parametrize("val_fraction", [0.01, 0.1, 0.15, 0.2, 0.49])
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 3])
def test_same_rows_as_each_study_drew_before(n, val_fraction, seed):
    for salt, legacy in ((ENV_SALT, _legacy_environment), (SPECTRA_SALT, _legacy_spectra)):
        got = split_indices(n, val_fraction, seed, salt=salt)
        want = legacy(n, val_fraction, seed)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_partition_sorted_and_disjoint():
    tr, va = split_indices(101, 0.15, 3, salt=1)
    assert len(va) == 15 and len(tr) == 86
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert sorted(np.r_[tr, va].tolist()) == list(range(101))


def test_at_least_one_row_each_side():
    tr, va = split_indices(2, 0.01, 0, salt=1)
    assert len(tr) == len(va) == 1
    tr, va = split_indices(3, 0.99, 0, salt=1)
    assert len(tr) == 1 and len(va) == 2


@pytest.mark.parametrize(("n", "vf", "match"), [(1, 0.1, "at least 2 rows"),
                                                 (10, 0.0, r"\(0, 1\)"), (10, 1.0, r"\(0, 1\)")])
def test_guards(n, vf, match):
    with pytest.raises(ValueError, match=match):
        split_indices(n, vf, 0, salt=1)


def test_split_settings():
    assert SplitSettings().val_fraction == 0.1
    assert SplitSettings.from_dict({"val_fraction": 0.15}).val_fraction == 0.15
    for bad in (0, 0.5, -0.1, "x"):
        with pytest.raises(SettingsError, match="^val_fraction"):
            SplitSettings.from_dict({"val_fraction": bad})
    with pytest.raises(SettingsError, match="^fraction: unknown key"):
        SplitSettings.from_dict({"fraction": 0.1})
    schema = SplitSettings.json_schema()["properties"]["val_fraction"]
    assert schema["exclusiveMinimum"] == 0 and schema["exclusiveMaximum"] == 0.5
