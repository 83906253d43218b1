"""The bridge between the twins: example registry, weight conversion, parity, CLI.

Importing this package turns on ``jax_enable_x64``: parity checks run in float64
as well as float32, and without x64 ``jnp.asarray`` of a float64 array silently
returns float32. It must happen before any JAX array is created.
"""

import jax

jax.config.update("jax_enable_x64", True)
