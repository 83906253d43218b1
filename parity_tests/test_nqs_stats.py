"""Markov-chain statistics against values worked out by hand, and the collapsed state."""

import math

import numpy as np
import pytest

from twins.stats import SINGLE_CHAIN_BLOCKS, format_value_error, statistics

# Two chains of four samples; every expected value below is worked out by hand.
TWO_CHAINS = np.array([[1.0, 2.0, 3.0, 4.0],
                       [2.0, 4.0, 6.0, 8.0]])


def test_two_chain_mean_and_variance():
    result = statistics(TWO_CHAINS)
    assert result.mean == pytest.approx(30 / 8)
    # mean of squares 150 / 8 minus the squared mean 3.75^2
    assert result.variance == pytest.approx(150 / 8 - 3.75**2)
    assert result.n_chains == 2
    assert result.n_samples == 8


def test_two_chain_error_from_chain_means():
    result = statistics(TWO_CHAINS)
    # chain means 2.5 and 5 lie 1.25 from the mean: var 1.5625 over 2 chains
    assert result.error_of_mean == pytest.approx(math.sqrt(1.5625 / 2))


def test_two_chain_split_r_hat():
    result = statistics(TWO_CHAINS)
    # half-chain means 1.5, 3.5, 3, 7: deviations -2.25, -0.25, -0.75, 3.25
    half_variance = (2.25**2 + 0.25**2 + 0.75**2 + 3.25**2) / 4
    assert result.r_hat == pytest.approx(math.sqrt(3 / 4 + half_variance / 4.6875))
    assert result.tau_corr == pytest.approx((4 * 1.5625 / 4.6875 - 1) / 2)
    assert result.undefined_reason is None


def test_odd_chain_drops_last_sample_for_split():
    data = np.array([[1.0, 2.0, 3.0, 4.0, 100.0],
                     [2.0, 4.0, 6.0, 8.0, -100.0]])
    result = statistics(data)
    half_means = np.array([1.5, 3.5, 3.0, 7.0])
    expected = math.sqrt(4 / 5 + np.var(half_means) / result.variance)
    assert result.r_hat == pytest.approx(expected)


def test_single_chain_uses_blocks():
    data = np.arange(64.0) ** 2
    result = statistics(data)
    block_means = data.reshape(SINGLE_CHAIN_BLOCKS, 2).mean(axis=1)
    assert result.error_of_mean == pytest.approx(math.sqrt(np.var(block_means) / 32))
    assert result.r_hat is None
    assert "two chains" in result.undefined_reason


def test_complex_data_variance_uses_modulus():
    data = np.array([[1 + 1j, 1 - 1j], [-1 + 1j, -1 - 1j]])
    result = statistics(data)
    assert result.mean == 0
    assert result.variance == pytest.approx(2.0)  # |x|^2 = 2 for every entry
    assert isinstance(result.mean, complex)
    assert result.as_dict()["mean"] == [0.0, 0.0]


def test_collapsed_state_reports_undefined():
    data = np.full((16, 50), -20.0)
    result = statistics(data)
    assert result.collapsed
    assert result.mean == -20.0
    assert result.variance == 0.0
    assert result.error_of_mean == 0.0
    assert result.r_hat is None
    assert result.tau_corr is None
    assert "collapsed" in result.undefined_reason
    text = str(result)
    assert "nan" not in text.lower()
    assert "undefined" in text


def test_iid_error_matches_standard_error():
    """Independent normal samples: the chain-mean error is the plain standard error."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 400))
    result = statistics(data)
    standard_error = data.std() / math.sqrt(data.size)
    # the chain-mean estimate from 64 chains has a relative spread of about
    # 1/sqrt(2 * 63) = 9%; 30% is over three of those
    assert result.error_of_mean == pytest.approx(standard_error, rel=0.3)
    assert result.r_hat == pytest.approx(1.0, abs=0.01)


def test_unmixed_chains_raise_r_hat():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(8, 200)) + np.arange(8)[:, None]
    assert statistics(data).r_hat > 1.1


# netket.stats.statistics of NetKet 3.23 with NETKET_EXPERIMENTAL_FFT_AUTOCORRELATION=1
# on the data of _netket_cases(): (mean, error_of_mean, variance, R_hat).
NETKET_3_23 = {
    "autocorrelated": (-0.22789607100436512, 0.10854623908923965, 1.308775823383027,
                       1.0821305926221532),
    "complex": (-0.01906253168029619 - 0.058084575640683166j, 0.05294059740104554,
                1.907693598775761, 1.002727021707504),
}
# Same formulas; only the order of summation differs.
NETKET_RTOL = 1e-12


def _netket_cases():
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(16, 64)), axis=1) * 0.1
    autocorrelated = walk + rng.normal(size=(16, 64))
    complex_data = rng.normal(size=(8, 50)) + 1j * rng.normal(size=(8, 50))
    return {"autocorrelated": autocorrelated, "complex": complex_data}


@pytest.mark.parametrize("case", list(NETKET_3_23))
def test_matches_netket(case):
    result = statistics(_netket_cases()[case])
    mean, error, variance, r_hat = NETKET_3_23[case]
    assert result.mean == pytest.approx(mean, rel=NETKET_RTOL)
    assert result.error_of_mean == pytest.approx(error, rel=NETKET_RTOL)
    assert result.variance == pytest.approx(variance, rel=NETKET_RTOL)
    assert result.r_hat == pytest.approx(r_hat, rel=NETKET_RTOL)


def test_bad_shape_rejected():
    with pytest.raises(ValueError, match="n_chains, n_samples"):
        statistics(np.zeros((2, 3, 4)))


def test_format_value_error():
    assert format_value_error(-20.40123, 0.0123) == "-20.401 +- 0.012"
    assert format_value_error(-20.0, 0.0) == "-20 +- 0"
