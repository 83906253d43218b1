"""Metropolis sampling of |psi(s)|^2 with local single-spin flips, in PyTorch.

Many chains run in parallel, one row of ``s`` (n_chains, n_sites) each. A sweep
is ``n_sites`` proposals: at proposal ``k`` every chain ``c`` flips the site
``sites[t, k, c]`` and accepts the flip when

    uniforms[t, k, c] < |psi(s') / psi(s)|^2 = exp(2 Re[log psi(s') - log psi(s)]),

so a proposal that raises |psi|^2 is always accepted (a uniform lies in
[0, 1)). One sample per chain is recorded after each sweep; the first
``n_discard`` sweeps (burn-in) are not recorded.

The random numbers are inputs: ``sites`` (int64, (n_sweeps, n_sites, n_chains))
and ``uniforms`` (float64, same shape), where n_sweeps = n_discard + n_samples.
When both frameworks get the same arrays (drawn from one numpy Generator) they
make the same accept/reject decisions, up to rounding in log psi.
``draw_proposals`` draws them with a ``torch.Generator`` instead (own-RNG mode).

Two samplers share this contract. ``sample`` evaluates the model on every
proposal, for any ansatz, and is the parity reference. ``sample_rbm`` updates
the RBM's hidden pre-activations on each flip instead: the same chains at
O(n_hidden) per proposal. For a real RBM with moderate weights it goes further
and takes the amplitude ratio of a flip from cached tanh(theta) and tables of
cosh, sinh and tanh of 2 W, with no transcendental function per hidden unit
(``flip_factors``).
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from torch_impl.ansatz import log_cosh


@dataclass
class MetropolisSamples:
    """Chains recorded by a sampler, chain-first as ``twins.stats`` expects.

    ``samples``: (n_chains, n_samples, n_sites) spins +-1 in the model's dtype.
    ``log_psi``: (n_chains, n_samples), log psi of each recorded sample.
    ``acceptance``: accepted / proposed over the recorded sweeps (burn-in excluded).
    ``last``, ``last_log_psi``: the chains' final state, to continue sampling.
    """

    samples: torch.Tensor
    log_psi: torch.Tensor
    acceptance: float
    last: torch.Tensor
    last_log_psi: torch.Tensor


def draw_proposals(generator: torch.Generator, n_sweeps: int, n_sites: int,
                   n_chains: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(sites, uniforms)`` of shape (n_sweeps, n_sites, n_chains) from ``generator``.

    ``sites`` are int64 in [0, n_sites); ``uniforms`` are float64 in [0, 1).
    """
    shape = (n_sweeps, n_sites, n_chains)
    sites = torch.randint(0, n_sites, shape, generator=generator, dtype=torch.int64)
    uniforms = torch.rand(shape, generator=generator, dtype=torch.float64)
    return sites, uniforms


def random_configurations(generator: torch.Generator, n_chains: int, n_sites: int,
                          dtype=torch.float64) -> torch.Tensor:
    """Return (n_chains, n_sites) uniformly random spins +-1, a chain start."""
    bits = torch.randint(0, 2, (n_chains, n_sites), generator=generator)
    return (1 - 2 * bits).to(dtype)


def _check_proposals(s: torch.Tensor, sites, uniforms, n_discard: int, n_samples: int):
    n_chains, n_sites = s.shape
    expected = (n_discard + n_samples, n_sites, n_chains)
    if tuple(sites.shape) != expected or tuple(uniforms.shape) != expected:
        raise ValueError(
            f"sites {tuple(sites.shape)} and uniforms {tuple(uniforms.shape)} must both have "
            f"shape (n_discard + n_samples, n_sites, n_chains) = {expected}")
    if n_samples < 1 or n_discard < 0:
        raise ValueError(f"need n_samples >= 1 and n_discard >= 0, got n_samples={n_samples}, "
                         f"n_discard={n_discard}")


def _as_tensors(s, sites, uniforms):
    sites = torch.as_tensor(np.asarray(sites) if not torch.is_tensor(sites) else sites,
                            dtype=torch.int64, device=s.device)
    uniforms = torch.as_tensor(uniforms, dtype=torch.float64, device=s.device)
    return sites, uniforms


def _accept(uniforms: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """Return the Metropolis decision u < exp(2 Re log_ratio), a bool (n_chains,)."""
    # The comparison runs in float64 whatever the model dtype, as on the JAX side.
    return uniforms < torch.exp(2 * log_ratio.real.to(torch.float64))


@torch.no_grad()
def sample(log_psi_fn: Callable[[torch.Tensor], torch.Tensor], s: torch.Tensor,
           sites, uniforms, n_discard: int, n_samples: int) -> MetropolisSamples:
    """Run ``n_discard + n_samples`` Metropolis sweeps, evaluating the model on each proposal.

    ``log_psi_fn`` maps (B, n_sites) spins to (B,) log psi (real or complex);
    ``s`` (n_chains, n_sites) is the chains' start. Each proposal is one
    batched call on all chains, so a sweep costs n_sites forward passes.
    """
    _check_proposals(s, sites, uniforms, n_discard, n_samples)
    sites, uniforms = _as_tensors(s, sites, uniforms)
    n_chains, n_sites = s.shape
    chains = torch.arange(n_chains, device=s.device)

    s = s.clone()
    log_psi = log_psi_fn(s)
    recorded, recorded_log_psi = [], []
    # Counted on the device: a host read per proposal would wait for every op.
    accepted = torch.zeros((), dtype=torch.int64, device=s.device)
    for t in range(n_discard + n_samples):
        for k in range(n_sites):
            flip = sites[t, k]
            proposal = s.clone()
            proposal[chains, flip] = -proposal[chains, flip]
            proposal_log_psi = log_psi_fn(proposal)

            accept = _accept(uniforms[t, k], proposal_log_psi - log_psi)
            s = torch.where(accept[:, None], proposal, s)
            log_psi = torch.where(accept, proposal_log_psi, log_psi)
            if t >= n_discard:
                accepted += accept.sum()
        if t >= n_discard:
            recorded.append(s)
            recorded_log_psi.append(log_psi)

    return MetropolisSamples(
        samples=torch.stack(recorded, dim=1), log_psi=torch.stack(recorded_log_psi, dim=1),
        acceptance=int(accepted) / (n_samples * n_sites * n_chains), last=s,
        last_log_psi=log_psi)


def rbm_arrays(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(weight, hidden_bias, visible_bias)`` of an ``ansatz.RBM`` for ``sample_rbm``.

    ``weight`` is ``Dense.weight`` (n_hidden, n_sites); a bias the model does
    not use is returned as zeros.
    """
    weight = model.Dense.weight.detach()
    hidden_bias = model.Dense.bias
    hidden_bias = (weight.new_zeros(weight.shape[0]) if hidden_bias is None
                   else hidden_bias.detach())
    visible_bias = model.visible_bias
    visible_bias = (weight.new_zeros(weight.shape[1]) if visible_bias is None
                    else visible_bias.detach())
    return weight, hidden_bias, visible_bias


@torch.no_grad()
def sample_rbm(weight: torch.Tensor, hidden_bias: torch.Tensor, visible_bias: torch.Tensor,
               s: torch.Tensor, sites, uniforms, n_discard: int,
               n_samples: int, compile: bool = False) -> MetropolisSamples:
    """Run the same sweeps as ``sample`` for an RBM, from cached hidden pre-activations.

    The RBM is log psi(s) = sum_i a_i s_i + sum_j log cosh(theta_j), with
    theta = s W^T + b. ``weight`` W is (n_hidden, n_sites), torch's out x in
    layout (the transpose of Flax's ``kernel``); ``hidden_bias`` b is
    (n_hidden,), ``visible_bias`` a is (n_sites,). Real or complex.

    Two paths give the same chains: the log-cosh path updates theta on each
    flip and sums log cosh differences; the flip-ratio path (real W within
    ``use_flip_ratio``'s bounds) keeps tanh(theta) and multiplies the ratios of
    ``flip_factors``. Same inputs, same chains as ``sample(rbm.log_psi, ...)``
    up to rounding.

    ``_run_sweeps`` writes each sweep's state into preallocated history
    tensors. ``compile=True`` compiles it, all sweeps at once, into one
    ``torch.compile`` graph around a ``torch.while_loop``: the N proposals of
    a sweep unrolled in the loop's body and the loop itself in inductor's C++
    wrapper, where eager mode dispatches every op of every proposal. The
    first call per shape compiles, which took about 30 s at N = 20 on a
    2-core CPU (seconds once inductor has cached it).
    """
    _check_proposals(s, sites, uniforms, n_discard, n_samples)
    sites, uniforms = _as_tensors(s, sites, uniforms)
    rbm = (weight, hidden_bias, visible_bias)
    # Row i of W^T contains the weights of site i, (n_sites, n_hidden).
    columns = weight.T.contiguous()
    if use_flip_ratio(weight, hidden_bias):
        sweep, table = flip_ratio_sweep, flip_factors(columns)
    else:
        sweep, table = log_cosh_sweep, columns

    theta, log_psi = rbm_log_psi(s, *rbm)
    n_sweeps = n_discard + n_samples
    # Row t is the state after sweep t. The burn-in rows are dropped below.
    history = (s.new_empty((n_sweeps, *s.shape)), log_psi.new_empty((n_sweeps, len(s))),
               torch.empty(n_sweeps, dtype=torch.int64, device=s.device))
    run = _compiled_run_sweeps() if compile else functools.partial(_run_sweeps, _python_while_loop)
    last, last_log_psi = run(sweep, s, theta, log_psi, sites, uniforms, table, rbm, history)
    states, log_psis, accepted = (recorded[n_discard:] for recorded in history)
    return MetropolisSamples(
        samples=states.transpose(0, 1).contiguous(),
        log_psi=log_psis.transpose(0, 1).contiguous(),
        # One proposal per entry of the recorded sweeps' sites.
        acceptance=int(accepted.sum()) / sites[n_discard:].numel(),
        last=last, last_log_psi=last_log_psi)


def _run_sweeps(while_loop, sweep, s, theta, log_psi, sites, uniforms, table, rbm, history):
    """Run ``sweep`` once per row of ``sites`` in ``while_loop``; return the last (s, log psi).

    ``while_loop`` is ``torch.while_loop`` or ``_python_while_loop``.
    ``sweep`` is ``flip_ratio_sweep`` (``table`` the flip factors) or
    ``log_cosh_sweep`` (``table`` = W^T). ``history`` = (states (n_sweeps,
    n_chains, n_sites), log psi (n_sweeps, n_chains), accepted counts
    (n_sweeps,)) is written in place, row t after sweep t. The loop carries
    only the chains' state: ``torch.while_loop``'s body may write tensors it
    does not carry (in inference), and a carried history would be copied
    whole on every sweep.
    """
    states, log_psis, accepted = history

    def unfinished(t, s, theta, log_psi):
        return t < len(sites)

    def body(t, s, theta, log_psi):
        row = t[None]  # index_select with a tensor index keeps the loop traceable
        # The sweep flips spins in place, and the body must not modify its carried inputs.
        s, n_accepted, theta, log_psi = sweep(s.clone(), theta, sites.index_select(0, row)[0],
                                              uniforms.index_select(0, row)[0], table, rbm)
        states.index_copy_(0, row, s[None])
        log_psis.index_copy_(0, row, log_psi[None])
        accepted.index_copy_(0, row, n_accepted[None])
        return t + 1, s, theta, log_psi

    start = torch.zeros((), dtype=torch.int64, device=s.device)
    _, s, _, log_psi = while_loop(unfinished, body, (start, s, theta, log_psi))
    return s, log_psi


def _python_while_loop(cond_fn, body_fn, carried_inputs):
    """``torch.while_loop``'s documented semantics, as a plain Python loop.

    The eager path uses it: eager ``torch.while_loop`` traces the body into a
    graph on every call, which cost more than the sweeps in small runs.
    """
    while cond_fn(*carried_inputs):
        carried_inputs = body_fn(*carried_inputs)
    return carried_inputs


_COMPILED = []


def _compiled_run_sweeps():
    """Return ``_run_sweeps`` compiled, built once and reused across calls.

    One graph per sweep function and shape. ``cpp_wrapper`` runs the loop and
    its buffer allocations in C++ instead of Python: about 75 instead of 100
    us per sweep at N = 20 with 16 chains, at the same compile time.

    NOTE: run on CPU only. On CUDA the loop condition is a device tensor that
    inductor reads on the host each sweep; neither speed nor correctness has
    been measured there.
    """
    if not _COMPILED:
        _COMPILED.append(torch.compile(functools.partial(_run_sweeps, torch.while_loop),
                                       fullgraph=True, dynamic=False,
                                       options={"cpp_wrapper": True}))
    return _COMPILED[0]


def flip_factors(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return cosh(2 W^T), sinh(2 W^T) and tanh(2 W^T), each (n_sites, n_hidden).

    ``columns`` is W^T. Flipping s_i -> -s_i moves theta_j to theta_j - d_j with
    d_j = 2 s_i W_ji, and by the addition theorems

        cosh(theta_j - d_j) / cosh(theta_j) = cosh(d_j) - tanh(theta_j) sinh(d_j),
        tanh(theta_j - d_j) = (tanh(theta_j) - tanh(d_j)) / (1 - tanh(theta_j) tanh(d_j)).

    With these tables (cosh is even, sinh and tanh are odd in s_i) a proposal
    needs no transcendental function per hidden unit, only one log per chain.
    The parameters do not change while sampling, so they are computed once.
    """
    two_w = 2 * columns
    return torch.cosh(two_w), torch.sinh(two_w), torch.tanh(two_w)


# The flip-ratio path runs when every |W_ji| is at most MAX_FLIP_RATIO_WEIGHT
# and every |theta_j| is bounded by MAX_FLIP_RATIO_THETA. cosh d - tanh(theta)
# sinh d cancels when tanh(theta) is near sign(d), with relative error up to
# eps * exp(2 |d|): at |d| = 2 |W_ji| <= 2 that is below 55 eps. tanh(theta)
# keeps theta only to about eps cosh(theta)^2, and its update carries that
# error along (at |theta| >= 19 float64 tanh is exactly 1 and the update stays
# there, whatever theta becomes): at |theta| <= 4, cosh^2 < 750. Other RBMs
# take the log-cosh path, exact to rounding for any weights.
MAX_FLIP_RATIO_WEIGHT = 1.0
MAX_FLIP_RATIO_THETA = 4.0


# A decision read on the host: inside torch.compile the graph breaks here and
# the check runs eagerly on every call, so a compiled caller follows the weights.
@torch.compiler.disable
def use_flip_ratio(weight: torch.Tensor, hidden_bias: torch.Tensor) -> bool:
    """Return whether ``sample_rbm`` may use the flip-ratio path for ``weight`` and ``hidden_bias``.

    It needs a real W with every |W_ji| <= ``MAX_FLIP_RATIO_WEIGHT``, every
    |theta_j| <= sum_i |W_ji| + |b_j| <= ``MAX_FLIP_RATIO_THETA`` for all spin
    configurations, and a product of one flip's hidden ratios that stays in
    the normal range: each ratio lies in [exp(-|d_j|), exp(|d_j|)], so every
    partial product of a flip of site i lies within exp(+-sum_j 2 |W_ji|),
    which must stay below -log(tiny). A complex W has no such bound (cosh can
    vanish).
    """
    if weight.is_complex() or hidden_bias.is_complex():
        return False
    limit = -math.log(torch.finfo(weight.dtype).tiny)
    magnitude = weight.abs()
    largest_theta = (magnitude.sum(dim=1) + hidden_bias.abs()).max()
    return bool((magnitude.max() <= MAX_FLIP_RATIO_WEIGHT)
                & (largest_theta <= MAX_FLIP_RATIO_THETA)
                & ((2 * magnitude).sum(dim=0).max() < limit))


def rbm_log_psi(s, weight, hidden_bias, visible_bias):
    """Return the RBM's hidden pre-activations theta (n_chains, n_hidden) and log psi (n_chains,)."""
    theta = s.to(weight.dtype) @ weight.T + hidden_bias
    return theta, s.to(visible_bias.dtype) @ visible_bias + log_cosh(theta).sum(dim=1)


def flip_ratio_sweep(s, theta, sites, uniforms, tables, rbm):
    """Run one sweep on the flip-ratio path, in place on ``s``.

    ``sites`` and ``uniforms`` are (n_sites, n_chains), ``theta`` is
    (n_chains, n_hidden) at the sweep's start, ``tables`` is
    ``flip_factors(W^T)`` and ``rbm`` is ``(weight, hidden_bias,
    visible_bias)``. Returns ``(s, accepted, theta, log_psi)`` after the
    sweep. A function of tensors only, so that ``torch.compile`` can trace
    it as the body of ``_run_sweeps``'s loop.
    """
    cosh_2w, sinh_2w, tanh_2w = tables
    visible_bias = rbm[2]
    tanh_theta = torch.tanh(theta)
    chains = torch.arange(s.shape[0], device=s.device)
    accepted = torch.zeros((), dtype=torch.int64, device=s.device)
    for flip, u in zip(sites, uniforms):
        spin = s[chains, flip]  # (n_chains,), the value before the flip
        sinh_d = spin[:, None] * sinh_2w[flip]
        tanh_d = spin[:, None] * tanh_2w[flip]
        # cosh(theta_j - d_j) / cosh(theta_j) per hidden unit, (n_chains, H).
        ratio = cosh_2w[flip] - tanh_theta * sinh_d
        log_ratio = -2 * spin * visible_bias[flip] + torch.log(torch.prod(ratio, dim=1))

        accept = _accept(u, log_ratio)
        s[chains, flip] = torch.where(accept, -spin, spin)
        tanh_theta = torch.where(accept[:, None],
                                 (tanh_theta - tanh_d) / (1 - tanh_theta * tanh_d), tanh_theta)
        accepted += accept.sum()
    # theta and log psi are recomputed from s once per sweep (one matmul), so the
    # recorded log psi is the model's, on its branch of the complex log. Rounding
    # from the per-flip updates then cannot accumulate over sweeps.
    return (s, accepted, *rbm_log_psi(s, *rbm))


def log_cosh_sweep(s, theta, sites, uniforms, columns, rbm):
    """Run one sweep on the log-cosh path, in place on ``s``.

    Arguments and result as ``flip_ratio_sweep``, with ``columns`` = W^T,
    whose row i contains the weights of site i, in place of the tables.
    """
    visible_bias = rbm[2]
    chains = torch.arange(s.shape[0], device=s.device)
    accepted = torch.zeros((), dtype=torch.int64, device=s.device)
    for flip, u in zip(sites, uniforms):
        spin = s[chains, flip]  # (n_chains,), the value before the flip
        # Flipping s_i -> -s_i changes theta_j by -2 s_i W_ji and the visible
        # term by -2 a_i s_i: O(n_hidden) per chain, where a full forward pass
        # costs O(n_sites * n_hidden).
        proposal_theta = theta - 2 * spin[:, None] * columns[flip]
        log_ratio = (-2 * spin * visible_bias[flip]
                     + (log_cosh(proposal_theta) - log_cosh(theta)).sum(dim=1))

        accept = _accept(u, log_ratio)
        s[chains, flip] = torch.where(accept, -spin, spin)
        theta = torch.where(accept[:, None], proposal_theta, theta)
        accepted += accept.sum()
    return (s, accepted, *rbm_log_psi(s, *rbm))
