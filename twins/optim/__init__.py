"""Building blocks of ``twins.optim_map``: configurations, torch-exact transforms, schedules.

Nothing here imports torch, so Flax training code can use it. The torch side of
a configuration is built by ``twins.optim_torch``.
"""
