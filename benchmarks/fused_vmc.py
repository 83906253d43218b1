"""A whole VMC + SR iteration as one ``jax.jit``, built from the Flax twin's functions.

The Flax twin's ``vmc.step`` compiles the sampler, the statistics and the SR
system separately and reads the trace of the system matrix (and the
Cholesky factor's finiteness) on the host, to warn and fall back to least
squares on an ill-conditioned S. This module composes the same functions
(``sampler.rbm_sampler_core``, ``local_energy.model_local_energy``,
``vmc.real_jacobian`` and the SR system of ``vmc.sr_direction``) into one
compiled, donated iteration for real parameters and a real log psi, and solves
the SR system by Cholesky with no check: with a positive shift it is positive
definite, and a factorisation that fails anyway comes back as NaN.
``sr_direction`` is checked against the twin's in the benchmark smoke test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.scipy.linalg import cho_factor, cho_solve

import flax_impl.local_energy
import flax_impl.sampler
import flax_impl.vmc


def sr_direction(o_matrix: jax.Array, e_loc: jax.Array, diag_shift: float) -> jax.Array:
    """Return (S + diag_shift I)^-1 F for a real O (B, P) and real E_loc (B,), uniform weights.

    The twin's ``vmc.sr_direction`` without its host-side conditioning check:
    Cholesky of the twin's system (Y^T Y + eps I when P <= B, Y Y^T + eps I
    mapped back by Y^T otherwise), formed as its lower block triangle.
    """
    n_samples, n_params = o_matrix.shape
    weights = jnp.full((n_samples,), 1.0 / n_samples, dtype=o_matrix.dtype)
    sample_space = n_params > n_samples
    matrix, rhs, y = flax_impl.vmc._sr_system(o_matrix, e_loc, weights, sample_space)
    shifted = matrix + diag_shift * jnp.eye(len(matrix), dtype=matrix.dtype)
    solution = cho_solve(cho_factor(shifted, lower=True), rhs)
    return y.T @ solution if sample_space else solution


def real_jacobian(model, params, s: jax.Array) -> jax.Array:
    """Return O (B, P) as a real matrix, for real parameters and a real log psi."""
    if any(jnp.iscomplexobj(leaf) for leaf in jax.tree_util.tree_leaves(params)):
        raise ValueError("the fused iteration keeps O real and needs real parameters; "
                         "use flax_impl.vmc.step for complex ones")
    output = jax.eval_shape(lambda: model.apply({"params": params}, s[:1]))
    if jnp.issubdtype(output.dtype, jnp.complexfloating):
        raise ValueError("the fused iteration keeps O real and needs a real log psi; "
                         "use flax_impl.vmc.step for a complex one")
    return flax_impl.vmc.real_jacobian(model, params, s)


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
        chains = flax_impl.sampler.rbm_sampler_core(*rbm, s, sites, uniforms, n_discard)
        samples = chains.samples.reshape(-1, n_sites)

        e_loc = flax_impl.local_energy.model_local_energy(model, params, hamiltonian, samples)
        o_matrix = real_jacobian(model, params, samples)
        direction = sr_direction(o_matrix, e_loc, diag_shift)
        direction = flax_impl.vmc.unflatten_direction(direction, params)

        updates, opt_state = optimizer.update(direction, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, key, chains.last, e_loc.mean()

    return jax.jit(iteration, donate_argnums=(0, 1))
