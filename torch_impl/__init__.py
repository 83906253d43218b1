"""PyTorch twins: ``nn.Module`` examples, autograd and ``torch.optim``.

This package imports torch and numpy only, never JAX. Each module has a twin of
the same name in ``flax_impl``.
"""
