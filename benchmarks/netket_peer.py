"""NetKet's VMC + SR iteration, timed on request, in a process of its own.

Run by the harness with the interpreter of a separate environment that has
NetKet. NetKet turns on JAX float64 when imported and installing it can move
the JAX, Flax and optax versions, so it never shares a process or an
environment with the twins. This file imports only NetKet, JAX, optax and the
standard library.

Protocol, one JSON object per line: after start-up the peer writes
``{"ready": true, ...}`` with its versions, parameter count and the seconds of
its first iteration (tracing and compilation included). Then each request line
``{"iterations": k}`` runs ``k`` iterations, waits for the parameters, and gets
``{"elapsed_s": ..., "compiles": ...}`` back, where ``compiles`` counts JAX
compilations during those iterations. An empty line or end of input stops it.

The configuration is the twins' NQS benchmark: 1D transverse-field Ising chain
H = -J sum Z_i Z_{i+1} - h sum X_i with periodic boundaries, J = h = 1, a real
float64 RBM with alpha hidden units per spin and both biases, local Metropolis
flips with ``n_chains`` chains, ``n_samples`` samples per iteration, NetKet's
default sweep of N flips between samples and 5 discarded samples per chain, and
``VMC_SR`` (SR with ``diag_shift``) followed by plain SGD.
"""

import argparse
import json
import resource
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spins", type=int, required=True, help="chain length N")
    parser.add_argument("--alpha", type=int, default=1, help="hidden units per spin")
    parser.add_argument("--chains", type=int, default=16, help="Metropolis chains")
    parser.add_argument("--samples", type=int, default=1008, help="samples per iteration")
    parser.add_argument("--diag-shift", type=float, default=0.1, help="SR diagonal shift")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="SGD step size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # NetKet prints notes (its automatic SR choices) to stdout; keep stdout for
    # the protocol and send everything else to stderr.
    protocol = sys.stdout
    sys.stdout = sys.stderr

    import jax
    import jax.monitoring
    import netket as nk
    import optax

    compiles = [0]

    def on_event(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)

    graph = nk.graph.Chain(length=args.spins, pbc=True)
    hilbert = nk.hilbert.Spin(s=0.5, N=graph.n_nodes)
    # NetKet's Ising is -h sum X + J sum ZZ, so J = -1 gives the ferromagnetic -ZZ.
    hamiltonian = nk.operator.Ising(hilbert, graph=graph, h=1.0, J=-1.0)
    model = nk.models.RBM(alpha=args.alpha, param_dtype=float)
    sampler = nk.sampler.MetropolisLocal(hilbert, n_chains=args.chains)
    state = nk.vqs.MCState(sampler, model, n_samples=args.samples, seed=args.seed,
                           sampler_seed=args.seed + 1)
    driver = nk.driver.VMC_SR(hamiltonian, optax.sgd(args.learning_rate),
                              diag_shift=args.diag_shift, variational_state=state)

    def iterate(k: int) -> float:
        start = time.perf_counter()
        driver.run(k, out=None, show_progress=False)
        jax.block_until_ready(state.parameters)
        return time.perf_counter() - start

    first_s = iterate(1)
    iterate(2)
    ready = {"ready": True, "netket": nk.__version__, "jax": jax.__version__,
             "n_params": int(state.n_parameters), "n_samples": int(state.n_samples),
             "n_discard_per_chain": int(state.n_discard_per_chain),
             "sweep_size": int(sampler.sweep_size), "first_iteration_s": first_s,
             "x64": bool(jax.config.jax_enable_x64),
             # Linux reports ru_maxrss in KiB.
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(ready), file=protocol, flush=True)

    for line in sys.stdin:
        line = line.strip()
        if not line:
            break
        request = json.loads(line)
        before = compiles[0]
        elapsed = iterate(int(request["iterations"]))
        print(json.dumps({"elapsed_s": elapsed, "compiles": compiles[0] - before}),
              file=protocol, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
