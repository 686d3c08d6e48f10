import numpy as np
import pytest

from breachlab.brain import stats


def test_permutation_exact_hand_computed():
    obs, p = stats.permutation_test([1, 2], [3, 4], n_perm=1000)
    assert obs == -2 and p == pytest.approx(2 / 6)


def test_permutation_random_never_zero_and_detects_effect():
    rng = np.random.default_rng(0)
    obs, p = stats.permutation_test(rng.normal(3, 1, 30), rng.normal(0, 1, 30), n_perm=999, seed=1)
    assert obs > 2 and p == pytest.approx(1 / 1000)


def test_permutation_null_rate():
    rng = np.random.default_rng(42)
    ps = [stats.permutation_test(rng.normal(size=12), rng.normal(size=12), n_perm=400, seed=i)[1] for i in range(300)]
    rate = np.mean(np.array(ps) < 0.05)
    assert 0.02 <= rate <= 0.09, rate  # nominal 0.05; binomial SD ~0.013


def test_fdr_bh_hand_computed():
    q = stats.fdr_bh([0.01, 0.04, 0.03, 0.5])
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert np.isnan(stats.fdr_bh([np.nan, 0.2])[0])


def test_bootstrap_ci():
    est, lo, hi = stats.bootstrap_diff_ci([2.0, 2.0, 2.0], [0.5, 0.5], n_boot=500)
    assert (est, lo, hi) == (1.5, 1.5, 1.5)
    est, lo, hi = stats.bootstrap_diff_ci([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0], n_boot=2000, seed=3)
    assert est == 2.5 and 1.0 <= lo < est < hi <= 4.0
    assert np.isnan(stats.bootstrap_diff_ci([1.0], [0.0])[1])


def _with_r(x, r, rng):
    """A map whose Pearson r with x is exactly r."""
    x = (x - x.mean()) / x.std()
    e = rng.standard_normal(x.size)
    e -= e.mean()
    e -= (e @ x) / (x @ x) * x
    e /= e.std()
    return r * x + np.sqrt(1 - r * r) * e


@pytest.mark.parametrize("r", [-0.3, 0.0, 0.6, 0.95])
def test_known_correlation_recovered(r):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    assert stats.pearson_r(x, _with_r(x, r, rng)) == pytest.approx(r, abs=1e-10)


def test_rotations_are_rotations():
    rot = stats._random_rotations(50, np.random.default_rng(0))
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-10)
    assert np.allclose(np.linalg.det(rot), 1.0)


def test_spin_test_masks_the_medial_wall_of_both_maps():
    """Whatever the second map holds in the medial wall cannot change r or p."""
    from breachlab.brain.stats import spin_test

    rng = np.random.default_rng(0)
    n = 40
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    mask = np.ones(n, bool)
    mask[-5:] = False  # the "medial wall"
    spins = np.array([rng.permutation(n) for _ in range(50)])
    y_wall = y.copy()
    y_wall[~mask] = 1e6
    assert spin_test(x, y, spins, mask) == spin_test(x, y_wall, spins, mask)
    assert spin_test(x, y, spins, None) != spin_test(x, y_wall, spins, None)  # without a mask it would
