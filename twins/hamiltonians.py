"""Spin Hamiltonians, defined once for both frameworks, with exact references.

Units are Pauli matrices, spins s_i in {+1, -1} (s_i = +1 is the Z eigenvalue
+1), and basis index 0 is the all +1 configuration. Site 0 is the most
significant bit of a basis index: index b has s_i = 1 - 2 * bit(N - 1 - i) of
b, the order of ``kron(op_0, op_1, ...)``.

Every Hamiltonian here is a sum of one diagonal part and M off-diagonal terms,
each term flipping a fixed set of K sites. The tables that describe them are
plain numpy arrays, read by the torch side, the JAX side and the numpy reference
alike, so local energies never need a dense matrix:

    diagonal(s)  = sum_e zz_coeff[e] * s[zz_edges[e, 0]] * s[zz_edges[e, 1]]
    s'_m         = s with the sites flip_sites[m] flipped, i.e. s * flip_sign[m]
    H[s'_m, s]   = mel_const[m] + mel_zz[m] * s[mel_zz_sites[m, 0]] * s[mel_zz_sites[m, 1]]

The sparse matrix (``to_sparse``) is built from the Pauli strings instead, so
a check of the tables against it tests two independent constructions.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from twins.lattice import Lattice

# A sparse Hamiltonian on N sites has 2^N rows and about (1 + M) 2^N entries;
# at N = 20 and M = N terms, assembly takes about 0.5 GiB.
MAX_SPARSE_SITES = 20
# all_configurations returns 2^N x N float64: 3.2 GB at N = 24.
MAX_ENUMERATION_SITES = 24
# Below this dimension a dense eigensolver is cheaper than Lanczos, and
# eigsh needs k < dimension.
_DENSE_EIGH_DIMENSION = 256
# Bytes per COO entry while the matrix is assembled: int64 row and column
# plus a float64 value.
_BYTES_PER_ENTRY = 24


def all_configurations(n_sites: int) -> np.ndarray:
    """Return every configuration of ``n_sites`` spins, float64 (2^N, N).

    Row b is basis index b: row 0 is all +1, and site 0 is the most significant
    bit, so row 1 has s_{N-1} = -1.
    """
    if n_sites > MAX_ENUMERATION_SITES:
        size = 2.0**n_sites * n_sites * 8
        raise ValueError(
            f"enumerating all 2^{n_sites} configurations of {n_sites} sites needs "
            f"{_format_bytes(size)}; the limit is {MAX_ENUMERATION_SITES} sites. "
            f"Use Monte Carlo sampling for larger systems."
        )
    index = np.arange(2**n_sites, dtype=np.int64)
    shifts = np.arange(n_sites - 1, -1, -1, dtype=np.int64)
    bits = (index[:, None] >> shifts[None, :]) & 1
    return (1 - 2 * bits).astype(np.float64)


def configuration_index(s: np.ndarray) -> np.ndarray:
    """Return the basis index (int64, shape (B,)) of each configuration in ``s`` (B, N)."""
    s = np.asarray(s)
    n_sites = s.shape[-1]
    bits = (s < 0).astype(np.int64)
    weights = np.int64(1) << np.arange(n_sites - 1, -1, -1, dtype=np.int64)
    return bits @ weights


def ising_chain_ground_energy(n_sites: int, J: float = 1.0, h: float = 1.0) -> float:
    """Return the exact ground energy of -J sum Z_i Z_{i+1} - h sum X_i on a periodic chain.

    E0 = -sum_{n=0}^{N-1} sqrt(J^2 + h^2 - 2 |J h| cos k_n), k_n = pi (2n + 1) / N:
    the Jordan-Wigner free-fermion solution in the sector prod_i X_i = +1, which
    contains the ground state. The signs of h and, on an even chain, of J do not
    change the spectrum. An antiferromagnetic odd ring (J < 0, N odd) is
    frustrated and not covered by this formula.
    """
    if n_sites < 3:
        raise ValueError(f"the periodic chain needs n_sites >= 3, got {n_sites}.")
    if J < 0 and n_sites % 2 == 1:
        raise ValueError(
            f"J = {J} < 0 on a ring of odd length {n_sites} is frustrated and has no "
            f"closed form here; use an even n_sites or TransverseFieldIsing(...).ground_energy()."
        )
    k = np.pi * (2 * np.arange(n_sites) + 1) / n_sites
    coupling = abs(J * h)
    return float(-np.sum(np.sqrt(J**2 + h**2 - 2 * coupling * np.cos(k))))


class SpinHamiltonian:
    """Shared behaviour of the Hamiltonians below; subclasses fill the tables.

    Table attributes (numpy, read-only):
        n_sites: number of sites N.
        zz_edges: int64 (E, 2), the site pairs of the diagonal terms.
        zz_coeff: float64 (E,), the coefficient of s_i s_j for each pair.
        flip_sites: int64 (M, K), the sites flipped by off-diagonal term m.
        flip_sign: float64 (M, N), -1 at the flipped sites of term m, +1 elsewhere.
        mel_const: float64 (M,), the constant part of term m's matrix element.
        mel_zz: float64 (M,), the s_i s_j part of term m's matrix element.
        mel_zz_sites: int64 (M, 2), the pair (i, j) that ``mel_zz`` multiplies.
    """

    n_sites: int
    zz_edges: np.ndarray
    zz_coeff: np.ndarray
    flip_sites: np.ndarray
    flip_sign: np.ndarray
    mel_const: np.ndarray
    mel_zz: np.ndarray
    mel_zz_sites: np.ndarray

    def _set_tables(self, **tables) -> None:
        # Frozen dataclasses allow assignment only through object.__setattr__.
        for name, value in tables.items():
            array = np.ascontiguousarray(value)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        flip_sign = np.ones((len(self.flip_sites), self.n_sites))
        for m, sites in enumerate(self.flip_sites):
            flip_sign[m, sites] = -1.0
        flip_sign.setflags(write=False)
        object.__setattr__(self, "flip_sign", flip_sign)

    @property
    def n_terms(self) -> int:
        """Number M of off-diagonal terms."""
        return len(self.flip_sites)

    def pauli_terms(self) -> list[tuple[float, dict[int, str]]]:
        """Return H as (coefficient, {site: 'X' | 'Y' | 'Z'}) Pauli strings."""
        raise NotImplementedError

    def _basis_sign(self) -> np.ndarray | None:
        """Return the diagonal of a sign change U (H -> U H U), or None for none."""
        return None

    # --- local energies from the tables -----------------------------------

    def diagonal(self, s: np.ndarray) -> np.ndarray:
        """Return H[s, s] for configurations ``s`` (B, N), shape (B,)."""
        s = np.asarray(s)
        pairs = s[:, self.zz_edges[:, 0]] * s[:, self.zz_edges[:, 1]]
        return pairs @ self.zz_coeff

    def connected(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the off-diagonal neighbours of ``s`` (B, N) and their matrix elements.

        Returns:
            s_conn (B, M, N): s with term m's sites flipped.
            mel (B, M): H[s_conn[b, m], s[b]]; zero where term m does not act.
        """
        s = np.asarray(s)
        s_conn = s[:, None, :] * self.flip_sign[None, :, :]
        pairs = s[:, self.mel_zz_sites[:, 0]] * s[:, self.mel_zz_sites[:, 1]]
        mel = self.mel_const[None, :] + self.mel_zz[None, :] * pairs
        return s_conn, mel

    def local_energy(self, log_psi, s: np.ndarray) -> np.ndarray:
        """Return E_loc(s) = sum_s' H[s, s'] psi(s') / psi(s) for ``s`` (B, N).

        ``log_psi`` maps a (B, N) array to log psi (B,), real or complex. H is
        real symmetric here, so H[s, s'] = H[s', s] = ``mel``. Terms with a zero
        matrix element are dropped before the exponential, so a huge ratio
        cannot turn 0 * inf into NaN.
        """
        s = np.asarray(s, dtype=np.float64)
        s_conn, mel = self.connected(s)
        batch, n_terms, n_sites = s_conn.shape
        log_psi_s = np.asarray(log_psi(s))
        log_psi_conn = np.asarray(log_psi(s_conn.reshape(batch * n_terms, n_sites)))
        log_ratio = log_psi_conn.reshape(batch, n_terms) - log_psi_s[:, None]
        acting = mel != 0
        ratio = np.exp(np.where(acting, log_ratio, 0.0))
        return self.diagonal(s) + np.sum(np.where(acting, mel * ratio, 0.0), axis=1)

    # --- exact references ---------------------------------------------------

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """Return H as a real scipy CSR matrix (2^N, 2^N) built from its Pauli strings."""
        n_sites = self.n_sites
        masks = _group_by_flip_mask(self.pauli_terms(), n_sites)
        if n_sites > MAX_SPARSE_SITES:
            entries = 2.0**n_sites * len(masks)
            raise ValueError(
                f"the sparse Hamiltonian on {n_sites} sites would hold about {entries:.3g} "
                f"entries, {_format_bytes(entries * _BYTES_PER_ENTRY)} while it is built; "
                f"the limit is {MAX_SPARSE_SITES} sites. Use a smaller system, or the "
                f"analytic energy where one exists."
            )

        dimension = 2**n_sites
        index = np.arange(dimension, dtype=np.int64)
        s = all_configurations(n_sites)
        rows, cols, values = [], [], []
        for mask, terms in masks.items():
            amplitude = np.zeros(dimension, dtype=np.complex128)
            for coeff, ops in terms:
                amplitude += coeff * _pauli_phase(ops, s)
            if np.max(np.abs(amplitude.imag), initial=0.0) > 1e-12:
                raise ValueError(f"the Pauli strings with flip mask {mask:#x} give a complex Hamiltonian.")
            keep = amplitude.real != 0
            rows.append(index[keep] ^ mask)
            cols.append(index[keep])
            values.append(amplitude.real[keep])

        matrix = scipy.sparse.coo_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
            shape=(dimension, dimension),
        ).tocsr()

        sign = self._basis_sign()
        if sign is not None:
            unitary = scipy.sparse.diags(sign)
            matrix = (unitary @ matrix @ unitary).tocsr()
        return matrix

    def to_dense(self) -> np.ndarray:
        """Return H as a dense float64 array (2^N, 2^N)."""
        return self.to_sparse().toarray()

    def ground_energy(self) -> float:
        """Return the exact ground energy: Lanczos (``eigsh``) or, for 2^N <= 256, ``eigvalsh``."""
        matrix = self.to_sparse()
        if matrix.shape[0] <= _DENSE_EIGH_DIMENSION:
            return float(np.linalg.eigvalsh(matrix.toarray())[0])
        # A seeded random start vector: a symmetric one (all ones) can be
        # orthogonal to the ground state's symmetry sector.
        start = np.random.default_rng(0).standard_normal(matrix.shape[0])
        value = scipy.sparse.linalg.eigsh(matrix, k=1, which="SA", v0=start, tol=0.0,
                                          return_eigenvectors=False)
        return float(value[0])


@dataclass(frozen=True, eq=False)
class TransverseFieldIsing(SpinHamiltonian):
    """H = -J sum_<ij> Z_i Z_j - h sum_i X_i on the edges of ``lattice``.

    Tables: M = N single-site flips (K = 1) with matrix element -h.
    """

    lattice: Lattice
    J: float = 1.0
    h: float = 1.0
    n_sites: int = field(init=False)

    def __post_init__(self):
        lattice = self.lattice
        n_sites = lattice.n_sites
        object.__setattr__(self, "n_sites", n_sites)
        sites = np.arange(n_sites, dtype=np.int64)
        self._set_tables(
            zz_edges=lattice.edges,
            zz_coeff=np.full(len(lattice.edges), -float(self.J)),
            flip_sites=sites[:, None],
            mel_const=np.full(n_sites, -float(self.h)),
            mel_zz=np.zeros(n_sites),
            mel_zz_sites=np.stack([sites, sites], axis=1),
        )

    def pauli_terms(self):
        terms = [(-float(self.J), {int(i): "Z", int(j): "Z"}) for i, j in self.lattice.edges]
        terms += [(-float(self.h), {i: "X"}) for i in range(self.n_sites)]
        return terms


@dataclass(frozen=True, eq=False)
class Heisenberg(SpinHamiltonian):
    """H = J sum_<ij> (X_i X_j + Y_i Y_j + Z_i Z_j) on the edges of ``lattice``.

    Tables: one term per edge (K = 2) flipping both sites, with matrix element
    J (1 - s_i s_j): 2J on an antiparallel pair, 0 on a parallel one.

    With ``marshall`` the basis is rotated by U = prod_{i in A} Z_i, A being one
    sublattice of a bipartite lattice. U H U has the same spectrum and, for
    J > 0, a ground state with non-negative amplitudes, because every flip
    matrix element changes sign to -J (1 - s_i s_j). A lattice that is not
    bipartite (an odd ring) is rejected.
    """

    lattice: Lattice
    J: float = 1.0
    marshall: bool = False
    n_sites: int = field(init=False)

    def __post_init__(self):
        lattice = self.lattice
        object.__setattr__(self, "n_sites", lattice.n_sites)
        if self.marshall and lattice.sublattice() is None:
            raise ValueError(
                f"the Marshall sign rule needs a bipartite lattice, but the lattice of shape "
                f"{lattice.shape} (pbc={lattice.pbc}) is not; use an even length or marshall=False."
            )
        # On a bipartite lattice every edge joins the two sublattices, so U
        # flips the sign of every flip term.
        sign = -1.0 if self.marshall else 1.0
        n_edges = len(lattice.edges)
        J = float(self.J)
        self._set_tables(
            zz_edges=lattice.edges,
            zz_coeff=np.full(n_edges, J),
            flip_sites=lattice.edges,
            mel_const=np.full(n_edges, sign * J),
            mel_zz=np.full(n_edges, -sign * J),
            mel_zz_sites=lattice.edges,
        )

    def pauli_terms(self):
        terms = []
        for i, j in self.lattice.edges:
            for op in "XYZ":
                terms.append((float(self.J), {int(i): op, int(j): op}))
        return terms

    def _basis_sign(self):
        if not self.marshall:
            return None
        # U = prod_{i in A} Z_i is diagonal with entry prod_{i in A} s_i.
        in_a = self.lattice.sublattice() == 1
        return np.prod(np.where(in_a[None, :], all_configurations(self.n_sites), 1.0), axis=1)


def _group_by_flip_mask(terms, n_sites: int) -> dict[int, list]:
    """Group Pauli strings by the bit mask of the sites they flip (X and Y)."""
    masks: dict[int, list] = {}
    for coeff, ops in terms:
        mask = 0
        for site, op in ops.items():
            if op not in ("X", "Y", "Z"):
                raise ValueError(f"unknown Pauli operator {op!r} on site {site}; use 'X', 'Y' or 'Z'.")
            if op in ("X", "Y"):
                mask |= 1 << (n_sites - 1 - site)
        masks.setdefault(mask, []).append((coeff, ops))
    return masks


def _pauli_phase(ops: dict[int, str], s: np.ndarray) -> np.ndarray:
    """Return c(b) with P |b> = c(b) |b ^ mask> for each basis state b (rows of ``s``).

    Z|s> = s|s>, X|s> = |-s>, and Y|s> = i s |-s> (Y|0> = i|1>, Y|1> = -i|0>).
    """
    phase = np.ones(len(s), dtype=np.complex128)
    for site, op in ops.items():
        if op == "Z":
            phase *= s[:, site]
        elif op == "Y":
            phase *= 1j * s[:, site]
    return phase


def _format_bytes(size: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    power = min(int(math.log(max(size, 1.0), 1024)), len(units) - 1)
    return f"{size / 1024**power:.1f} {units[power]}"
