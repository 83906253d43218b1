"""VMC stages (energy + gradient, SR solve, whole iteration) and the NetKet comparison.

The whole iteration is what NetKet's ``VMC_SR`` driver does per step: draw
``n_samples`` Metropolis samples (RBM fast path, ``N_DISCARD`` burn-in sweeps
per chain, chains continuing from the previous iteration), evaluate local
energies and log-derivatives, solve (S + 0.1 I) delta = F, and take one SGD step
of size ``LEARNING_RATE``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import asdict

import jax
import jax.numpy as jnp
import optax
import torch

import flax_impl.local_energy
import flax_impl.sampler
import flax_impl.vmc
import torch_impl.local_energy
import torch_impl.sampler
import torch_impl.vmc
from benchmarks import fused_vmc
from benchmarks.devices import Target
from benchmarks.harness import (CaseResult, RecompileError, SkipVariant, Variant, run_case,
                                timed_first_call)
from benchmarks.nqs import (DTYPE, N_DISCARD, NqsConfig, flax_model_and_variables, hamiltonian,
                            jax_proposal_drawer, random_spins, torch_model)

DIAG_SHIFT = 0.1
LEARNING_RATE = 0.01


# --- torch ---------------------------------------------------------------------

def _torch_estimate_parts(config: NqsConfig, target: Target):
    model = torch_model(config, target)
    s = target.to_torch(random_spins(config, config.n_samples), DTYPE)
    return model, s


def _torch_energy_grad(config: NqsConfig, target: Target):
    def build() -> Variant:
        model, s = _torch_estimate_parts(config, target)
        ham = hamiltonian(config.n_sites)

        def run(calls: int) -> None:
            for _ in range(calls):
                torch_impl.vmc.estimate(model, ham, s)
            target.torch_sync()

        run(1)
        return Variant("torch eager", "torch", run, items_per_call=config.n_samples)

    return build


def _torch_sr_solve(config: NqsConfig, target: Target):
    def build() -> Variant:
        model, s = _torch_estimate_parts(config, target)
        ham = hamiltonian(config.n_sites)
        weights = torch.full((len(s),), 1.0 / len(s), dtype=s.dtype, device=s.device)
        o_matrix = torch_impl.vmc.real_jacobian(model, s)
        e_loc = torch_impl.local_energy.local_energy(model, ham, s)

        def run(calls: int) -> None:
            for _ in range(calls):
                torch_impl.vmc.sr_direction(o_matrix, e_loc, weights, DIAG_SHIFT)
            target.torch_sync()

        run(1)
        return Variant("torch eager", "torch", run,
                       note="torch_impl.vmc.sr_direction on a real O: Cholesky in the smaller "
                            "of parameter and sample space, trace-bound conditioning check")

    return build


def _torch_iteration(config: NqsConfig, target: Target, compiled: bool = False):
    def build() -> Variant:
        model = torch_model(config, target)
        ham = hamiltonian(config.n_sites)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        # The twins draw proposals and starts on the CPU; sample_rbm moves them to the device.
        generator = torch.Generator().manual_seed(0)
        state = {"s": torch_impl.sampler.random_configurations(
            generator, config.n_chains, config.n_sites).to(target.torch_device)}
        n_sweeps = N_DISCARD + config.samples_per_chain

        def iteration() -> None:
            sites, uniforms = torch_impl.sampler.draw_proposals(
                generator, n_sweeps, config.n_sites, config.n_chains)
            weight, hidden_bias, visible_bias = torch_impl.sampler.rbm_arrays(model)
            chains = torch_impl.sampler.sample_rbm(weight, hidden_bias, visible_bias, state["s"],
                                                   sites, uniforms, N_DISCARD,
                                                   config.samples_per_chain, compile=compiled)
            state["s"] = chains.last
            samples = chains.samples.reshape(-1, config.n_sites)
            torch_impl.vmc.step(model, optimizer, ham, s=samples, diag_shift=DIAG_SHIFT,
                                compile=compiled)

        def run(calls: int) -> None:
            for _ in range(calls):
                iteration()
            target.torch_sync()

        compile_s = timed_first_call(run) if compiled else None
        run(1)
        if compiled:
            return Variant("torch compile", "torch", run, items_per_call=config.n_samples,
                           compile_s=compile_s,
                           note="the torch twin with compile=True: sample_rbm's sweeps one "
                                "torch.compile graph, step's statistics another")
        return Variant("torch eager", "torch", run, items_per_call=config.n_samples)

    return build


# --- JAX -----------------------------------------------------------------------

def _jax_estimate_parts(config: NqsConfig, target: Target):
    model, variables = flax_model_and_variables(config, target)
    s = target.to_jax(random_spins(config, config.n_samples), DTYPE)
    return model, variables["params"], s


def _jax_energy_grad(config: NqsConfig, target: Target):
    def build() -> Variant:
        model, params, s = _jax_estimate_parts(config, target)
        ham = hamiltonian(config.n_sites)

        def run(calls: int) -> None:
            for _ in range(calls):
                result = flax_impl.vmc.estimate(model, params, ham, s)
            jax.block_until_ready(result.direction)

        compile_s = timed_first_call(run)
        return Variant("jax twin", "jax", run, items_per_call=config.n_samples, compile_s=compile_s,
                       note="flax_impl.vmc.estimate: compiled statistics, host-side unflatten")

    return build


def _jax_sr_inputs(config: NqsConfig, target: Target):
    """Return the real O (B, P) and E_loc (B,) that both JAX SR variants solve from."""
    model, params, s = _jax_estimate_parts(config, target)
    o_matrix = flax_impl.vmc.real_jacobian(model, params, s)
    e_loc = flax_impl.local_energy.local_energy(
        functools.partial(model.apply, {"params": params}), hamiltonian(config.n_sites), s)
    return o_matrix, e_loc


def _jax_sr_solve(config: NqsConfig, target: Target):
    def build() -> Variant:
        o_matrix, e_loc = _jax_sr_inputs(config, target)
        weights = jnp.full((config.n_samples,), 1.0 / config.n_samples)

        def run(calls: int) -> None:
            for _ in range(calls):
                direction = flax_impl.vmc.sr_direction(o_matrix, e_loc, weights, DIAG_SHIFT)
            direction.block_until_ready()

        compile_s = timed_first_call(run)
        return Variant("jax twin", "jax", run, compile_s=compile_s,
                       note="flax_impl.vmc.sr_direction on a real O: Cholesky in the smaller "
                            "of parameter and sample space, trace-bound check on the host")

    return build


def _jax_fused_sr_solve(config: NqsConfig, target: Target):
    def build() -> Variant:
        o_matrix, e_loc = _jax_sr_inputs(config, target)
        direction_fn = jax.jit(functools.partial(fused_vmc.sr_direction, diag_shift=DIAG_SHIFT))

        def run(calls: int) -> None:
            for _ in range(calls):
                direction = direction_fn(o_matrix, e_loc)
            direction.block_until_ready()

        compile_s = timed_first_call(run)
        return Variant("jax fused", "jax", run, compile_s=compile_s,
                       note="benchmarks.fused_vmc.sr_direction: real O, Cholesky in the "
                            "smaller of parameter and sample space")

    return build


def _jax_sampler_state(config: NqsConfig, target: Target):
    key = jax.device_put(jax.random.key(0), target.jax_device)
    start = flax_impl.sampler.random_configurations(jax.random.key(1), config.n_chains,
                                                    config.n_sites)
    return {"key": key, "s": jax.device_put(start, target.jax_device)}


def _jax_iteration(config: NqsConfig, target: Target):
    def build() -> Variant:
        model, variables = flax_model_and_variables(config, target)
        ham = hamiltonian(config.n_sites)
        optimizer = optax.sgd(LEARNING_RATE)
        draw = jax_proposal_drawer(config)

        # The proposal draw and the twin's sampler core run in one compiled call.
        # The acceptance count stays on the device, where sample_rbm would read it.
        @jax.jit
        def draw_and_sample(key, params, s):
            key, sites, uniforms = draw(key)
            rbm = flax_impl.sampler.rbm_arrays({"params": params})
            chains = flax_impl.sampler.rbm_sampler_core(*rbm, s, sites, uniforms, N_DISCARD)
            return key, chains.samples.reshape(-1, config.n_sites), chains.last

        state = _jax_sampler_state(config, target)
        state["params"] = variables["params"]
        state["opt_state"] = optimizer.init(state["params"])

        def run(calls: int) -> None:
            for _ in range(calls):
                state["key"], samples, state["s"] = draw_and_sample(state["key"], state["params"],
                                                                     state["s"])
                state["params"], state["opt_state"], _ = flax_impl.vmc.step(
                    model, optimizer, state["params"], state["opt_state"], ham, s=samples,
                    diag_shift=DIAG_SHIFT)
            jax.block_until_ready(state["params"])

        compile_s = timed_first_call(run)
        run(1)
        return Variant("jax twin", "jax", run, items_per_call=config.n_samples,
                       compile_s=compile_s,
                       note="proposal draw and rbm_sampler_core in one jit, then "
                            "flax_impl.vmc.step (statistics and SR attempt in one compiled "
                            "call, its checks read on the host, jitted optax update)")

    return build


def _jax_fused_iteration(config: NqsConfig, target: Target):
    def build() -> Variant:
        model, variables = flax_model_and_variables(config, target)
        ham = hamiltonian(config.n_sites)
        optimizer = optax.sgd(LEARNING_RATE)
        iteration = fused_vmc.make_iteration(
            model, ham, optimizer, n_chains=config.n_chains,
            samples_per_chain=config.samples_per_chain, n_discard=N_DISCARD,
            diag_shift=DIAG_SHIFT)
        state = _jax_sampler_state(config, target)
        state["params"] = variables["params"]
        state["opt_state"] = optimizer.init(state["params"])

        def run(calls: int) -> None:
            params, opt_state, key, s = (state["params"], state["opt_state"], state["key"],
                                         state["s"])
            for _ in range(calls):
                params, opt_state, key, s, _ = iteration(params, opt_state, key, s)
            state.update(params=params, opt_state=opt_state, key=key, s=s)
            jax.block_until_ready(params)

        compile_s = timed_first_call(run)
        run(1)
        return Variant("jax fused", "jax", run, items_per_call=config.n_samples,
                       compile_s=compile_s,
                       note="benchmarks.fused_vmc: the whole iteration in one donated jit, "
                            "real O, Cholesky SR")

    return build


def _guard(builder, reason: str | None):
    """Return ``builder``, or one that raises ``SkipVariant(reason)`` when ``reason`` is set."""
    if reason is None:
        return builder

    def skip() -> Variant:
        raise SkipVariant(reason)
    return skip


def _limit(config: NqsConfig, what: str, max_params: int) -> str | None:
    """Return why ``what`` is skipped for ``config``, or None when it runs."""
    p, b = config.n_params, config.n_samples
    if p > max_params:
        return (f"{what} with P = {p} parameters is above the {max_params} this harness runs "
                "(its time grows as P^2 to P^3)")
    if b * p * 16 > MAX_JACOBIAN_BYTES:
        return (f"the complex (B, P) = ({b}, {p}) log-derivative matrix would take "
                f"{b * p * 16 / 2**30:.1f} GiB, above the {MAX_JACOBIAN_BYTES / 2**30:.1f} GiB "
                "this harness allows")
    return None


# Every SR variant forms a min(P, R)^2 matrix from a (B, P) O, R = B rows for
# the real RBM here.
MAX_SR_PARAMS = 20_000
# Per-sample gradients keep a complex (B, P) O in both twins.
MAX_JACOBIAN_PARAMS = 20_000
MAX_JACOBIAN_BYTES = 2**29


def stage_builders(config: NqsConfig, target: Target, torch_compile: bool = False):
    """Return ``[(stage, builders, work)]`` for the VMC stages of ``config``.

    ``torch_compile`` adds the torch twin's iteration with ``compile=True``.
    Variants whose cost would exceed the limits above are listed as skipped,
    with the reason.
    """
    sr = _limit(config, "the SR solve", MAX_SR_PARAMS)
    jacobian = _limit(config, "the per-sample gradients", MAX_JACOBIAN_PARAMS)
    iteration = [("jax twin", _guard(_jax_iteration(config, target), sr)),
                 ("jax fused", _guard(_jax_fused_iteration(config, target), sr)),
                 ("torch eager", _guard(_torch_iteration(config, target), sr))]
    if torch_compile:
        iteration.append(("torch compile",
                          _guard(_torch_iteration(config, target, compiled=True), sr)))
    return [
        ("energy+grad", [("jax twin", _guard(_jax_energy_grad(config, target), jacobian)),
                         ("torch eager", _guard(_torch_energy_grad(config, target), jacobian))],
         None),
        ("sr solve", [("jax twin", _guard(_jax_sr_solve(config, target), sr)),
                      ("jax fused", _guard(_jax_fused_sr_solve(config, target), sr)),
                      ("torch eager", _guard(_torch_sr_solve(config, target), sr))],
         sr_work(config)),
        ("vmc iteration", iteration, None),
    ]


def sr_work(config: NqsConfig) -> dict:
    """FLOPs of the SR solve with a real O: forming the smaller Gram matrix and its Cholesky."""
    p, b = config.n_params, config.n_samples
    small = min(p, b)
    return {"flops": 2 * b * p * small + small**3 // 3}


# --- NetKet --------------------------------------------------------------------

def netket_builder(config: NqsConfig, python: str | None, path: str, info: dict):
    """Return a builder for the NetKet peer on ``config``, run by interpreter ``python``.

    The peer's start-up report (versions, parameter count, sampler settings)
    is stored in ``info``.
    """

    def build() -> Variant:
        if python is None:
            raise SkipVariant("NetKet is not installed: create .venv-netket (python3 -m venv "
                              ".venv-netket && .venv-netket/bin/pip install netket) or pass "
                              "--netket-python")
        command = [python, path, "--spins", str(config.n_sites), "--alpha", str(config.alpha),
                   "--chains", str(config.n_chains), "--samples", str(config.n_samples),
                   "--diag-shift", str(DIAG_SHIFT), "--learning-rate", str(LEARNING_RATE)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        except OSError as error:
            raise SkipVariant(f"cannot start the NetKet peer with {python}: {error}") from error
        ready_line = process.stdout.readline()
        if not ready_line:
            stderr = process.stderr.read()[-2000:]
            process.wait(timeout=10)
            raise SkipVariant(f"the NetKet peer exited with status {process.returncode}: {stderr}")
        ready = json.loads(ready_line)
        info.update(ready)

        def run(calls: int) -> float:
            process.stdin.write(json.dumps({"iterations": calls}) + "\n")
            process.stdin.flush()
            reply = json.loads(process.stdout.readline())
            if reply["compiles"]:
                raise RecompileError(f"variant 'netket' recompiled after warm-up "
                                     f"({reply['compiles']} JAX compilations in the peer)")
            return reply["elapsed_s"]

        def close() -> None:
            process.stdin.write("\n")
            process.stdin.flush()
            process.wait(timeout=60)

        note = (f"NetKet {ready['netket']} (JAX {ready['jax']}) in its own process; "
                f"{ready['n_params']} parameters, sweep {ready['sweep_size']}, "
                f"{ready['n_discard_per_chain']} discarded per chain")
        return Variant("netket", "netket", run, items_per_call=config.n_samples,
                       compile_s=ready["first_iteration_s"], note=note, close=close,
                       peak_rss_mb=round(ready["peak_rss_mb"], 1))

    return build


def peer_configs(quick: bool) -> list[NqsConfig]:
    """Return NetKet's comparison configurations: 16 chains, 1008 samples, alpha = 1."""
    sizes = (20,) if quick else (20, 40, 80)
    return [NqsConfig(n, 1, 1008, 16) for n in sizes]


def many_chains_config(quick: bool) -> NqsConfig:
    """Return the N = 20 configuration with 1024 chains (16 samples each; 4 with --quick)."""
    return NqsConfig(20, 1, 1024 * (4 if quick else 16), 1024)


# Limits on (variant time / reference time) that the targets set.
TARGET_LIMITS = {
    ("jax", 20): 0.5,
    ("jax", 80): 0.7,
    ("torch", 20): 1.0,
}
MANY_CHAINS_LIMIT = 1.2


def run_peer_comparison(target: Target, *, quick: bool, rounds: int, block_s: float,
                        torch_compile: bool, netket_python: str | None, on_case=None,
                        log=print) -> tuple[list[CaseResult], list[dict], dict]:
    """Time the whole VMC iteration of both twins and NetKet; return (cases, targets, metadata).

    NetKet runs on the CPU in its own process, whatever ``target`` is; with
    ``--device cuda`` the ratios compare a GPU twin with a CPU NetKet.
    """
    on_case = on_case or (lambda case: None)
    peer_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netket_peer.py")
    cases, targets = [], []
    meta = {"python": netket_python, "device": "cpu"}
    for config in peer_configs(quick):
        info: dict = {}
        builders = [("netket", netket_builder(config, netket_python, peer_path, info))]
        for stage, stage_list, _ in stage_builders(config, target, torch_compile):
            if stage == "vmc iteration":
                builders += stage_list
        params = {"stage": "vmc iteration vs netket", **asdict(config), "dtype": DTYPE}
        case = run_case("netket", f"vmc iteration {config.label()}", params, builders,
                        rounds=rounds, block_s=block_s, reference="netket", log=log)
        cases.append(case)
        on_case(case)
        log(_summary(case))
        meta.setdefault("runs", []).append({"n_sites": config.n_sites, **info})
        for skipped in case.skipped:
            if skipped["name"] == "netket":
                meta["skipped"] = skipped["reason"]
        targets += _peer_targets(case, config)

    config = many_chains_config(quick)
    builders = [stage_list for stage, stage_list, _ in stage_builders(config, target, torch_compile)
                if stage == "vmc iteration"][0]
    params = {"stage": "vmc iteration, many chains", **asdict(config), "dtype": DTYPE}
    case = run_case("netket", f"vmc iteration {config.label()}", params, builders,
                    rounds=rounds, block_s=block_s, reference="jax twin", log=log)
    cases.append(case)
    on_case(case)
    log(_summary(case))
    rows = {row["variant"]: row for row in case.results}
    for variant, reference in (("torch eager", "jax twin"), ("torch compile", "jax twin")):
        if variant in rows and reference in rows:
            ratio = rows[variant]["unit_s"] / rows[reference]["unit_s"]
            targets.append({
                "name": f"{variant} / {reference}, VMC iteration, {config.label()}",
                "measured": ratio, "limit": MANY_CHAINS_LIMIT, "met": ratio <= MANY_CHAINS_LIMIT,
                "detail": _detail(rows[variant], rows[reference])})
    return cases, targets, meta


def _peer_targets(case: CaseResult, config: NqsConfig) -> list[dict]:
    rows = {row["variant"]: row for row in case.results}
    targets = []
    netket = rows.get("netket")
    variants = (("jax twin", "jax"), ("jax fused", "jax"), ("torch eager", "torch"),
                ("torch compile", "torch"))
    for variant, framework in variants:
        limit = TARGET_LIMITS.get((framework, config.n_sites))
        name = f"{variant} / netket, VMC iteration, N={config.n_sites}"
        if netket is None or variant not in rows:
            if limit is not None:
                reason = ("NetKet did not run" if netket is None
                          else f"{variant} did not run: " + next(
                              (s["reason"] for s in case.skipped if s["name"] == variant), "skipped"))
                targets.append({"name": name, "measured": None, "limit": limit, "met": None,
                                "detail": reason})
            continue
        ratio = rows[variant]["unit_s"] / netket["unit_s"]
        targets.append({"name": name, "measured": ratio, "limit": limit,
                        "met": None if limit is None else ratio <= limit,
                        "detail": _detail(rows[variant], netket)})
    return targets


def _detail(row: dict, reference: dict) -> str:
    return (f"{row['variant']} {row['unit_s'] * 1e3:.1f} ms, {reference['variant']} "
            f"{reference['unit_s'] * 1e3:.1f} ms per iteration (medians, same run)")


def _summary(case: CaseResult) -> str:
    parts = [f"{row['variant']} {row['unit_s'] * 1e3:.1f}ms" for row in case.results]
    return f"  {case.case}: " + ", ".join(parts)
