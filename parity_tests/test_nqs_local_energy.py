"""RBM local energies from hidden pre-activations against the plain evaluation.

``rbm_local_energy`` (both twins) must give the values of ``local_energy``,
which evaluates the model on every connected configuration, and of the numpy
reference in ``twins.hamiltonians``, on whichever path it takes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flax_impl.ansatz as flax_ansatz
import flax_impl.local_energy as flax_local
import flax_impl.sampler as flax_sampler
import torch_impl.ansatz as torch_ansatz
import torch_impl.local_energy as torch_local
import torch_impl.sampler as torch_sampler
from parity_tests.test_nqs_sampler import _rbm_pair
from twins.hamiltonians import Heisenberg, TransverseFieldIsing
from twins.lattice import chain

N_SITES = 8
N_CONFIGURATIONS = 64
# Relative to the largest |E_loc|: the flip-ratio product carries at most a
# few hundred eps of cancellation error per ratio (see the samplers' bounds).
RTOL = 1e-12

HAMILTONIANS = {
    "ising": TransverseFieldIsing(chain(N_SITES), J=1.0, h=0.7),
    "heisenberg": Heisenberg(chain(N_SITES)),
}
# (complex parameters, W_00 override, whether the flip-ratio path applies)
RBMS = {
    "real": (False, None, True),
    "large-weight": (False, 1.5, False),
    "complex": (True, None, False),
}


def _configurations(seed):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((N_CONFIGURATIONS, N_SITES)) < 0.5, -1.0, 1.0)


def _both(rbm, hamiltonian, seed=0):
    """Return each variant's E_loc by name, and whether the flip-ratio path applies."""
    complex_params, first_weight, _ = RBMS[rbm]
    model, flax_model, variables = _rbm_pair(seed, N_SITES, complex_params,
                                             first_weight=first_weight)
    s = _configurations(seed)
    torch_s, flax_s = torch.tensor(s), jnp.asarray(s)
    log_psi = functools.partial(flax_model.apply, variables)
    values = {
        "torch rbm": torch_local.rbm_local_energy(*torch_sampler.rbm_arrays(model), hamiltonian,
                                                  torch_s).numpy(),
        "torch plain": torch_local.local_energy(model, hamiltonian, torch_s).numpy(),
        "flax rbm": np.asarray(flax_local.rbm_local_energy(
            *flax_sampler.rbm_arrays(variables), hamiltonian, flax_s)),
        "flax plain": np.asarray(flax_local.local_energy(log_psi, hamiltonian, flax_s)),
        "reference": hamiltonian.local_energy(lambda x: np.asarray(log_psi(jnp.asarray(x))), s),
    }
    flip_ratio = bool(flax_sampler.use_flip_ratio(*flax_sampler.rbm_arrays(variables)[:2]))
    assert flip_ratio == torch_sampler.use_flip_ratio(*torch_sampler.rbm_arrays(model)[:2])
    return values, flip_ratio


@pytest.mark.parametrize("hamiltonian", list(HAMILTONIANS))
@pytest.mark.parametrize("rbm", list(RBMS))
def test_rbm_local_energy_matches_plain(rbm, hamiltonian):
    values, flip_ratio = _both(rbm, HAMILTONIANS[hamiltonian])
    assert flip_ratio == RBMS[rbm][2], "the case no longer exercises the path it is named for"
    reference = values.pop("reference")
    scale = np.max(np.abs(reference))
    for name, value in values.items():
        np.testing.assert_allclose(value, reference, rtol=0, atol=RTOL * scale, err_msg=name)


def test_zero_field_gives_diagonal():
    # h = 0: every off-diagonal matrix element is zero and masked out.
    hamiltonian = TransverseFieldIsing(chain(N_SITES), J=1.0, h=0.0)
    values, _ = _both("real", hamiltonian)
    expected = hamiltonian.diagonal(_configurations(0))
    for name, value in values.items():
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_model_local_energy_picks_rbm(monkeypatch):
    hamiltonian = HAMILTONIANS["ising"]
    calls = []

    def spy(module):
        original = module.rbm_local_energy

        def wrapped(*args):
            calls.append(module.__name__)
            return original(*args)
        monkeypatch.setattr(module, "rbm_local_energy", wrapped)

    spy(torch_local)
    spy(flax_local)
    s = _configurations(1)
    torch_rbm = torch_ansatz.RBM(N_SITES)
    flax_rbm = flax_ansatz.RBM()
    params = flax_rbm.init(jax.random.key(0), jnp.asarray(s[:1]))["params"]
    torch_local.model_local_energy(torch_rbm, hamiltonian, torch.tensor(s))
    flax_local.model_local_energy(flax_rbm, params, hamiltonian, jnp.asarray(s))
    assert calls == ["torch_impl.local_energy", "flax_impl.local_energy"]

    calls.clear()
    torch_ffn = torch_ansatz.FFN(N_SITES)
    flax_ffn = flax_ansatz.FFN(N_SITES)
    ffn_params = flax_ffn.init(jax.random.key(0), jnp.asarray(s[:1]))["params"]
    torch_local.model_local_energy(torch_ffn, hamiltonian, torch.tensor(s))
    flax_local.model_local_energy(flax_ffn, ffn_params, hamiltonian, jnp.asarray(s))
    assert calls == []
