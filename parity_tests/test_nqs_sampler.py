"""Metropolis samplers: identical chains from shared random numbers, exact |psi|^2.

The wavefunction here is an RBM written directly with each side's ``log_cosh``,
so that these tests check the samplers alone; the trainer tests run them on
the ansatz modules.
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flax_impl.sampler as flax_sampler
import torch_impl.sampler as torch_sampler
from twins.stats import statistics

N_SITES = 8
N_HIDDEN = 8
N_CHAINS = 8
N_DISCARD = 10
N_SWEEPS_SHARED = 1000
# Sampling error per configuration: each probability is checked within this
# many standard errors of the mean (as NetKet's sampler tests do).
N_SIGMA = 5.0


def _rbm_params(rng, n_sites, n_hidden, complex_params, scale=0.4):
    def draw(*shape):
        values = rng.normal(scale=scale, size=shape)
        if complex_params:
            values = values + 1j * rng.normal(scale=scale, size=shape)
        return values

    return {"weight": draw(n_hidden, n_sites), "hidden_bias": draw(n_hidden),
            "visible_bias": draw(n_sites)}


def _torch_log_psi(params):
    weight, hidden_bias, visible_bias = (torch.tensor(params[k]) for k in
                                         ("weight", "hidden_bias", "visible_bias"))

    def log_psi(s):
        s = s.to(weight.dtype)
        return s @ visible_bias + torch_sampler.log_cosh(s @ weight.T + hidden_bias).sum(dim=1)

    return log_psi


def _flax_log_psi(variables, s):
    s = s.astype(variables["kernel"].dtype)
    theta = s @ variables["kernel"] + variables["hidden_bias"]
    return s @ variables["visible_bias"] + flax_sampler.log_cosh(theta).sum(axis=1)


def _flax_variables(params):
    return {"kernel": jnp.asarray(params["weight"].T),
            "hidden_bias": jnp.asarray(params["hidden_bias"]),
            "visible_bias": jnp.asarray(params["visible_bias"])}


def _shared_inputs(seed, n_sites, n_chains, n_sweeps):
    rng = np.random.default_rng(seed)
    sites = rng.integers(0, n_sites, size=(n_sweeps, n_sites, n_chains))
    uniforms = rng.random(size=(n_sweeps, n_sites, n_chains))
    start = np.where(rng.random((n_chains, n_sites)) < 0.5, -1.0, 1.0)
    return start, sites, uniforms


def _run_all_four(params, start, sites, uniforms, n_discard, n_samples):
    torch_start = torch.tensor(start)
    variables = _flax_variables(params)
    return {
        "torch": torch_sampler.sample(_torch_log_psi(params), torch_start, sites, uniforms,
                                      n_discard, n_samples),
        "torch_rbm": torch_sampler.sample_rbm(
            torch.tensor(params["weight"]), torch.tensor(params["hidden_bias"]),
            torch.tensor(params["visible_bias"]), torch_start, sites, uniforms,
            n_discard, n_samples),
        "flax": flax_sampler.sample(_flax_log_psi, variables, jnp.asarray(start), sites,
                                    uniforms, n_discard, n_samples),
        "flax_rbm": flax_sampler.sample_rbm(
            variables["kernel"], variables["hidden_bias"], variables["visible_bias"],
            jnp.asarray(start), sites, uniforms, n_discard, n_samples),
    }


@pytest.mark.parametrize("complex_params", [False, True], ids=["real", "complex"])
def test_shared_randomness_identical_chains(complex_params):
    """Torch, Flax and both RBM fast paths make every decision alike for 1000 sweeps."""
    rng = np.random.default_rng(10)
    params = _rbm_params(rng, N_SITES, N_HIDDEN, complex_params)
    start, sites, uniforms = _shared_inputs(11, N_SITES, N_CHAINS, N_DISCARD + N_SWEEPS_SHARED)
    runs = _run_all_four(params, start, sites, uniforms, N_DISCARD, N_SWEEPS_SHARED)

    reference = runs["torch"]
    assert reference.samples.shape == (N_CHAINS, N_SWEEPS_SHARED, N_SITES)
    assert reference.samples.dtype == torch.float64
    # A sampler that accepted everything or nothing would agree trivially.
    assert 0.05 < reference.acceptance < 0.95
    for name, run in runs.items():
        samples = np.asarray(run.samples)
        first_difference = np.argwhere((samples != reference.samples.numpy()).any(axis=2))
        assert first_difference.size == 0, (
            f"{name} differs from torch at (chain, sample) {first_difference[0].tolist()}")
        assert float(run.acceptance) == reference.acceptance, name
        # log psi of the same states: only rounding differs (incremental updates
        # on the fast paths, summation order across frameworks).
        np.testing.assert_allclose(np.asarray(run.log_psi), reference.log_psi.numpy(),
                                   rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_array_equal(np.asarray(run.last), reference.last.numpy())


def test_shared_randomness_decisions_depend_on_uniforms():
    """Different uniforms give different chains, so the identity test can fail."""
    rng = np.random.default_rng(10)
    params = _rbm_params(rng, N_SITES, N_HIDDEN, complex_params=False)
    start, sites, uniforms = _shared_inputs(11, N_SITES, N_CHAINS, 60)
    log_psi = _torch_log_psi(params)
    first = torch_sampler.sample(log_psi, torch.tensor(start), sites, uniforms, 10, 50)
    second = torch_sampler.sample(log_psi, torch.tensor(start), sites, 1 - uniforms, 10, 50)
    assert not torch.equal(first.samples, second.samples)


def test_burn_in_is_not_recorded():
    rng = np.random.default_rng(3)
    params = _rbm_params(rng, 4, 4, complex_params=False)
    start, sites, uniforms = _shared_inputs(4, 4, 2, 7)
    log_psi = _torch_log_psi(params)
    with_burn_in = torch_sampler.sample(log_psi, torch.tensor(start), sites, uniforms, 3, 4)
    full = torch_sampler.sample(log_psi, torch.tensor(start), sites, uniforms, 0, 7)
    assert torch.equal(with_burn_in.samples, full.samples[:, 3:])


def test_wrong_proposal_shape_rejected():
    start, sites, uniforms = _shared_inputs(0, 4, 2, 5)
    with pytest.raises(ValueError, match="n_discard \\+ n_samples"):
        torch_sampler.sample(lambda s: s.sum(1), torch.tensor(start), sites, uniforms, 1, 5)
    with pytest.raises(ValueError, match="n_discard \\+ n_samples"):
        flax_sampler.sample(lambda v, s: s.sum(1), {}, jnp.asarray(start), sites, uniforms, 1, 5)


def _all_configurations(n_sites):
    # Basis index 0 is all +1; site 0 is the most significant bit.
    bits = np.array(list(itertools.product([0, 1], repeat=n_sites)))
    return 1.0 - 2.0 * bits


def _configuration_index(samples):
    n_sites = samples.shape[-1]
    bits = (1 - np.asarray(samples)) / 2
    return (bits @ (2 ** np.arange(n_sites - 1, -1, -1))).astype(int)


def _assert_matches_born_probabilities(samples, log_psi_exact, label):
    """Check every configuration's frequency within N_SIGMA errors of |psi|^2."""
    probabilities = np.exp(2 * log_psi_exact.real)
    probabilities /= probabilities.sum()
    index = _configuration_index(samples)  # (n_chains, n_samples)
    worst = 0.0
    for configuration, p in enumerate(probabilities):
        result = statistics((index == configuration).astype(float))
        # A configuration seen in no chain has error 0; the independent-sample
        # error is the floor of the chain-based one.
        sigma = max(result.error_of_mean, np.sqrt(p * (1 - p) / index.size))
        worst = max(worst, abs(result.mean - p) / sigma)
    assert worst < N_SIGMA, f"{label}: a frequency lies {worst:.1f} sigma from |psi|^2"


@pytest.mark.parametrize("complex_params", [False, True], ids=["real", "complex"])
def test_independent_samplers_match_born_rule(complex_params):
    """Each sampler with its own RNG reproduces exact |psi|^2 on 6 spins."""
    n_sites, n_chains, n_discard, n_samples = 6, 64, 20, 250
    rng = np.random.default_rng(20)
    params = _rbm_params(rng, n_sites, 6, complex_params, scale=0.5)
    configurations = _all_configurations(n_sites)
    log_psi_exact = _torch_log_psi(params)(torch.tensor(configurations)).numpy()
    n_sweeps = n_discard + n_samples

    generator = torch.Generator().manual_seed(5)
    sites, uniforms = torch_sampler.draw_proposals(generator, n_sweeps, n_sites, n_chains)
    start = torch_sampler.random_configurations(generator, n_chains, n_sites)
    run = torch_sampler.sample(_torch_log_psi(params), start, sites, uniforms, n_discard,
                               n_samples)
    _assert_matches_born_probabilities(run.samples.numpy(), log_psi_exact, "torch")
    run = torch_sampler.sample_rbm(*(torch.tensor(params[k]) for k in
                                     ("weight", "hidden_bias", "visible_bias")),
                                   start, sites, uniforms, n_discard, n_samples)
    _assert_matches_born_probabilities(run.samples.numpy(), log_psi_exact, "torch_rbm")

    import jax

    site_key, start_key = jax.random.split(jax.random.key(6))
    sites, uniforms = flax_sampler.draw_proposals(site_key, n_sweeps, n_sites, n_chains)
    start = flax_sampler.random_configurations(start_key, n_chains, n_sites)
    variables = _flax_variables(params)
    run = flax_sampler.sample(_flax_log_psi, variables, start, sites, uniforms, n_discard,
                              n_samples)
    _assert_matches_born_probabilities(run.samples, log_psi_exact, "flax")
    run = flax_sampler.sample_rbm(variables["kernel"], variables["hidden_bias"],
                                  variables["visible_bias"], start, sites, uniforms,
                                  n_discard, n_samples)
    _assert_matches_born_probabilities(run.samples, log_psi_exact, "flax_rbm")


def test_born_rule_check_rejects_psi_instead_of_psi_squared():
    """Samples drawn from |psi| instead of |psi|^2 fail the same check."""
    n_sites, n_chains, n_discard, n_samples = 6, 64, 20, 250
    rng = np.random.default_rng(20)
    params = _rbm_params(rng, n_sites, 6, complex_params=False, scale=0.5)
    log_psi = _torch_log_psi(params)
    log_psi_exact = log_psi(torch.tensor(_all_configurations(n_sites))).numpy()

    generator = torch.Generator().manual_seed(5)
    sites, uniforms = torch_sampler.draw_proposals(generator, n_discard + n_samples, n_sites,
                                                   n_chains)
    start = torch_sampler.random_configurations(generator, n_chains, n_sites)
    # Halving log psi makes the sampler target |psi|^2 / 2 in the log: |psi|.
    run = torch_sampler.sample(lambda s: log_psi(s) / 2, start, sites, uniforms, n_discard,
                               n_samples)
    with pytest.raises(AssertionError, match="sigma from"):
        _assert_matches_born_probabilities(run.samples.numpy(), log_psi_exact, "torch")


def test_concentrated_state_never_accepts():
    """A state with all weight on one configuration: acceptance 0, chains frozen."""
    n_sites, n_chains = 6, 4
    params = {"weight": np.zeros((2, n_sites)), "hidden_bias": np.zeros(2),
              "visible_bias": np.full(n_sites, 20.0)}  # |psi'/psi|^2 = exp(-80) per flip
    start = np.ones((n_chains, n_sites))
    _, sites, uniforms = _shared_inputs(1, n_sites, n_chains, 30)
    runs = _run_all_four(params, start, sites, uniforms, 10, 20)
    for name, run in runs.items():
        assert float(run.acceptance) == 0.0, name
        assert (np.asarray(run.samples) == 1.0).all(), name
