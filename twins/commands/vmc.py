"""``twins vmc``: train the torch and Flax twins of an NQS by VMC and compare with exact energies."""

import math
import os
import sys
import tempfile

from rich.console import Console
from rich.table import Table

from twins.stats import format_value_error
from twins.vmc_trainer import (FRAMEWORKS, OPTIMIZERS, TrainResult, VMCConfig, VMCTrainer,
                               exact_ground_energy)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "vmc", help="train an NQS by variational Monte Carlo with torch, Flax or both",
        description="Train a neural quantum state on a spin chain by VMC and print, per "
                    "framework, the final energy with its error, the exact energy, the "
                    "relative error and the time per iteration.")
    defaults = VMCConfig()
    physics = parser.add_argument_group("system")
    physics.add_argument("--hamiltonian", choices=["ising", "heisenberg"],
                         default=defaults.hamiltonian,
                         help="1D periodic chain: transverse-field Ising -J ZZ - h X, or "
                              "Heisenberg J (XX + YY + ZZ); J = 1 (default: %(default)s)")
    physics.add_argument("--n", type=int, default=defaults.n_sites, dest="n_sites",
                         help="number of spins (default: %(default)s)")
    physics.add_argument("--h", type=float, default=defaults.field,
                         help="Ising transverse field h (default: %(default)s)")
    physics.add_argument("--marshall", action="store_true",
                         help="Heisenberg: rotate by the Marshall sign rule, so that the ground "
                              "state is positive")

    model = parser.add_argument_group("ansatz")
    model.add_argument("--model", choices=["rbm", "ffn"], default=defaults.model,
                       help="rbm: restricted Boltzmann machine; ffn: real-parameter "
                            "feed-forward network with complex output (log amplitude + i phase) "
                            "(default: %(default)s)")
    model.add_argument("--alpha", type=float, default=defaults.alpha,
                       help="hidden units per spin (default: %(default)s)")
    model.add_argument("--complex", action="store_true", dest="complex_params",
                       help="RBM with complex parameters")
    model.add_argument("--dtype", choices=["float64", "float32"], default=defaults.dtype,
                       help="real dtype of parameters and spins (default: %(default)s)")

    training = parser.add_argument_group("training")
    training.add_argument("--framework", choices=[*FRAMEWORKS, "both"], default="both",
                          help="which twin to train (default: %(default)s)")
    training.add_argument("--optimizer", choices=list(OPTIMIZERS), default=defaults.optimizer,
                          help="sgd: theta -= lr * update; adam: torch.optim.Adam and its optax twin "
                               "(default: %(default)s)")
    training.add_argument("--no-sr", action="store_false", dest="sr",
                          help="use the plain energy gradient instead of stochastic "
                               "reconfiguration")
    training.add_argument("--lr", type=float, default=defaults.learning_rate,
                          help="learning rate (default: %(default)s)")
    training.add_argument("--diag-shift", type=float, default=defaults.diag_shift,
                          help="SR diagonal shift eps in (S + eps I) delta = F "
                               "(default: %(default)s)")
    training.add_argument("--iterations", type=int, default=defaults.iterations,
                          help="VMC iterations (default: %(default)s)")
    training.add_argument("--samples", type=int, default=defaults.n_samples, dest="n_samples",
                          help="Monte Carlo samples per iteration, over all chains "
                               "(default: %(default)s)")
    training.add_argument("--chains", type=int, default=defaults.n_chains, dest="n_chains",
                          help="parallel Markov chains (default: %(default)s)")
    training.add_argument("--discard", type=int, default=defaults.n_discard, dest="n_discard",
                          help="burn-in sweeps per chain before each iteration's samples "
                               "(default: %(default)s)")
    training.add_argument("--final-samples", type=int, default=defaults.n_final_samples,
                          dest="n_final_samples",
                          help="samples for the final energy estimate (default: %(default)s)")
    training.add_argument("--estimator", choices=["mc", "exact"], default=defaults.estimator,
                          help="mc: Metropolis samples; exact: sum over all 2^N configurations "
                               "(default: %(default)s)")
    training.add_argument("--seed", type=int, default=defaults.seed,
                          help="seed of the parameters and of the Monte Carlo random numbers "
                               "(default: %(default)s)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="runs/vmc", metavar="DIR",
                        help="directory for the JSON-lines logs and checkpoints "
                             "(default: %(default)s)")
    output.add_argument("--checkpoint-every", type=int, default=50, metavar="K",
                        help="write a checkpoint every K iterations and at the end "
                             "(default: %(default)s)")
    output.add_argument("--resume", action="store_true",
                        help="continue from the checkpoints in --out")
    output.add_argument("--plot", metavar="PATH",
                        help="save the energy curves and the exact energy as a PNG")
    output.add_argument("--torch-threads", type=int, metavar="T",
                        help="torch.set_num_threads(T) for the torch twin (default: torch's "
                             "choice). On a machine that other processes keep busy, 1 avoids "
                             "OpenMP threads waiting on each other in the SR eigensolver")
    output.add_argument("--no-progress", action="store_false", dest="progress",
                        help="do not draw the progress bar")
    return parser


def config_from_args(args) -> VMCConfig:
    """Return the ``VMCConfig`` that the parsed ``args`` describe."""
    return VMCConfig(
        hamiltonian=args.hamiltonian, n_sites=args.n_sites, field=args.h,
        marshall=args.marshall, model=args.model, alpha=args.alpha,
        complex_params=args.complex_params, dtype=args.dtype, optimizer=args.optimizer,
        sr=args.sr, learning_rate=args.lr, diag_shift=args.diag_shift,
        iterations=args.iterations, n_samples=args.n_samples, n_chains=args.n_chains,
        n_discard=args.n_discard, n_final_samples=args.n_final_samples,
        estimator=args.estimator, seed=args.seed)


def summary_table(results: list[TrainResult], exact: float | None) -> Table:
    """Return the final energy, exact energy, relative error and timing, one column per framework.

    Quantities are rows, so the table fits an 80-column terminal.
    """
    table = Table("", *(result.framework for result in results), title="VMC results")
    rows = {"final energy": [], "exact energy": [], "relative error": [], "variance": [],
            "R-hat": [], "acceptance": [], "time / iteration": [], "status": []}
    for result in results:
        final = result.final
        energy = final.mean.real if isinstance(final.mean, complex) else final.mean
        rows["final energy"].append(format_value_error(energy, final.error_of_mean))
        rows["exact energy"].append("n/a" if exact is None else f"{exact:.10f}")
        rows["relative error"].append(
            "n/a" if exact is None else f"{abs(energy - exact) / abs(exact):.2e}")
        rows["variance"].append(f"{final.variance:.3e}")
        rows["R-hat"].append("undefined" if final.r_hat is None else f"{final.r_hat:.4f}")
        rows["acceptance"].append(
            "n/a" if result.final_acceptance is None else f"{result.final_acceptance:.3f}")
        rows["time / iteration"].append(_format_milliseconds(result.seconds_per_iteration))
        rows["status"].append(result.status)
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def _format_milliseconds(seconds: float) -> str:
    # A resumed run that had nothing left to do timed no iteration.
    return f"{1e3 * seconds:.1f} ms" if math.isfinite(seconds) else "n/a"


def save_plot(path: str, results: list[TrainResult], exact: float | None, title: str) -> None:
    """Save the energy of every iteration (with its error band) and the exact line as a PNG.

    The lower panel shows the relative error on a log scale when the exact
    energy is known. The file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n_panels = 2 if exact is not None else 1
    figure, axes = plt.subplots(n_panels, 1, figsize=(7, 3.2 * n_panels), sharex=True,
                                squeeze=False)
    top = axes[0, 0]
    for result in results:
        iterations = [record["iteration"] for record in result.history]
        energies = [record["energy"] for record in result.history]
        errors = [record["error_of_mean"] for record in result.history]
        # Twins with one seed overlap; the dashed second line keeps both visible.
        style = "-" if result.framework == "torch" else "--"
        line, = top.plot(iterations, energies, style, label=result.framework, linewidth=1)
        top.fill_between(iterations, [e - d for e, d in zip(energies, errors)],
                         [e + d for e, d in zip(energies, errors)], alpha=0.25,
                         color=line.get_color(), linewidth=0)
        if exact is not None:
            relative = [abs(e - exact) / abs(exact) for e in energies]
            axes[1, 0].semilogy(iterations, relative, style, label=result.framework,
                                linewidth=1, color=line.get_color())
    if exact is not None:
        top.axhline(exact, color="black", linestyle="--", linewidth=1, label=f"exact {exact:.6f}")
        axes[1, 0].set_ylabel("|E - E0| / |E0|")
    top.set_ylabel("energy")
    # The description is long: the system on the first line, the method on the second.
    top.set_title(title.replace("; ", "\n", 1), fontsize=10)
    top.legend()
    axes[-1, 0].set_xlabel("iteration")
    figure.tight_layout()

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".", suffix=".png", delete=False)
    handle.close()
    try:
        figure.savefig(handle.name, dpi=120)
        os.replace(handle.name, path)
    finally:
        plt.close(figure)
        if os.path.exists(handle.name):
            os.remove(handle.name)


def run(args) -> int:
    # A pipe or a capture has no width; the progress line needs about 120 columns.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        config = config_from_args(args)
        config.validate()
    except ValueError as error:
        Console(stderr=True).print(f"error: {error}")
        return 2
    frameworks = list(FRAMEWORKS) if args.framework == "both" else [args.framework]
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            Console(stderr=True).print(f"error: --torch-threads must be at least 1, got "
                                       f"{args.torch_threads}")
            return 2
        import torch

        torch.set_num_threads(args.torch_threads)
    exact = exact_ground_energy(config)
    console.print(f"{config.describe()}; exact ground energy: "
                  f"{'not available' if exact is None else f'{exact:.10f}'}")

    os.makedirs(args.out, exist_ok=True)
    results = []
    for framework in frameworks:
        trainer = VMCTrainer(config, framework, out_dir=args.out, console=console,
                             checkpoint_every=args.checkpoint_every)
        results.append(trainer.run(resume=args.resume, progress=args.progress))
        if results[-1].message:
            console.print(results[-1].message)

    console.print(summary_table(results, exact))
    if args.plot:
        save_plot(args.plot, results, exact, config.describe())
        console.print(f"energy curves saved to {args.plot}")
    return 1 if any(result.status != "finished" for result in results) else 0
