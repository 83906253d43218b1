"""A whole VMC + SR iteration as one ``jax.jit``, built from the Flax twin's functions.

The Flax twin's ``vmc.step`` compiles the statistics and the solve, but reads
the condition number of S + shift on the host (from the eigenvalues of the
P x P matrix), solves with a general LU, and runs the optax update eagerly. This
module composes the same functions (``sampler.sample_rbm``,
``local_energy.local_energy``, ``vmc.log_derivatives``,
``vmc.real_parameter_jacobian``) into one compiled, donated iteration with
two changes, both for real parameters and a real log psi only:

* O is kept real (the twin keeps it complex and forms S from the real and the
  all-zero imaginary part, twice the products);
* the SR system is solved by Cholesky, in parameter space when P <= B and in
  sample space when P > B: with X = (O - <O>) / sqrt(B) and F = X^T v,
  (X^T X + eps I)^-1 X^T v = X^T (X X^T + eps I)^-1 v (the push-through
  identity), a B x B system instead of a P x P one. NetKet's ``VMC_SR`` makes
  the same choice automatically.

It skips the twin's ill-conditioning check: with a positive shift,
S + shift is positive definite, and the Cholesky factor of a matrix that is
not would come back as NaN. ``sr_direction`` is checked against the twin's
``sr_matrix`` + ``sr_solve`` in the benchmark smoke test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.scipy.linalg import cho_factor, cho_solve

import flax_impl.local_energy
import flax_impl.sampler
import flax_impl.vmc


def sr_direction(o_matrix: jax.Array, e_loc: jax.Array, diag_shift: float) -> jax.Array:
    """Return (S + diag_shift I)^-1 F for a real O (B, P) and real E_loc (B,), uniform weights.

    Same value as ``flax_impl.vmc.sr_solve(sr_matrix(O, w), F, diag_shift)``
    with w = 1 / B, up to rounding. Solves the P x P system when P <= B and the
    B x B one otherwise.
    """
    n_samples, n_params = o_matrix.shape
    scale = jnp.sqrt(jnp.asarray(n_samples, o_matrix.dtype))
    x = (o_matrix - o_matrix.mean(axis=0)) / scale
    v = 2.0 * (e_loc - e_loc.mean()) / scale
    if n_params <= n_samples:
        shifted = x.T @ x + diag_shift * jnp.eye(n_params, dtype=x.dtype)
        return cho_solve(cho_factor(shifted), x.T @ v)
    kernel = x @ x.T + diag_shift * jnp.eye(n_samples, dtype=x.dtype)
    return x.T @ cho_solve(cho_factor(kernel), v)


def real_jacobian(model, params, s: jax.Array) -> jax.Array:
    """Return O (B, P) as a real matrix, for real parameters and a real log psi."""
    if any(jnp.iscomplexobj(leaf) for leaf in jax.tree_util.tree_leaves(params)):
        raise ValueError("the fused iteration keeps O real and needs real parameters; "
                         "use flax_impl.vmc.step for complex ones")
    output = jax.eval_shape(lambda: model.apply({"params": params}, s[:1]))
    if jnp.issubdtype(output.dtype, jnp.complexfloating):
        raise ValueError("the fused iteration keeps O real and needs a real log psi; "
                         "use flax_impl.vmc.step for a complex one")
    derivatives = flax_impl.vmc.log_derivatives(model, params, s)
    return jnp.real(flax_impl.vmc.real_parameter_jacobian(derivatives, params))


def make_iteration(model, hamiltonian, optimizer: optax.GradientTransformation, *, n_chains: int,
                   samples_per_chain: int, n_discard: int, diag_shift: float):
    """Return a jitted ``iteration(params, opt_state, key, s) -> (params, opt_state, key, s, energy)``.

    One call samples ``n_chains * samples_per_chain`` configurations with the
    RBM fast path (chains continue from ``s``), estimates the energy and the SR
    direction, and applies one ``optimizer`` update. ``params`` and
    ``opt_state`` are donated: the caller must use the returned ones.
    """
    def iteration(params, opt_state, key, s):
        n_sites = s.shape[1]
        key, proposal_key = jax.random.split(key)
        sites, uniforms = flax_impl.sampler.draw_proposals(
            proposal_key, n_discard + samples_per_chain, n_sites, n_chains)
        rbm = flax_impl.sampler.rbm_arrays({"params": params})
        # sample_rbm reads the acceptance rate on the host; its core traces.
        chains = flax_impl.sampler.rbm_sampler_core(*rbm, s, sites, uniforms, n_discard)
        samples = chains.samples.reshape(-1, n_sites)

        log_psi = functools.partial(model.apply, {"params": params})
        e_loc = flax_impl.local_energy.local_energy(log_psi, hamiltonian, samples)
        o_matrix = real_jacobian(model, params, samples)
        direction = sr_direction(o_matrix, e_loc, diag_shift)
        direction = flax_impl.vmc.unflatten_direction(direction, params)

        updates, opt_state = optimizer.update(direction, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, key, chains.last, e_loc.mean()

    return jax.jit(iteration, donate_argnums=(0, 1))
