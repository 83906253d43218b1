"""Lattices, Hamiltonians and their exact references, checked three independent ways.

The local-energy tables, the sparse matrix from Pauli strings and an explicit
Kronecker-product construction must describe the same operator, and the exact
ground energies must match the tabulated values and the free-fermion formula.
"""

import functools

import numpy as np
import pytest

from twins.hamiltonians import (
    MAX_SPARSE_SITES,
    Heisenberg,
    TransverseFieldIsing,
    all_configurations,
    configuration_index,
    ising_chain_ground_energy,
)
from twins.lattice import chain, square

# Lanczos (eigsh, tol=0) and the closed-form sum both converge to machine
# precision; differences measured here are below 3e-15 relative.
ENERGY_RTOL = 1e-12
# E_loc from the tables and (H psi) / psi from the matrix differ only in the
# order of a few float64 additions.
LOCAL_ENERGY_ATOL = 1e-12

# Exact ground energies, Pauli units, J = 1, periodic boundaries.
GROUND_ENERGIES = [
    ("ising", (8,), -10.251661790966025),
    ("ising", (12,), -15.322595151080780),
    ("ising", (16,), -20.404594474756657),
    ("heisenberg", (8,), -14.604373635748704),
    ("heisenberg", (12,), -21.549563669780840),
    ("heisenberg", (16,), -28.569185442467106),
    ("heisenberg", (4, 4), -44.913932833715464),
]

PAULI = {
    "I": np.eye(2),
    "X": np.array([[0.0, 1.0], [1.0, 0.0]]),
    "Y": np.array([[0.0, -1j], [1j, 0.0]]),
    "Z": np.array([[1.0, 0.0], [0.0, -1.0]]),
}


def _lattice(shape):
    return chain(shape[0]) if len(shape) == 1 else square(*shape)


def _kron_term(n_sites, ops):
    """Return the dense Pauli string, site 0 as the leftmost Kronecker factor."""
    factors = [PAULI[ops.get(site, "I")] for site in range(n_sites)]
    return functools.reduce(np.kron, factors)


def _kron_hamiltonian(hamiltonian):
    n_sites = hamiltonian.n_sites
    edges = hamiltonian.lattice.edges
    matrix = np.zeros((2**n_sites, 2**n_sites), dtype=np.complex128)
    if isinstance(hamiltonian, TransverseFieldIsing):
        for i, j in edges:
            matrix -= hamiltonian.J * _kron_term(n_sites, {i: "Z", j: "Z"})
        for i in range(n_sites):
            matrix -= hamiltonian.h * _kron_term(n_sites, {i: "X"})
    else:
        for i, j in edges:
            for op in "XYZ":
                matrix += hamiltonian.J * _kron_term(n_sites, {i: op, j: op})
    return matrix


def test_chain_edges():
    np.testing.assert_array_equal(chain(4).edges, [[0, 1], [0, 3], [1, 2], [2, 3]])
    np.testing.assert_array_equal(chain(4, pbc=False).edges, [[0, 1], [1, 2], [2, 3]])


def test_square_edges():
    assert len(square(3).edges) == 18
    assert len(square(4).edges) == 32
    np.testing.assert_array_equal(square(2, pbc=False).edges, [[0, 1], [0, 2], [1, 3], [2, 3]])
    assert len(square(3, 2, pbc=False).edges) == 7


def test_periodic_axis_too_short():
    with pytest.raises(ValueError, match="at least 3 sites"):
        chain(2)
    with pytest.raises(ValueError, match="at least 3 sites"):
        square(4, 2)


def test_sublattice_bipartition():
    labels = chain(6).sublattice()
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0, 1])
    assert chain(5).sublattice() is None
    labels = square(4).sublattice()
    for i, j in square(4).edges:
        assert labels[i] != labels[j]


def test_configuration_order():
    s = all_configurations(3)
    np.testing.assert_array_equal(s[0], [1, 1, 1])
    np.testing.assert_array_equal(s[1], [1, 1, -1])
    np.testing.assert_array_equal(s[4], [-1, 1, 1])
    np.testing.assert_array_equal(configuration_index(s), np.arange(8))


@pytest.mark.parametrize("model, shape, expected", GROUND_ENERGIES,
                         ids=[f"{m}-{'x'.join(map(str, s))}" for m, s, _ in GROUND_ENERGIES])
def test_exact_ground_energy(model, shape, expected):
    lattice = _lattice(shape)
    hamiltonian = TransverseFieldIsing(lattice) if model == "ising" else Heisenberg(lattice)
    assert hamiltonian.ground_energy() == pytest.approx(expected, rel=ENERGY_RTOL)


@pytest.mark.parametrize("n_sites", [8, 12, 16])
def test_ising_formula_matches_table(n_sites):
    expected = dict(((m, s), e) for m, s, e in GROUND_ENERGIES)[("ising", (n_sites,))]
    assert ising_chain_ground_energy(n_sites) == pytest.approx(expected, rel=ENERGY_RTOL)
    closed_form = -2.0 / np.sin(np.pi / (2 * n_sites))
    assert ising_chain_ground_energy(n_sites) == pytest.approx(closed_form, rel=ENERGY_RTOL)


@pytest.mark.parametrize("h", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("J", [1.0, -1.0])
@pytest.mark.parametrize("n_sites", [3, 4, 7, 10])
def test_ising_formula_matches_lanczos(n_sites, J, h):
    if J < 0 and n_sites % 2:
        with pytest.raises(ValueError, match="frustrated"):
            ising_chain_ground_energy(n_sites, J, h)
        return
    exact = TransverseFieldIsing(chain(n_sites), J=J, h=h).ground_energy()
    assert ising_chain_ground_energy(n_sites, J, h) == pytest.approx(exact, rel=ENERGY_RTOL)


def test_ising_formula_any_size():
    # Far beyond any matrix: the closed form still gives the extensive energy,
    # -4 / pi per site at h = J = 1 in the thermodynamic limit.
    n_sites = 100_000
    assert ising_chain_ground_energy(n_sites) / n_sites == pytest.approx(-4 / np.pi, rel=1e-9)


def test_ferro_and_antiferro_ising_same_spectrum():
    ferro = np.linalg.eigvalsh(TransverseFieldIsing(chain(6), J=1.0).to_dense())
    antiferro = np.linalg.eigvalsh(TransverseFieldIsing(chain(6), J=-1.0).to_dense())
    np.testing.assert_allclose(ferro, antiferro, atol=1e-12)


@pytest.mark.parametrize("hamiltonian", [
    TransverseFieldIsing(chain(5), J=0.7, h=1.3),
    TransverseFieldIsing(square(2, 3, pbc=False), J=-1.0, h=0.5),
    Heisenberg(chain(5), J=1.0),
    Heisenberg(chain(4, pbc=False), J=0.8),
    Heisenberg(square(3, 2, pbc=False), J=1.0),
], ids=["ising-chain", "ising-square", "heisenberg-chain", "heisenberg-open", "heisenberg-square"])
def test_sparse_matches_kronecker_products(hamiltonian):
    expected = _kron_hamiltonian(hamiltonian)
    assert np.max(np.abs(expected.imag)) == 0.0
    np.testing.assert_allclose(hamiltonian.to_dense(), expected.real, atol=1e-14)


def test_two_spin_ising_matrix():
    # H = Z0 Z1 - X0 - X1: coupling +1 on the single bond is J = -1 in -J Z Z.
    hamiltonian = TransverseFieldIsing(chain(2, pbc=False), J=-1.0, h=1.0)
    expected = np.kron(PAULI["Z"], PAULI["Z"]) - np.kron(PAULI["X"], PAULI["I"]) - np.kron(PAULI["I"], PAULI["X"])
    np.testing.assert_array_equal(hamiltonian.to_dense(), expected)


def test_marshall_rotation_keeps_spectrum():
    plain = np.linalg.eigvalsh(Heisenberg(chain(8)).to_dense())
    rotated = np.linalg.eigvalsh(Heisenberg(chain(8), marshall=True).to_dense())
    np.testing.assert_allclose(plain, rotated, atol=1e-12)


@pytest.mark.parametrize("lattice", [chain(8), square(2, 4, pbc=False)], ids=["chain", "square"])
def test_marshall_ground_state_is_positive(lattice):
    _, vectors = np.linalg.eigh(Heisenberg(lattice, marshall=True).to_dense())
    ground = vectors[:, 0] * np.sign(vectors[np.argmax(np.abs(vectors[:, 0])), 0])
    assert np.min(ground) > -1e-12
    _, vectors = np.linalg.eigh(Heisenberg(lattice).to_dense())
    assert np.min(vectors[:, 0]) < -1e-3 < 1e-3 < np.max(vectors[:, 0])


def test_marshall_rejects_odd_ring():
    with pytest.raises(ValueError, match="bipartite"):
        Heisenberg(chain(5), marshall=True)


@pytest.mark.parametrize("hamiltonian", [
    TransverseFieldIsing(chain(6), J=1.0, h=0.8),
    TransverseFieldIsing(square(3), J=-0.5, h=1.0),
    Heisenberg(chain(6)),
    Heisenberg(chain(6), marshall=True),
    Heisenberg(square(2, 3, pbc=False), J=0.7, marshall=True),
], ids=["ising-chain", "ising-square", "heisenberg", "heisenberg-marshall", "heisenberg-square"])
def test_local_energy_matches_matrix(hamiltonian):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=hamiltonian.n_sites) + 1j * rng.normal(size=hamiltonian.n_sites)

    def log_psi(s):
        return 0.3 * s @ weights + 0.1 * np.sum(s[:, :-1] * s[:, 1:], axis=1)

    s = all_configurations(hamiltonian.n_sites)
    psi = np.exp(log_psi(s))
    expected = (hamiltonian.to_sparse() @ psi) / psi
    np.testing.assert_allclose(hamiltonian.local_energy(log_psi, s), expected, atol=LOCAL_ENERGY_ATOL)


def test_local_energy_huge_ratio_is_finite():
    # psi(s') / psi(s) overflows for every flip, but aligned Heisenberg pairs
    # have a zero matrix element and must not contribute 0 * inf = NaN.
    hamiltonian = Heisenberg(chain(4))

    def log_psi(s):
        return -1000.0 * np.sum(s, axis=1)

    s = np.ones((1, 4))
    np.testing.assert_array_equal(hamiltonian.local_energy(log_psi, s), [4.0])


def test_sparse_rejects_large_system():
    with pytest.raises(ValueError, match=r"limit is 20 sites") as info:
        TransverseFieldIsing(chain(MAX_SPARSE_SITES + 4)).to_sparse()
    assert "GiB" in str(info.value)


def test_tables_are_read_only():
    hamiltonian = Heisenberg(chain(4))
    with pytest.raises(ValueError):
        hamiltonian.zz_coeff[0] = 2.0
    assert hamiltonian.flip_sign.shape == (4, 4)
