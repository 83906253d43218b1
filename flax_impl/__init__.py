"""JAX twins: ``flax.linen`` modules with explicit parameter pytrees, ``jax.grad``
and optax.

This package imports jax, flax, optax and numpy only, never torch. Each module
has a twin of the same name in ``torch_impl``.
"""
