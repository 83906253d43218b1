"""The NQS stages of a VMC iteration, in both twins, and the whole iteration against NetKet.

Model and problem everywhere: the 1D transverse-field Ising chain with periodic
boundaries (J = h = 1) and a real float64 RBM with ``alpha`` hidden units per
spin. Stages, each timed in both frameworks on the same configuration:

* ``sample``: Metropolis sampling of ``n_samples`` configurations with
  ``n_chains`` chains, one sample per sweep of N flips, ``N_DISCARD`` burn-in
  sweeps per chain, the random numbers drawn inside the timed call (each
  framework's own generator). ``rbm`` variants update cached hidden
  pre-activations on each flip (O(H) per proposal); ``plain`` variants
  evaluate the whole model on each proposal (O(N H)).
* ``local energy``: E_loc on ``n_samples`` configurations.
* ``energy+grad``, ``sr solve`` and ``vmc iteration`` (``benchmarks.vmc_stages``).

Sweeps: over N at 1024 samples, over the number of samples (chains grow with
it, 64 samples per chain) at N = 32, and over alpha at N = 32 (``--quick``:
two small points per sweep).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import torch

import flax_impl.ansatz
import flax_impl.local_energy
import flax_impl.sampler
import torch_impl.ansatz
import torch_impl.local_energy
import torch_impl.sampler
from benchmarks.devices import Target
from benchmarks.harness import CaseResult, Variant, run_case, timed_first_call
from twins.hamiltonians import TransverseFieldIsing
from twins.lattice import chain

# Burn-in sweeps per chain; NetKet's MCState discards 5 by default too.
N_DISCARD = 5
DTYPE = "float64"


@dataclass(frozen=True)
class NqsConfig:
    """One NQS workload: chain length, RBM width and Monte Carlo sizes."""

    n_sites: int
    alpha: int
    n_samples: int
    n_chains: int

    def __post_init__(self):
        if self.n_samples % self.n_chains:
            raise ValueError(f"n_samples={self.n_samples} must be a multiple of "
                             f"n_chains={self.n_chains}; each chain records n_samples / n_chains")

    @property
    def samples_per_chain(self) -> int:
        return self.n_samples // self.n_chains

    @property
    def n_params(self) -> int:
        hidden = self.alpha * self.n_sites
        return self.n_sites * hidden + hidden + self.n_sites

    def label(self) -> str:
        return f"N={self.n_sites} alpha={self.alpha} samples={self.n_samples} chains={self.n_chains}"


def hamiltonian(n_sites: int) -> TransverseFieldIsing:
    """Return the periodic Ising chain H = -sum Z_i Z_{i+1} - sum X_i."""
    return TransverseFieldIsing(chain(n_sites, pbc=True), J=1.0, h=1.0)


def torch_model(config: NqsConfig, target: Target) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch_impl.ansatz.RBM(config.n_sites, alpha=config.alpha,
                                 dtype=torch.float64).to(target.torch_device)


def flax_model_and_variables(config: NqsConfig, target: Target):
    model = flax_impl.ansatz.RBM(alpha=config.alpha, param_dtype=jnp.float64)
    variables = model.init(jax.random.key(0), jnp.ones((1, config.n_sites), jnp.float64))
    return model, jax.device_put(variables, target.jax_device)


def random_spins(config: NqsConfig, count: int, seed: int = 0) -> np.ndarray:
    """Return (count, N) float64 spins +-1 from a numpy generator."""
    rng = np.random.default_rng(seed)
    return 1.0 - 2.0 * rng.integers(0, 2, size=(count, config.n_sites))


# --- sampling ---------------------------------------------------------------

def _torch_sampler(config: NqsConfig, target: Target, cached: bool):
    def build() -> Variant:
        model = torch_model(config, target)
        # The twins draw proposals and starts on the CPU; sample_rbm moves them to the device.
        generator = torch.Generator().manual_seed(0)
        state = {"s": torch_impl.sampler.random_configurations(
            generator, config.n_chains, config.n_sites).to(target.torch_device)}
        weight, hidden_bias, visible_bias = torch_impl.sampler.rbm_arrays(model)
        n_sweeps = N_DISCARD + config.samples_per_chain

        def run(calls: int) -> None:
            for _ in range(calls):
                sites, uniforms = torch_impl.sampler.draw_proposals(
                    generator, n_sweeps, config.n_sites, config.n_chains)
                if cached:
                    result = torch_impl.sampler.sample_rbm(
                        weight, hidden_bias, visible_bias, state["s"], sites, uniforms,
                        N_DISCARD, config.samples_per_chain)
                else:
                    result = torch_impl.sampler.sample(
                        model.log_psi, state["s"], sites, uniforms, N_DISCARD,
                        config.samples_per_chain)
                state["s"] = result.last
            target.torch_sync()

        run(1)
        name = "torch eager rbm" if cached else "torch eager plain"
        return Variant(name, "torch", run, items_per_call=config.n_samples)

    return build


def jax_proposal_drawer(config: NqsConfig):
    """Return a jitted ``draw(key) -> (key, sites, uniforms)`` for one call of the sampler."""
    n_sweeps = N_DISCARD + config.samples_per_chain

    @jax.jit
    def draw(key):
        key, proposal_key = jax.random.split(key)
        sites, uniforms = flax_impl.sampler.draw_proposals(
            proposal_key, n_sweeps, config.n_sites, config.n_chains)
        return key, sites, uniforms

    return draw


def _jax_sampler(config: NqsConfig, target: Target, cached: bool):
    def build() -> Variant:
        model, variables = flax_model_and_variables(config, target)
        draw = jax_proposal_drawer(config)
        key = jax.device_put(jax.random.key(0), target.jax_device)
        start = flax_impl.sampler.random_configurations(jax.random.key(1), config.n_chains,
                                                        config.n_sites)
        state = {"key": key, "s": jax.device_put(start, target.jax_device)}
        rbm = flax_impl.sampler.rbm_arrays(variables)

        # The public samplers are jitted inside but read the acceptance rate on
        # the host, so each call waits for its chains; the key and the chains'
        # state are threaded from call to call.
        def run(calls: int) -> None:
            key, s = state["key"], state["s"]
            for _ in range(calls):
                key, sites, uniforms = draw(key)
                if cached:
                    result = flax_impl.sampler.sample_rbm(*rbm, s, sites, uniforms, N_DISCARD,
                                                          config.samples_per_chain)
                else:
                    result = flax_impl.sampler.sample(model.apply, variables, s, sites, uniforms,
                                                      N_DISCARD, config.samples_per_chain)
                s = result.last
            state["key"], state["s"] = jax.block_until_ready((key, s))

        compile_s = timed_first_call(run)
        run(1)
        name = "jax jit rbm" if cached else "jax jit plain"
        return Variant(name, "jax", run, items_per_call=config.n_samples, compile_s=compile_s)

    return build


def sampling_builders(config: NqsConfig, target: Target, plain: bool = True):
    builders = [("jax jit rbm", _jax_sampler(config, target, cached=True)),
                ("torch eager rbm", _torch_sampler(config, target, cached=True))]
    if plain:
        builders += [("jax jit plain", _jax_sampler(config, target, cached=False)),
                     ("torch eager plain", _torch_sampler(config, target, cached=False))]
    return builders


# --- local energy -----------------------------------------------------------

def local_energy_builders(config: NqsConfig, target: Target):
    """Return the E_loc builders: ``rbm`` variants call ``rbm_local_energy`` (what
    ``vmc.estimate`` calls for an RBM), ``plain`` ones evaluate the model on every
    connected configuration."""
    spins = random_spins(config, config.n_samples)
    ham = hamiltonian(config.n_sites)

    def torch_build(rbm: bool):
        def build() -> Variant:
            model = torch_model(config, target)
            s = target.to_torch(spins, DTYPE)
            arrays = torch_impl.sampler.rbm_arrays(model)

            def run(calls: int) -> None:
                for _ in range(calls):
                    if rbm:
                        torch_impl.local_energy.rbm_local_energy(*arrays, ham, s)
                    else:
                        torch_impl.local_energy.local_energy(model, ham, s)
                target.torch_sync()

            run(1)
            return Variant(f"torch eager {'rbm' if rbm else 'plain'}", "torch", run,
                           items_per_call=config.n_samples)
        return build

    def jax_build(rbm: bool):
        def build() -> Variant:
            model, variables = flax_model_and_variables(config, target)
            s = target.to_jax(spins, DTYPE)

            @jax.jit
            def local_energy(variables, s):
                if rbm:
                    return flax_impl.local_energy.rbm_local_energy(
                        *flax_impl.sampler.rbm_arrays(variables), ham, s)
                return flax_impl.local_energy.local_energy(
                    functools.partial(model.apply, variables), ham, s)

            def run(calls: int) -> None:
                for _ in range(calls):
                    out = local_energy(variables, s)
                out.block_until_ready()

            compile_s = timed_first_call(run)
            return Variant(f"jax jit {'rbm' if rbm else 'plain'}", "jax", run,
                           items_per_call=config.n_samples, compile_s=compile_s)
        return build

    return [("jax jit rbm", jax_build(True)), ("torch eager rbm", torch_build(True)),
            ("jax jit plain", jax_build(False)), ("torch eager plain", torch_build(False))]


def local_energy_work(config: NqsConfig) -> dict:
    """FLOPs of the plain E_loc: the RBM's matmul on the N connected configurations of each sample."""
    hidden = config.alpha * config.n_sites
    evaluations = config.n_samples * (config.n_sites + 1)
    return {"flops": 2 * evaluations * config.n_sites * hidden}


# --- the run ------------------------------------------------------------------

def sweep_configs(quick: bool) -> dict[str, list[NqsConfig]]:
    """Return the configurations of each sweep, keyed by the swept parameter."""
    if quick:
        return {
            "n_sites": [NqsConfig(n, 1, 512, 16) for n in (16, 32)],
            "n_samples": [NqsConfig(16, 1, n, n // 32) for n in (512, 2048)],
            "alpha": [NqsConfig(16, a, 512, 16) for a in (1, 2)],
        }
    return {
        "n_sites": [NqsConfig(n, 1, 1024, 16) for n in (16, 32, 64, 128, 256)],
        "n_samples": [NqsConfig(32, 1, n, n // 64) for n in (1024, 4096, 16384, 65536)],
        "alpha": [NqsConfig(32, a, 1024, 16) for a in (1, 2, 4)],
    }


def _sweep_value(sweep: str, config: NqsConfig) -> int:
    return {"n_sites": config.n_sites, "n_samples": config.n_samples, "alpha": config.alpha}[sweep]


def run_nqs(target: Target, *, quick: bool, rounds: int, block_s: float, torch_compile: bool,
            suites, netket_python: str | None, peaks: dict | None = None,
            on_case=None, log=print) -> tuple[list[CaseResult], list[dict], dict]:
    """Run the NQS sweeps and the NetKet comparison; return (cases, targets, netket metadata).

    ``on_case(case)``, when given, is called after every case, so that the
    caller can save partial results.
    """
    on_case = on_case or (lambda case: None)
    from benchmarks import vmc_stages

    cases: list[CaseResult] = []
    targets: list[dict] = []
    peaks_by_framework = {fw: (peaks or {}).get(fw, {}).get(DTYPE) for fw in ("torch", "jax")}
    if "nqs" in suites:
        seen = set()
        for sweep, configs in sweep_configs(quick).items():
            for config in configs:
                stages = [("sample", sampling_builders(config, target), None),
                          ("local energy", local_energy_builders(config, target),
                           local_energy_work(config))]
                stages += vmc_stages.stage_builders(config, target)
                for stage, builders, work in stages:
                    key = (stage, config)
                    params = {"sweep": sweep, sweep: _sweep_value(sweep, config), "stage": stage,
                              **asdict(config), "dtype": DTYPE}
                    if key in seen:
                        # The same configuration in another sweep: reuse its numbers.
                        earlier = next(c for c in cases if c.params["stage"] == stage
                                       and all(c.params[k] == v for k, v in asdict(config).items()))
                        cases.append(CaseResult(**{**earlier.as_dict(), "params": params}))
                        on_case(cases[-1])
                        continue
                    seen.add(key)
                    case = run_case("nqs", f"{stage} {config.label()}", params, builders,
                                    rounds=rounds, block_s=block_s, work=work,
                                    reference=builders[0][0], peaks_by_framework=peaks_by_framework,
                                    log=log)
                    cases.append(case)
                    on_case(case)
                    log(_summary(case))
        targets += rbm_speedups(cases)

    netket_meta: dict = {}
    if "netket" in suites:
        peer_cases, peer_targets, netket_meta = vmc_stages.run_peer_comparison(
            target, quick=quick, rounds=rounds, block_s=block_s, torch_compile=torch_compile,
            netket_python=netket_python or default_netket_python(), on_case=on_case, log=log)
        cases += peer_cases
        targets += peer_targets
    return cases, targets, netket_meta


def default_netket_python() -> str | None:
    """Return ``.venv-netket/bin/python`` in the repository when it exists."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, ".venv-netket", "bin", "python")
    return path if os.path.exists(path) else None


# Stages timed with an ``rbm`` and a ``plain`` variant: the name of the
# speedup row and the unit of their items.
_RBM_SPEEDUPS = {"sample": ("RBM cache speedup", "samples"),
                 "local energy": ("RBM local energy speedup", "configurations")}


def rbm_speedups(cases: list[CaseResult]) -> list[dict]:
    """Return plain / rbm time per stage, framework and configuration (sampling, local energy)."""
    targets = []
    for case in cases:
        if case.params["stage"] not in _RBM_SPEEDUPS:
            continue
        title, unit = _RBM_SPEEDUPS[case.params["stage"]]
        rows = {row["variant"]: row for row in case.results}
        for framework, prefix in (("jax", "jax jit"), ("torch", "torch eager")):
            cached, plain = rows.get(f"{prefix} rbm"), rows.get(f"{prefix} plain")
            if cached and plain:
                configuration = case.case.removeprefix(case.params["stage"] + " ")
                targets.append({
                    "name": f"{title}, {framework}, {configuration}",
                    "measured": plain["unit_s"] / cached["unit_s"], "limit": None, "met": None,
                    "detail": (f"plain {plain['items_per_s']:.3g} {unit}/s, rbm "
                               f"{cached['items_per_s']:.3g} {unit}/s; speedup > 1 means the "
                               "rbm path is faster")})
    # Each configuration appears once, even when two sweeps share it.
    unique = {target["name"]: target for target in targets}
    return list(unique.values())


def _summary(case: CaseResult) -> str:
    parts = []
    for row in case.results:
        rate = f" ({row['items_per_s']:.3g}/s)" if row["items_per_call"] > 1 else ""
        parts.append(f"{row['variant']} {row['unit_s'] * 1e3:.2f}ms{rate}")
    return f"  {case.case}: " + ", ".join(parts)

