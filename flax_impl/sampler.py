"""Metropolis sampling of |psi(s)|^2 with local single-spin flips, in JAX.

Many chains run in parallel, one row of ``s`` (n_chains, n_sites) each. A sweep
is ``n_sites`` proposals: at proposal ``k`` every chain ``c`` flips the site
``sites[t, k, c]`` and accepts the flip when

    uniforms[t, k, c] < |psi(s') / psi(s)|^2 = exp(2 Re[log psi(s') - log psi(s)]),

so a proposal that raises |psi|^2 is always accepted (a uniform lies in
[0, 1)). One sample per chain is recorded after each sweep; the first
``n_discard`` sweeps (burn-in) are not recorded.

The random numbers are inputs: ``sites`` (int, (n_sweeps, n_sites, n_chains))
and ``uniforms`` (float64, same shape), where n_sweeps = n_discard + n_samples.
When both frameworks get the same arrays (drawn from one numpy Generator) they
make the same accept/reject decisions, up to rounding in log psi.
``draw_proposals`` draws them from a ``jax.random`` key instead (own-RNG mode).

Two samplers share this contract. ``sample`` evaluates the model on every
proposal, for any ansatz, and is the parity reference. ``sample_rbm`` updates
the RBM's hidden pre-activations on each flip instead: the same chains at
O(n_hidden) per proposal. For a real RBM with moderate weights it goes further
and takes the amplitude ratio of a flip from cached tanh(theta) and tables of
cosh, sinh and tanh of 2 W, with no transcendental function per hidden unit
(``flip_factors``).
Both are jitted, with ``lax.scan`` over sweeps and over the proposals of a
sweep, where the torch twin runs two Python loops.
"""

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from flax_impl.ansatz import log_cosh


@struct.dataclass
class MetropolisSamples:
    """Chains recorded by a sampler, chain-first as ``twins.stats`` expects.

    ``samples``: (n_chains, n_samples, n_sites) spins +-1 in the model's dtype.
    ``log_psi``: (n_chains, n_samples), log psi of each recorded sample.
    ``acceptance``: accepted / proposed over the recorded sweeps (burn-in
    excluded), a Python float. It is divided outside ``jit``, because XLA
    turns a division by a constant into a multiplication by its reciprocal,
    which can differ from torch's quotient in the last bit.
    ``last``, ``last_log_psi``: the chains' final state, to continue sampling.
    """

    samples: jax.Array
    log_psi: jax.Array
    acceptance: float
    last: jax.Array
    last_log_psi: jax.Array


def draw_proposals(key: jax.Array, n_sweeps: int, n_sites: int,
                   n_chains: int) -> tuple[jax.Array, jax.Array]:
    """Draw ``(sites, uniforms)`` of shape (n_sweeps, n_sites, n_chains) from ``key``.

    ``sites`` are integers in [0, n_sites); ``uniforms`` are float64 in [0, 1).
    """
    shape = (n_sweeps, n_sites, n_chains)
    site_key, uniform_key = jax.random.split(key)
    sites = jax.random.randint(site_key, shape, 0, n_sites)
    uniforms = jax.random.uniform(uniform_key, shape, dtype=jnp.float64)
    return sites, uniforms


def random_configurations(key: jax.Array, n_chains: int, n_sites: int,
                          dtype=jnp.float64) -> jax.Array:
    """Return (n_chains, n_sites) uniformly random spins +-1, a chain start."""
    bits = jax.random.bernoulli(key, 0.5, (n_chains, n_sites))
    return jnp.where(bits, -1, 1).astype(dtype)


def _check_proposals(s, sites, uniforms, n_discard: int, n_samples: int):
    n_chains, n_sites = s.shape
    expected = (n_discard + n_samples, n_sites, n_chains)
    if tuple(sites.shape) != expected or tuple(uniforms.shape) != expected:
        raise ValueError(
            f"sites {tuple(sites.shape)} and uniforms {tuple(uniforms.shape)} must both have "
            f"shape (n_discard + n_samples, n_sites, n_chains) = {expected}")
    if n_samples < 1 or n_discard < 0:
        raise ValueError(f"need n_samples >= 1 and n_discard >= 0, got n_samples={n_samples}, "
                         f"n_discard={n_discard}")


def _accept(uniforms: jax.Array, log_ratio: jax.Array) -> jax.Array:
    """Return the Metropolis decision u < exp(2 Re log_ratio), a bool (n_chains,)."""
    # The comparison runs in float64 whatever the model dtype, as on the torch side.
    return uniforms < jnp.exp(2 * jnp.real(log_ratio).astype(jnp.float64))


def _run_sweeps(sweep, carry, sites, uniforms, n_discard: int):
    """Scan ``sweep`` over the burn-in, then over the recorded sweeps.

    ``sweep(carry, (sites_t, uniforms_t)) -> (carry, (s, log_psi, n_accepted))``.
    Returns the final carry and the stacked (s, log_psi, n_accepted) of the
    recorded sweeps; the burn-in scan keeps only its carry.
    """
    def burn_in(carry, xs):
        carry, _ = sweep(carry, xs)
        return carry, None

    carry, _ = lax.scan(burn_in, carry, (sites[:n_discard], uniforms[:n_discard]))
    return lax.scan(sweep, carry, (sites[n_discard:], uniforms[n_discard:]))


def _pack(carry_s, carry_log_psi, history) -> MetropolisSamples:
    """Return the samples with the accepted count in ``acceptance``, divided by ``_finish``."""
    states, log_psis, n_accepted = history
    return MetropolisSamples(
        samples=jnp.swapaxes(states, 0, 1), log_psi=jnp.swapaxes(log_psis, 0, 1),
        acceptance=n_accepted.sum(), last=carry_s, last_log_psi=carry_log_psi)


def _finish(result: MetropolisSamples) -> MetropolisSamples:
    n_chains, n_samples, n_sites = result.samples.shape
    return result.replace(acceptance=int(result.acceptance) / (n_samples * n_sites * n_chains))


def sample(log_psi_fn: Callable[[dict, jax.Array], jax.Array], variables: dict, s: jax.Array,
           sites, uniforms, n_discard: int, n_samples: int) -> MetropolisSamples:
    """Run ``n_discard + n_samples`` Metropolis sweeps, evaluating the model on each proposal.

    ``log_psi_fn(variables, s)`` maps (B, n_sites) spins to (B,) log psi (real
    or complex), a pure function such as ``model.apply``. It is a static
    argument of the jitted sampler, so pass the same object on every call, or
    each call compiles again. ``s`` (n_chains, n_sites) is the chains' start.
    Each proposal is one batched call on all chains.
    """
    _check_proposals(s, sites, uniforms, n_discard, n_samples)
    return _finish(_sample(log_psi_fn, variables, s, jnp.asarray(sites),
                           jnp.asarray(uniforms, dtype=jnp.float64), n_discard))


@partial(jax.jit, static_argnums=(0, 5))
def _sample(log_psi_fn, variables, s, sites, uniforms, n_discard):
    n_chains = s.shape[0]
    chains = jnp.arange(n_chains)

    def propose(carry, xs):
        s, log_psi = carry
        flip, u = xs
        proposal = s.at[chains, flip].multiply(-1)
        proposal_log_psi = log_psi_fn(variables, proposal)

        accept = _accept(u, proposal_log_psi - log_psi)
        s = jnp.where(accept[:, None], proposal, s)
        log_psi = jnp.where(accept, proposal_log_psi, log_psi)
        return (s, log_psi), accept.sum()

    def sweep(carry, xs):
        carry, n_accepted = lax.scan(propose, carry, xs)
        return carry, (carry[0], carry[1], n_accepted.sum())

    carry = (s, log_psi_fn(variables, s))
    (s, log_psi), history = _run_sweeps(sweep, carry, sites, uniforms, n_discard)
    return _pack(s, log_psi, history)


def rbm_arrays(variables: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Return ``(kernel, hidden_bias, visible_bias)`` of ``ansatz.RBM`` variables for ``sample_rbm``.

    ``kernel`` is ``params/Dense/kernel`` (n_sites, n_hidden); a bias the model
    does not use is returned as zeros.
    """
    params = variables["params"]
    kernel = params["Dense"]["kernel"]
    hidden_bias = params["Dense"].get("bias", jnp.zeros(kernel.shape[1], kernel.dtype))
    visible_bias = params.get("visible_bias", jnp.zeros(kernel.shape[0], kernel.dtype))
    return kernel, hidden_bias, visible_bias


def sample_rbm(kernel: jax.Array, hidden_bias: jax.Array, visible_bias: jax.Array,
               s: jax.Array, sites, uniforms, n_discard: int,
               n_samples: int) -> MetropolisSamples:
    """Run the same sweeps as ``sample`` for an RBM, from cached hidden pre-activations.

    The RBM is log psi(s) = sum_i a_i s_i + sum_j log cosh(theta_j), with
    theta = s W + b. ``kernel`` W is (n_sites, n_hidden), Flax's in x out
    layout (the transpose of torch's ``weight``); ``hidden_bias`` b is
    (n_hidden,), ``visible_bias`` a is (n_sites,). Real or complex.

    Two paths give the same chains: the log-cosh path updates theta on each
    flip and sums log cosh differences; the flip-ratio path (real W within
    ``use_flip_ratio``'s bounds) keeps tanh(theta) and multiplies the ratios of
    ``flip_factors``. Same inputs, same chains as ``sample(model.apply, ...)``
    up to rounding. Use ``rbm_sampler_core`` inside a jitted function of your
    own.
    """
    _check_proposals(s, sites, uniforms, n_discard, n_samples)
    return _finish(rbm_sampler_core(kernel, hidden_bias, visible_bias, s, jnp.asarray(sites),
                                    jnp.asarray(uniforms, dtype=jnp.float64), n_discard))


def flip_factors(kernel: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Return cosh(2 W), sinh(2 W) and tanh(2 W), each (n_sites, n_hidden).

    Flipping s_i -> -s_i moves theta_j to theta_j - d_j with d_j = 2 s_i W_ij,
    and by the addition theorems

        cosh(theta_j - d_j) / cosh(theta_j) = cosh(d_j) - tanh(theta_j) sinh(d_j),
        tanh(theta_j - d_j) = (tanh(theta_j) - tanh(d_j)) / (1 - tanh(theta_j) tanh(d_j)).

    With these tables (cosh is even, sinh and tanh are odd in s_i) a proposal
    needs no transcendental function per hidden unit, only one log per chain.
    The parameters do not change while sampling, so they are computed once.
    """
    two_w = 2 * kernel
    return jnp.cosh(two_w), jnp.sinh(two_w), jnp.tanh(two_w)


# The flip-ratio path runs when every |W_ij| is at most MAX_FLIP_RATIO_WEIGHT
# and every |theta_j| is bounded by MAX_FLIP_RATIO_THETA. cosh d - tanh(theta)
# sinh d cancels when tanh(theta) is near sign(d), with relative error up to
# eps * exp(2 |d|): at |d| = 2 |W_ij| <= 2 that is below 55 eps. tanh(theta)
# keeps theta only to about eps cosh(theta)^2, and its update carries that
# error along (at |theta| >= 19 float64 tanh is exactly 1 and the update stays
# there, whatever theta becomes): at |theta| <= 4, cosh^2 < 750. Other RBMs
# take the log-cosh path, exact to rounding for any weights.
MAX_FLIP_RATIO_WEIGHT = 1.0
MAX_FLIP_RATIO_THETA = 4.0


def use_flip_ratio(kernel: jax.Array, hidden_bias: jax.Array) -> jax.Array:
    """Return whether ``sample_rbm`` may use the flip-ratio path for ``kernel`` and ``hidden_bias``.

    It needs a real W with every |W_ij| <= ``MAX_FLIP_RATIO_WEIGHT``, every
    |theta_j| <= sum_i |W_ij| + |b_j| <= ``MAX_FLIP_RATIO_THETA`` for all spin
    configurations, and a product of one flip's hidden ratios that stays in
    the normal range: each ratio lies in [exp(-|d_j|), exp(|d_j|)], so every
    partial product of a flip of site i lies within exp(+-sum_j 2 |W_ij|),
    which must stay below -log(tiny). A complex W has no such bound (cosh can
    vanish).
    """
    if jnp.iscomplexobj(kernel) or jnp.iscomplexobj(hidden_bias):
        return jnp.asarray(False)
    limit = -math.log(jnp.finfo(kernel.dtype).tiny)
    magnitude = jnp.abs(kernel)
    largest_theta = jnp.max(jnp.sum(magnitude, axis=0) + jnp.abs(hidden_bias))
    return ((jnp.max(magnitude) <= MAX_FLIP_RATIO_WEIGHT)
            & (largest_theta <= MAX_FLIP_RATIO_THETA)
            & (jnp.max(jnp.sum(2 * magnitude, axis=1)) < limit))


def rbm_log_psi(s, kernel, hidden_bias, visible_bias):
    """Return the RBM's hidden pre-activations theta (n_chains, n_hidden) and log psi (n_chains,)."""
    theta = s.astype(kernel.dtype) @ kernel + hidden_bias
    return theta, s.astype(visible_bias.dtype) @ visible_bias + log_cosh(theta).sum(axis=1)


@partial(jax.jit, static_argnums=(6,))
def rbm_sampler_core(kernel, hidden_bias, visible_bias, s, sites, uniforms, n_discard):
    """Run ``sample_rbm``'s sweeps as a jitted function that traces inside another ``jax.jit``.

    Takes the checked arrays and returns ``MetropolisSamples`` whose
    ``acceptance`` is still the accepted count (an integer array).
    """
    n_chains, n_sites = s.shape
    chains = jnp.arange(n_chains)
    site_ids = jnp.arange(n_sites)
    rbm = (kernel, hidden_bias, visible_bias)

    def flip_accepted(s, flip, accept):
        # Flip the proposed site of each accepting chain by a select over the
        # row. Torch's twin writes one entry per chain, but a scatter is a
        # separate XLA kernel on every proposal.
        return jnp.where(accept[:, None] & (site_ids == flip[:, None]), -s, s)

    def flip_ratio_proposal(cosh_2w, sinh_2w, tanh_2w):
        def propose(carry, xs):
            s, tanh_theta = carry
            flip, u = xs
            spin = s[chains, flip]  # (n_chains,), the value before the flip
            sinh_d = spin[:, None] * sinh_2w[flip]
            tanh_d = spin[:, None] * tanh_2w[flip]
            # cosh(theta_j - d_j) / cosh(theta_j) per hidden unit, (n_chains, H).
            ratio = cosh_2w[flip] - tanh_theta * sinh_d
            log_ratio = -2 * spin * visible_bias[flip] + jnp.log(jnp.prod(ratio, axis=1))

            accept = _accept(u, log_ratio)
            s = flip_accepted(s, flip, accept)
            tanh_theta = jnp.where(accept[:, None],
                                   (tanh_theta - tanh_d) / (1 - tanh_theta * tanh_d), tanh_theta)
            return (s, tanh_theta), accept.sum()
        return propose

    def log_cosh_proposal(carry, xs):
        s, theta = carry
        flip, u = xs
        spin = s[chains, flip]
        # Flipping s_i -> -s_i changes theta_j by -2 s_i W_ij and the visible
        # term by -2 a_i s_i: O(n_hidden) per chain, where a full forward pass
        # costs O(n_sites * n_hidden).
        proposal_theta = theta - 2 * spin[:, None] * kernel[flip]
        log_ratio = (-2 * spin * visible_bias[flip]
                     + (log_cosh(proposal_theta) - log_cosh(theta)).sum(axis=1))

        accept = _accept(u, log_ratio)
        s = flip_accepted(s, flip, accept)
        theta = jnp.where(accept[:, None], proposal_theta, theta)
        return (s, theta), accept.sum()

    def run(propose, cache):
        def sweep(carry, xs):
            s, theta, _ = carry
            (s, _), n_accepted = lax.scan(propose, (s, cache(theta)), xs)
            # theta and log psi are recomputed from s once per sweep (one
            # matmul): the recorded log psi is the model's, on its branch of
            # the complex log, and rounding from the per-flip updates cannot
            # accumulate over sweeps.
            theta, log_psi = rbm_log_psi(s, *rbm)
            return (s, theta, log_psi), (s, log_psi, n_accepted.sum())

        start = (s, *rbm_log_psi(s, *rbm))
        (last, _, log_psi), history = _run_sweeps(sweep, start, sites, uniforms, n_discard)
        return _pack(last, log_psi, history)

    def exact():
        return run(log_cosh_proposal, lambda theta: theta)

    if jnp.iscomplexobj(kernel):
        return exact()
    return lax.cond(use_flip_ratio(kernel, hidden_bias),
                    lambda: run(flip_ratio_proposal(*flip_factors(kernel)), jnp.tanh), exact)
