"""Gradient transformations for the torch update rules that optax has no block for.

Each one exists only because the nearest optax transformation computes a
different number. Its docstring names that transformation and the difference. Everything else in
``twins.optim_map`` is built from optax's own blocks.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# torch.nn.utils.clip_grad_norm_ divides max_norm by (total_norm + 1e-6).
CLIP_EPS = 1e-6


def conjugate_complex_updates() -> optax.GradientTransformation:
    """Conjugate complex leaves of the updates; real leaves pass through unchanged.

    For a real loss L of z = x + iy, ``jax.grad`` returns dL/dx - i dL/dy and
    torch's ``.grad`` is dL/dx + i dL/dy, the steepest-ascent direction. optax
    has no block for this, so gradients from ``jax.grad`` go through this first
    to follow torch's convention.
    """
    def update_fn(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, updates)
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_by_global_norm_torch(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """Scale all updates by min(1, max_norm / (total_norm + 1e-6)), as ``clip_grad_norm_``.

    ``optax.clip_by_global_norm`` scales by max_norm / total_norm and only when
    total_norm exceeds max_norm, so a gradient exactly at the threshold is left
    unchanged there while torch shrinks it by the 1e-6. The total norm is the
    p-norm of the per-leaf p-norms (|z| for a complex entry), computed in that
    order as torch does; ``norm_type`` may be ``math.inf`` (largest |entry|).
    """
    def leaf_norm(g):
        magnitude = jnp.abs(g)
        if norm_type == math.inf:
            return jnp.max(magnitude, initial=0.0)
        return jnp.sum(magnitude ** norm_type) ** (1.0 / norm_type)

    def update_fn(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, state
        norms = jnp.stack([leaf_norm(g) for g in leaves])
        total = leaf_norm(norms)
        coefficient = jnp.minimum(max_norm / (total + CLIP_EPS), 1.0)
        updates = jax.tree.map(lambda g: g * coefficient.astype(g.real.dtype), updates)
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


class DampenedTraceState(NamedTuple):
    """The momentum buffer and the number of steps taken."""

    count: jax.Array
    trace: optax.Updates


def dampened_trace(momentum: float, dampening: float, nesterov: bool = False) -> optax.GradientTransformation:
    """torch SGD's momentum buffer: b_1 = g_1, then b_t = m b_{t-1} + (1 - dampening) g_t.

    ``optax.trace`` computes b_t = m b_{t-1} + g_t from b_0 = 0, which is torch's
    rule only for dampening 0 (``twins.optim_map`` uses it then). torch's first
    buffer is the raw gradient, without the (1 - dampening) factor, so no
    rescaling of optax.trace reproduces it. With ``nesterov`` the update is
    g_t + m b_t, otherwise b_t.
    """
    def init_fn(params):
        return DampenedTraceState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        trace = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1.0 - dampening) * g),
            updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, b: g + momentum * b, updates, trace)
        else:
            updates = trace
        return updates, DampenedTraceState(optax.safe_increment(state.count), trace)

    return optax.GradientTransformation(init_fn, update_fn)


class TorchAmsgradState(NamedTuple):
    """Adam's moments and the running maximum of the raw second moment."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def scale_by_torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """torch's AMSGrad: m_hat / (sqrt(max_s v_s) / sqrt(1 - b2^t) + eps).

    ``optax.scale_by_amsgrad`` takes the maximum of the bias-corrected
    v_s / (1 - b2^s) (or, with bias_correction_nu=False, never corrects it);
    torch keeps the maximum of the raw v_s and divides it by the current step's
    sqrt(1 - b2^t). The two disagree from the second step on.
    """
    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchAmsgradState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        count = optax.safe_increment(state.count)
        mu_hat = optax.tree.bias_correction(mu, b1, count)

        def direction(m, v):
            correction = jnp.sqrt(1.0 - b2 ** count).astype(v.dtype)
            return m / (jnp.sqrt(v) / correction + eps)

        updates = jax.tree.map(direction, mu_hat, nu_max)
        return updates, TorchAmsgradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


class TorchAdagradState(NamedTuple):
    """The running sum of squared gradients."""

    sum_of_squares: optax.Updates


def scale_by_torch_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> optax.GradientTransformation:
    """torch's Adagrad direction: g / (sqrt(s) + eps) with s = s_0 + sum of g^2.

    ``optax.scale_by_rss`` returns g / sqrt(s + eps) (eps inside the root) and
    ``optax.adagrad`` starts s at 0.1; torch puts eps outside the root and
    starts s at ``initial_accumulator_value`` (default 0), so its first step
    moves every entry by exactly lr.
    """
    def init_fn(params):
        return TorchAdagradState(jax.tree.map(
            lambda p: jnp.full(p.shape, initial_accumulator_value, p.dtype), params))

    def update_fn(updates, state, params=None):
        del params
        sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sums)
        return updates, TorchAdagradState(sums)

    return optax.GradientTransformation(init_fn, update_fn)
