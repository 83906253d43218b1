"""Lattices as edge lists: the 1D chain and the 2D square lattice.

A lattice is its number of sites and an integer array of edges (E, 2), each row
a nearest-neighbour pair (i, j) with i < j, sorted and without repeats. Sites of
the square lattice are numbered row by row: site (x, y) has index y * length + x.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Lattice:
    """A graph of ``n_sites`` sites and its nearest-neighbour edges.

    Attributes:
        n_sites: number of sites N.
        edges: int64 array (E, 2); row e is the pair (i, j), i < j, of edge e.
        shape: extent along each axis, ``(N,)`` for a chain, ``(length, width)``
            for a square lattice.
        pbc: True for periodic boundaries along every axis.
    """

    n_sites: int
    edges: np.ndarray
    shape: tuple[int, ...]
    pbc: bool

    def sublattice(self) -> np.ndarray | None:
        """Return a 0/1 label per site so that every edge joins different labels.

        Returns None when the graph is not bipartite (a periodic chain of odd
        length, for example). Site 0 gets label 0.
        """
        neighbours = [[] for _ in range(self.n_sites)]
        for i, j in self.edges:
            neighbours[i].append(j)
            neighbours[j].append(i)
        label = np.full(self.n_sites, -1, dtype=np.int64)
        for start in range(self.n_sites):
            if label[start] >= 0:
                continue
            label[start] = 0
            stack = [start]
            while stack:
                site = stack.pop()
                for other in neighbours[site]:
                    if label[other] < 0:
                        label[other] = 1 - label[site]
                        stack.append(other)
                    elif label[other] == label[site]:
                        return None
        return label


def _canonical_edges(pairs) -> np.ndarray:
    edges = {(min(i, j), max(i, j)) for i, j in pairs}
    array = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    array.setflags(write=False)
    return array


def _check_extent(name: str, value: int, pbc: bool) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if pbc and value < 3:
        raise ValueError(
            f"a periodic axis needs at least 3 sites, got {name} = {value}: with 2 sites "
            f"both neighbours of a site are the same site. Use pbc=False for {value} sites."
        )


def chain(n_sites: int, pbc: bool = True) -> Lattice:
    """Return the 1D chain of ``n_sites`` sites, edges (i, i + 1).

    With ``pbc`` the edge (0, N - 1) closes the ring (N >= 3 required).
    """
    _check_extent("n_sites", n_sites, pbc)
    pairs = [(i, i + 1) for i in range(n_sites - 1)]
    if pbc:
        pairs.append((0, n_sites - 1))
    return Lattice(int(n_sites), _canonical_edges(pairs), (int(n_sites),), bool(pbc))


def square(length: int, width: int | None = None, pbc: bool = True) -> Lattice:
    """Return the ``length`` x ``width`` square lattice (``width`` defaults to ``length``).

    Site (x, y) has index y * length + x. Edges join horizontal and vertical
    nearest neighbours and, when ``pbc`` is set, wrap around each axis.
    """
    width = length if width is None else width
    _check_extent("length", length, pbc)
    _check_extent("width", width, pbc)
    pairs = []
    for y in range(width):
        for x in range(length):
            site = y * length + x
            if x + 1 < length or pbc:
                pairs.append((site, y * length + (x + 1) % length))
            if y + 1 < width or pbc:
                pairs.append((site, ((y + 1) % width) * length + x))
    return Lattice(int(length * width), _canonical_edges(pairs), (int(length), int(width)), bool(pbc))
