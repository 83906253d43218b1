"""Metropolis samplers: identical chains from shared random numbers, exact |psi|^2.

The wavefunction is each side's ``ansatz.RBM`` with the same parameters (the
Flax variables are converted from the torch model by ``twins.convert``).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flax_impl.ansatz as flax_ansatz
import flax_impl.sampler as flax_sampler
import torch_impl.ansatz as torch_ansatz
import torch_impl.sampler as torch_sampler
from twins.convert import state_dict_to_variables
from twins.stats import statistics

N_SITES = 8
ALPHA = 1
N_CHAINS = 8
N_DISCARD = 10
N_SWEEPS_SHARED = 1000
# Sampling error per configuration: each probability is checked within this
# many standard errors of the mean (as NetKet's sampler tests do).
N_SIGMA = 5.0


def _rbm_pair(seed, n_sites, complex_params, scale=0.4, visible_bias=None, first_weight=None):
    """Return a torch RBM with N(0, scale^2) parameters and its Flax twin's variables.

    ``first_weight`` overrides W_00, to put the weights outside the bound of
    the samplers' flip-ratio path.
    """
    dtype = torch.complex128 if complex_params else torch.float64
    model = torch_ansatz.RBM(n_sites, alpha=ALPHA, dtype=dtype)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            values = rng.normal(scale=scale, size=parameter.shape)
            if complex_params:
                values = values + 1j * rng.normal(scale=scale, size=parameter.shape)
            parameter.copy_(torch.as_tensor(values))
        if visible_bias is not None:
            model.visible_bias.fill_(visible_bias)
        if first_weight is not None:
            model.Dense.weight[0, 0] = first_weight
    flax_model = flax_ansatz.RBM(alpha=ALPHA, param_dtype=jnp.complex128 if complex_params
                                 else jnp.float64)
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.ones((1, n_sites)))
    variables = jax.tree_util.tree_map(
        jnp.asarray, state_dict_to_variables(model.state_dict(), template))
    return model, flax_model, variables


def _shared_inputs(seed, n_sites, n_chains, n_sweeps):
    rng = np.random.default_rng(seed)
    sites = rng.integers(0, n_sites, size=(n_sweeps, n_sites, n_chains))
    uniforms = rng.random(size=(n_sweeps, n_sites, n_chains))
    start = np.where(rng.random((n_chains, n_sites)) < 0.5, -1.0, 1.0)
    return start, sites, uniforms


def _run_all_four(seed, complex_params, start, sites, uniforms, n_discard, n_samples,
                  **rbm_options):
    model, flax_model, variables = _rbm_pair(seed, start.shape[1], complex_params,
                                             **rbm_options)
    torch_start = torch.tensor(start)
    return {
        "torch": torch_sampler.sample(model.log_psi, torch_start, sites, uniforms,
                                      n_discard, n_samples),
        "torch_rbm": torch_sampler.sample_rbm(*torch_sampler.rbm_arrays(model), torch_start,
                                              sites, uniforms, n_discard, n_samples),
        "flax": flax_sampler.sample(flax_model.apply, variables, jnp.asarray(start), sites,
                                    uniforms, n_discard, n_samples),
        "flax_rbm": flax_sampler.sample_rbm(*flax_sampler.rbm_arrays(variables),
                                            jnp.asarray(start), sites, uniforms, n_discard,
                                            n_samples),
    }


# (complex parameters, W_00 override, whether the RBM samplers take the flip-ratio path)
SAMPLER_PATHS = {
    "real-flip-ratio": (False, None, True),
    "real-log-cosh": (False, 1.5, False),
    "complex-log-cosh": (True, None, False),
}


@pytest.mark.parametrize("case", list(SAMPLER_PATHS))
def test_shared_randomness_identical_chains(case):
    """Torch, Flax and both RBM fast paths make every decision alike for 1000 sweeps."""
    complex_params, first_weight, flip_ratio = SAMPLER_PATHS[case]
    model, _, variables = _rbm_pair(10, N_SITES, complex_params, first_weight=first_weight)
    assert torch_sampler.use_flip_ratio(model.Dense.weight, model.Dense.bias) == flip_ratio
    flax_dense = variables["params"]["Dense"]
    assert bool(flax_sampler.use_flip_ratio(flax_dense["kernel"], flax_dense["bias"])) == flip_ratio

    start, sites, uniforms = _shared_inputs(11, N_SITES, N_CHAINS, N_DISCARD + N_SWEEPS_SHARED)
    runs = _run_all_four(10, complex_params, start, sites, uniforms, N_DISCARD, N_SWEEPS_SHARED,
                         first_weight=first_weight)

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
    model, _, _ = _rbm_pair(10, N_SITES, complex_params=False)
    start, sites, uniforms = _shared_inputs(11, N_SITES, N_CHAINS, 60)
    log_psi = model.log_psi
    first = torch_sampler.sample(log_psi, torch.tensor(start), sites, uniforms, 10, 50)
    second = torch_sampler.sample(log_psi, torch.tensor(start), sites, 1 - uniforms, 10, 50)
    assert not torch.equal(first.samples, second.samples)


def test_burn_in_is_not_recorded():
    model, _, _ = _rbm_pair(3, 4, complex_params=False)
    start, sites, uniforms = _shared_inputs(4, 4, 2, 7)
    log_psi = model.log_psi
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
    model, flax_model, variables = _rbm_pair(20, n_sites, complex_params, scale=0.5)
    with torch.no_grad():
        log_psi_exact = model.log_psi(torch.tensor(_all_configurations(n_sites))).numpy()
    n_sweeps = n_discard + n_samples

    generator = torch.Generator().manual_seed(5)
    sites, uniforms = torch_sampler.draw_proposals(generator, n_sweeps, n_sites, n_chains)
    start = torch_sampler.random_configurations(generator, n_chains, n_sites)
    run = torch_sampler.sample(model.log_psi, start, sites, uniforms, n_discard, n_samples)
    _assert_matches_born_probabilities(run.samples.numpy(), log_psi_exact, "torch")
    run = torch_sampler.sample_rbm(*torch_sampler.rbm_arrays(model), start, sites, uniforms,
                                   n_discard, n_samples)
    _assert_matches_born_probabilities(run.samples.numpy(), log_psi_exact, "torch_rbm")

    site_key, start_key = jax.random.split(jax.random.key(6))
    sites, uniforms = flax_sampler.draw_proposals(site_key, n_sweeps, n_sites, n_chains)
    start = flax_sampler.random_configurations(start_key, n_chains, n_sites)
    run = flax_sampler.sample(flax_model.apply, variables, start, sites, uniforms, n_discard,
                              n_samples)
    _assert_matches_born_probabilities(run.samples, log_psi_exact, "flax")
    run = flax_sampler.sample_rbm(*flax_sampler.rbm_arrays(variables), start, sites, uniforms,
                                  n_discard, n_samples)
    _assert_matches_born_probabilities(run.samples, log_psi_exact, "flax_rbm")


def test_born_check_rejects_abs_psi():
    """Samples drawn from |psi| instead of |psi|^2 fail the same check."""
    n_sites, n_chains, n_discard, n_samples = 6, 64, 20, 250
    model, _, _ = _rbm_pair(20, n_sites, complex_params=False, scale=0.5)
    log_psi = model.log_psi
    with torch.no_grad():
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
    start = np.ones((n_chains, n_sites))
    _, sites, uniforms = _shared_inputs(1, n_sites, n_chains, 30)
    # |psi'/psi|^2 <= exp(-80 + 4 * 0.01 * n_hidden) per flip: never accepted
    runs = _run_all_four(1, False, start, sites, uniforms, 10, 20, scale=0.01,
                         visible_bias=20.0)
    for name, run in runs.items():
        assert float(run.acceptance) == 0.0, name
        assert (np.asarray(run.samples) == 1.0).all(), name


@pytest.mark.parametrize(("dtype", "expected"), [("float64", True), ("float32", False)])
def test_flip_ratio_product_range_guard(dtype, expected):
    """|W_ij| = 0.9 over 64 hidden units bounds a flip's log ratio by 115.2.

    That is below -log(tiny) in float64 (708.4) and above it in float32
    (87.3), where the product could overflow, so float32 takes the
    log-cosh path. With 2 sites |theta_j| <= 1.8 stays within its bound.
    """
    kernel = np.full((2, 64), 0.9, dtype=dtype)
    bias = np.zeros(64, dtype=dtype)
    assert torch_sampler.use_flip_ratio(torch.tensor(kernel.T), torch.tensor(bias)) == expected
    assert bool(flax_sampler.use_flip_ratio(jnp.asarray(kernel), jnp.asarray(bias))) == expected


def test_saturated_hidden_unit_uses_log_cosh():
    """A hidden unit with |theta| up to 38 gets the same chains as the plain sampler.

    With W_0i = 0.95 on 40 sites, theta_0 starts at 38, where float64
    tanh(theta) is exactly 1, and a visible bias of -1 walks the chains down
    through theta_0 = 0 within a sweep. A tanh cache cannot follow, because
    from 1 its update stays 1, so the flip-ratio path rejects these weights.
    Without the theta bound these inputs gave different chains (acceptance
    0.054 against 0.046).
    """
    n_sites, n_chains, n_sweeps = 40, 8, 30
    model = torch_ansatz.RBM(n_sites, alpha=1, dtype=torch.float64)
    with torch.no_grad():
        model.Dense.weight.fill_(0.001)
        model.Dense.weight[0] = 0.95
        model.Dense.bias.zero_()
        model.visible_bias.fill_(-1.0)
    flax_model = flax_ansatz.RBM(alpha=ALPHA, param_dtype=jnp.float64)
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.ones((1, n_sites)))
    variables = jax.tree_util.tree_map(
        jnp.asarray, state_dict_to_variables(model.state_dict(), template))
    rng = np.random.default_rng(0)
    sites = rng.integers(0, n_sites, size=(n_sweeps, n_sites, n_chains))
    uniforms = rng.random(size=(n_sweeps, n_sites, n_chains))
    start = np.ones((n_chains, n_sites))

    assert not torch_sampler.use_flip_ratio(model.Dense.weight, model.Dense.bias)
    flax_dense = variables["params"]["Dense"]
    assert not bool(flax_sampler.use_flip_ratio(flax_dense["kernel"], flax_dense["bias"]))
    reference = torch_sampler.sample(model.log_psi, torch.tensor(start), sites, uniforms, 0,
                                     n_sweeps)
    torch_rbm = torch_sampler.sample_rbm(*torch_sampler.rbm_arrays(model), torch.tensor(start),
                                         sites, uniforms, 0, n_sweeps)
    flax_rbm = flax_sampler.sample_rbm(*flax_sampler.rbm_arrays(variables), jnp.asarray(start),
                                       sites, uniforms, 0, n_sweeps)
    assert torch.equal(torch_rbm.samples, reference.samples)
    np.testing.assert_array_equal(np.asarray(flax_rbm.samples), reference.samples.numpy())


@pytest.mark.parametrize("first_weight", [None, 1.5], ids=["flip-ratio", "log-cosh"])
def test_compiled_torch_sweeps_match_eager(first_weight):
    """``sample_rbm(compile=True)`` makes the eager sampler's chains from the same proposals."""
    model, _, _ = _rbm_pair(12, 6, complex_params=False, first_weight=first_weight)
    start, sites, uniforms = _shared_inputs(13, 6, 4, 2 + 5)
    rbm = torch_sampler.rbm_arrays(model)
    eager = torch_sampler.sample_rbm(*rbm, torch.tensor(start), sites, uniforms, 2, 5)
    compiled = torch_sampler.sample_rbm(*rbm, torch.tensor(start), sites, uniforms, 2, 5,
                                        compile=True)

    assert 0.0 < eager.acceptance < 1.0
    assert torch.equal(compiled.samples, eager.samples)
    assert compiled.acceptance == eager.acceptance
    torch.testing.assert_close(compiled.log_psi, eager.log_psi, rtol=0, atol=1e-12)
