"""Monte Carlo statistics of Markov-chain data, computed as NetKet reports them.

The input has one row per chain: ``data[c, t]`` is the value (a local energy,
say) of chain ``c`` at sample ``t``, shape (n_chains, n_samples_per_chain). A
1D array is one chain. The formulas follow ``netket.stats.statistics``
(``netket/stats/mc_stats.py``) in the mode that NetKet 3.23 selects with
``NETKET_EXPERIMENTAL_FFT_AUTOCORRELATION=1``, written again here with numpy.
Mean, error, variance and R-hat then agree with NetKet 3.23 to rounding.
NetKet's default mode estimates the error by blocking instead, and returns
NaN with fewer than 32 chains or blocks.

* mean: the mean over all entries.
* variance: ``mean(|x - mean|^2)`` over all entries (no Bessel correction, as in
  ``netket.stats.var`` with its default ``ddof=0``).
* error of the mean, with more than one chain: ``sqrt(var(chain_means) / n_chains)``.
  Each chain's mean is one nearly independent estimate, so the spread of the
  chain means contains the autocorrelation within chains. With one chain:
  the chain is cut into 32 blocks of ``n_samples // 32`` samples (at least 1)
  and the error is ``sqrt(var(block_means) / n_blocks)``.
* split-chain R-hat (Gelman-Rubin, Vehtari et al. 2021, arXiv:1903.08008):
  every chain is cut in two halves (the last sample is dropped when the length
  is odd), and ``R_hat = sqrt((n - 1) / n + var(half_means) / variance)``, with
  ``n`` the full chain length, as in NetKet. Values near 1 mean the chains
  agree; above about 1.1 they have not mixed. It needs at least two chains.
* autocorrelation time: ``tau = max(0, (n_total / n_chains * var(chain_means) /
  variance - 1) / 2)``, the batch estimate of NetKet's blocking statistics
  (``mc_stats_old.py``), not its FFT estimator.

A collapsed state, where every sample has the same value, has variance 0: the
ratios in R-hat and tau are 0/0. NetKet returns NaN there; these functions
return ``None`` together with a reason, so that a caller can print "undefined"
instead of "nan".
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

# Blocks used for the error of the mean when there is a single chain
# (``BLOCK_SIZE`` in NetKet's ``mc_stats.py``).
SINGLE_CHAIN_BLOCKS = 32


@dataclass(frozen=True)
class Stats:
    """Summary of Markov-chain data.

    ``mean`` is complex when the data are complex; every other field is real.
    ``r_hat`` and ``tau_corr`` are ``None`` when they are undefined, and
    ``undefined_reason`` then gives the reason (for example a zero variance).
    """

    mean: complex | float
    error_of_mean: float
    variance: float
    r_hat: float | None
    tau_corr: float | None
    n_chains: int
    n_samples: int
    undefined_reason: str | None = None

    @property
    def collapsed(self) -> bool:
        """True when every sample has the same value (zero variance)."""
        return self.variance == 0.0

    def as_dict(self) -> dict:
        """Return the fields as JSON-ready values; a complex mean becomes [re, im]."""
        out = asdict(self)
        if isinstance(self.mean, complex):
            out["mean"] = [self.mean.real, self.mean.imag]
        return out

    def __str__(self) -> str:
        mean = self.mean.real if isinstance(self.mean, complex) else self.mean
        r_hat = "undefined" if self.r_hat is None else f"{self.r_hat:.4f}"
        return (f"{format_value_error(mean, self.error_of_mean)} "
                f"[var={self.variance:.3e}, R_hat={r_hat}]")


def format_value_error(value: float, error: float) -> str:
    """Return ``value +- error`` with one digit beyond the error's leading digit.

    An error of 0 (a collapsed state) prints the value in full precision and
    the error as ``0``.
    """
    if error > 0 and math.isfinite(error):
        decimals = max(0, -math.floor(math.log10(error))) + 1
        return f"{value:.{decimals}f} +- {error:.{decimals}f}"
    return f"{value:.12g} +- 0"


def _variance(values: np.ndarray) -> float:
    """Return mean(|x - mean|^2), the population variance, also for complex data."""
    return float(np.mean(np.abs(values - values.mean()) ** 2))


def statistics(data) -> Stats:
    """Return mean, error of the mean, variance, split-chain R-hat and tau.

    ``data`` has shape (n_chains, n_samples_per_chain), or (n_samples,) for one
    chain; real or complex. The formulas are in the module docstring.
    """
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"statistics expects (n_chains, n_samples) data, got shape "
                         f"{data.shape}; reshape to put the chains on the first axis")
    n_chains, length = data.shape
    if data.size == 0:
        raise ValueError(f"statistics got empty data of shape {data.shape}; "
                         f"draw at least one sample per chain")

    mean = data.mean()
    mean = complex(mean) if np.iscomplexobj(data) else float(mean)
    variance = _variance(data)
    chain_means = data.mean(axis=1)

    if n_chains > 1:
        between_chain_variance = _variance(chain_means)
        error_of_mean = math.sqrt(between_chain_variance / n_chains)
    else:
        block_length = max(1, length // SINGLE_CHAIN_BLOCKS)
        n_blocks = length // block_length
        blocks = data[0, : n_blocks * block_length].reshape(n_blocks, block_length)
        between_chain_variance = _variance(blocks.mean(axis=1))
        error_of_mean = math.sqrt(between_chain_variance / n_blocks)

    reason = None
    r_hat = tau_corr = None
    if variance == 0.0:
        reason = "zero variance: every sample has the same value (collapsed state)"
    elif n_chains < 2:
        reason = "split-chain R-hat needs at least two chains"
    elif length < 2:
        reason = "split-chain R-hat needs at least two samples per chain"
    else:
        half = length // 2
        halves = data[:, : 2 * half].reshape(2 * n_chains, half)
        r_hat = math.sqrt((length - 1) / length + _variance(halves.mean(axis=1)) / variance)
        tau_corr = max(0.0, (length * between_chain_variance / variance - 1) / 2)

    return Stats(mean=mean, error_of_mean=error_of_mean, variance=variance, r_hat=r_hat,
                 tau_corr=tau_corr, n_chains=n_chains, n_samples=data.size,
                 undefined_reason=reason)
