"""VMC training of either twin, with progress, a JSON-lines log and resumable checkpoints.

One ``VMCTrainer`` trains one framework's ansatz. The parts that must agree
between the twins live outside the frameworks, here:

* Random numbers: every iteration draws its Metropolis proposal sites and
  uniforms from one ``numpy.random.Generator``, so the torch and Flax trainers
  with the same seed run the same chains (the samplers' shared-randomness mode).
* Initial parameters: the torch model is initialised (``torch.manual_seed``)
  and the Flax variables are converted from it by ``twins.convert``, so both
  twins start at the same point.

An iteration samples ``n_samples`` configurations from ``n_chains`` chains,
after ``n_discard`` burn-in sweeps per chain. The chains continue from the
previous iteration. It then computes E_loc, reports its statistics
(``twins.stats``) and applies one optimizer step. The reported energy is that of the parameters
before the step, as NetKet reports it.

A collapsed state, every chain stuck (acceptance 0), stops the run with a
message. Usually all chains sit on one classical configuration (E_loc
variance 0, R-hat undefined): its gradient vanishes, so training cannot
leave it.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

from twins import hamiltonians, lattice
from twins.atomic import write_atomically
from twins.stats import Stats, format_value_error, statistics

FRAMEWORKS = ("torch", "flax")
OPTIMIZERS = ("sgd", "adam")
CHECKPOINT_FORMAT = "nqs-twins-vmc-checkpoint/1"
# Exact ground energies by Lanczos are computed up to this many spins: the
# sparse matrix at N = 20 has about 2^20 * 21 entries, a few hundred MB.
MAX_EXACT_SITES = 20


@dataclass(frozen=True)
class VMCConfig:
    """Everything that defines a VMC run; checkpoints store it to refuse a mismatched resume.

    ``n_samples`` is the total per iteration; each chain records
    ``ceil(n_samples / n_chains)`` samples, one per sweep of ``n_sites``
    proposals. ``estimator="exact"`` sums over all 2^N configurations instead
    of sampling (no chains; errors are 0 and R-hat undefined).
    """

    hamiltonian: str = "ising"
    n_sites: int = 16
    field: float = 1.0
    marshall: bool = False
    model: str = "rbm"
    alpha: float = 1.0
    complex_params: bool = False
    dtype: str = "float64"
    optimizer: str = "sgd"
    sr: bool = True
    learning_rate: float = 0.05
    diag_shift: float = 0.01
    iterations: int = 150
    n_samples: int = 1008
    n_chains: int = 16
    n_discard: int = 5
    n_final_samples: int = 8064
    estimator: str = "mc"
    seed: int = 0

    @property
    def samples_per_chain(self) -> int:
        return math.ceil(self.n_samples / self.n_chains)

    @property
    def final_samples_per_chain(self) -> int:
        return math.ceil(self.n_final_samples / self.n_chains)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid option and its valid range."""
        choices = {"hamiltonian": ("ising", "heisenberg"), "model": ("rbm", "ffn"),
                   "dtype": ("float64", "float32"), "optimizer": OPTIMIZERS,
                   "estimator": ("mc", "exact")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        positive = ("n_sites", "iterations", "n_samples", "n_chains", "n_final_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_sites < 2:
            raise ValueError(f"n_sites must be at least 2 for a chain with bonds, "
                             f"got {self.n_sites}")
        if self.n_discard < 0:
            raise ValueError(f"n_discard must be >= 0, got {self.n_discard}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")
        if self.sr and not self.diag_shift > 0:
            raise ValueError(f"SR needs a positive diagonal shift, got {self.diag_shift}; "
                             f"S has rank at most n_samples - 1, so try 0.01")
        if self.estimator == "exact":
            from torch_impl.vmc import MAX_EXACT_SITES as max_exact

            if self.n_sites > max_exact:
                raise ValueError(f"the exact estimator sums over all 2^N configurations and "
                                 f"is limited to N <= {max_exact}, got n_sites={self.n_sites}; "
                                 f"use --estimator mc")
        if self.model == "ffn" and self.complex_params:
            raise ValueError("the FFN ansatz has real parameters and a complex output; "
                             "drop --complex or use --model rbm")
        if self.hamiltonian == "heisenberg" and self.marshall and self.n_sites % 2:
            raise ValueError(f"the Marshall sign rule needs an even periodic chain, got "
                             f"n_sites={self.n_sites}")

    def describe(self) -> str:
        """Return a one-line description of the system, ansatz and optimizer."""
        if self.hamiltonian == "ising":
            system = f"1D Ising chain N={self.n_sites}, h={self.field:g}"
        else:
            system = (f"1D Heisenberg chain N={self.n_sites}"
                      f"{' (Marshall rule)' if self.marshall else ''}")
        kind = "complex " if self.complex_params else ""
        optimizer = self.optimizer.upper() + (" + SR" if self.sr else "")
        return (f"{system}; {kind}{self.model.upper()} alpha={self.alpha:g}; {optimizer}, "
                f"lr={self.learning_rate:g}; {self.estimator} estimator")


def build_hamiltonian(config: VMCConfig):
    """Return the Hamiltonian of ``config`` on a periodic 1D chain with J = 1."""
    chain = lattice.chain(config.n_sites, pbc=True)
    if config.hamiltonian == "ising":
        return hamiltonians.TransverseFieldIsing(chain, J=1.0, h=config.field)
    return hamiltonians.Heisenberg(chain, J=1.0, marshall=config.marshall)


def exact_ground_energy(config: VMCConfig) -> float | None:
    """Return the exact ground energy, or None when it is out of reach.

    The periodic Ising chain has the closed form for any N; Heisenberg uses
    Lanczos up to ``MAX_EXACT_SITES`` spins.
    """
    if config.hamiltonian == "ising":
        return hamiltonians.ising_chain_ground_energy(config.n_sites, J=1.0, h=config.field)
    if config.n_sites > MAX_EXACT_SITES:
        return None
    return build_hamiltonian(config).ground_energy()


@dataclass
class TrainResult:
    """The outcome of ``VMCTrainer.run``.

    ``history`` contains one JSON-ready record per iteration (the log lines).
    ``final`` is the statistics of the final estimate with ``n_final_samples``
    samples (or the last iteration's, for a collapsed state). ``status`` is
    "finished" or "collapsed"; ``message`` explains a collapse.
    ``seconds_per_iteration`` is the mean wall time of the iterations this
    call ran, without the first one (compilation) when it ran more than one.
    """

    framework: str
    history: list[dict]
    final: Stats
    final_acceptance: float | None
    seconds_per_iteration: float
    status: str
    message: str = ""
    parameters: dict = field(default_factory=dict, repr=False)


def collapse_message(stats: Stats, acceptance: float | None, framework: str,
                     iteration: int, checkpoint_iteration: int | None = None) -> str:
    """Explain a collapsed state in words, with the numbers that show it.

    ``checkpoint_iteration`` is the iteration of the last checkpoint, which
    the trainer keeps from before the collapse; None when there is none.
    """
    energy = stats.mean.real if isinstance(stats.mean, complex) else stats.mean
    if stats.collapsed:
        where = ("every Markov chain is stuck on one configuration (acceptance "
                 f"{acceptance:.3f}, energy variance 0, R-hat undefined). E = {energy:.6f} is "
                 f"the energy of that single configuration, not a variational estimate, and "
                 f"the gradient vanishes there")
    else:
        r_hat = "undefined" if stats.r_hat is None else f"{stats.r_hat:.3f}"
        where = (f"every Markov chain is stuck, each on its own configuration (acceptance "
                 f"{acceptance:.3f}, energy variance {stats.variance:.3g} between chains, "
                 f"R-hat {r_hat}). The samples no longer follow |psi|^2, so E = {energy:.6f} "
                 f"and the gradient are not estimates of anything")
    if checkpoint_iteration is None:
        restart = "then restart"
    else:
        restart = (f"then restart, or resume from the checkpoint of iteration "
                   f"{checkpoint_iteration} (written before the collapse)")
    return (f"{framework}: collapsed at iteration {iteration}: {where}. Lower the learning "
            f"rate or raise the SR diagonal shift, {restart}.")


def is_collapsed(stats: Stats, acceptance: float | None) -> bool:
    """True when every chain rejected every proposal of the iteration (acceptance 0).

    Usually all chains then sit on one configuration (``stats.collapsed``,
    variance 0). Chains frozen on different configurations count too: their
    samples no longer follow |psi|^2 either.
    """
    return acceptance == 0.0


def _steady_mean(seconds: list[float]) -> float:
    """Return the mean time per iteration, leaving out the first when there are more.

    The first iteration includes JAX's compilation (and torch's first-call
    set-up), which would dominate short runs.
    """
    if not seconds:
        return float("nan")
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))


def _json_ready(value):
    """Return ``value`` with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class VMCTrainer:
    """Train one framework's ansatz by VMC; see the module docstring for an iteration.

    Args:
        config: the run's ``VMCConfig``.
        framework: "torch" or "flax".
        out_dir: directory for ``{framework}.jsonl`` (one JSON record per
            iteration) and ``{framework}.ckpt.safetensors``; None writes nothing.
        console: where the progress bar and messages go.
        checkpoint_every: write a checkpoint every this many iterations (and at
            the end); 0 writes only the final one.
    """

    def __init__(self, config: VMCConfig, framework: str, out_dir: str | None = None,
                 console: Console | None = None, checkpoint_every: int = 50):
        config.validate()
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework={framework!r} is not one of {FRAMEWORKS}")
        self.config = config
        self.framework = framework
        self.console = console or Console()
        self.checkpoint_every = checkpoint_every
        self.log_path = self.checkpoint_path = None
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            self.log_path = os.path.join(out_dir, f"{framework}.jsonl")
            self.checkpoint_path = os.path.join(out_dir, f"{framework}.ckpt.safetensors")

        self.hamiltonian = build_hamiltonian(config)
        self.backend = _make_backend(framework, config, self.hamiltonian)
        self.rng = np.random.default_rng(config.seed)
        self.chains = np.where(self.rng.random((config.n_chains, config.n_sites)) < 0.5,
                               -1.0, 1.0)
        self.iteration = 0
        self.history: list[dict] = []
        self.checkpoint_iteration: int | None = None

    # --- one iteration --------------------------------------------------------

    def _draw_proposals(self, n_samples: int):
        n_sweeps = self.config.n_discard + n_samples
        shape = (n_sweeps, self.config.n_sites, self.config.n_chains)
        sites = self.rng.integers(0, self.config.n_sites, size=shape)
        uniforms = self.rng.random(size=shape)
        return sites, uniforms

    def _sample(self, samples_per_chain: int):
        """Advance the chains; return samples (n_chains, S, N) and the acceptance."""
        sites, uniforms = self._draw_proposals(samples_per_chain)
        samples, acceptance, self.chains = self.backend.sample(
            self.chains, sites, uniforms, self.config.n_discard, samples_per_chain)
        return samples, acceptance

    def step(self) -> tuple[Stats, float | None]:
        """Estimate the energy, apply one optimizer step; return (E_loc stats, acceptance)."""
        if self.config.estimator == "exact":
            stats = self.backend.exact_step()
            return stats, None
        samples, acceptance = self._sample(self.config.samples_per_chain)
        n_chains, per_chain, n_sites = samples.shape
        e_loc = self.backend.step(samples.reshape(n_chains * per_chain, n_sites))
        return statistics(e_loc.reshape(n_chains, per_chain)), acceptance

    def estimate(self) -> tuple[Stats, float | None]:
        """Estimate the energy with ``n_final_samples`` samples, without a step."""
        if self.config.estimator == "exact":
            return self.backend.exact_energy(), None
        samples, acceptance = self._sample(self.config.final_samples_per_chain)
        n_chains, per_chain, n_sites = samples.shape
        e_loc = self.backend.local_energy(samples.reshape(n_chains * per_chain, n_sites))
        return statistics(e_loc.reshape(n_chains, per_chain)), acceptance

    # --- the loop ---------------------------------------------------------------

    def run(self, resume: bool = False, progress: bool = True) -> TrainResult:
        """Train until ``config.iterations``; with ``resume``, continue from the checkpoint."""
        if resume:
            self.load_checkpoint()
        self._truncate_log()
        status, message = "finished", ""
        seconds = []
        last_stats = last_acceptance = None
        with self._progress(progress) as bar:
            task = bar.add_task(self.framework, total=self.config.iterations,
                                completed=self.iteration, stats="")
            while self.iteration < self.config.iterations:
                start = time.perf_counter()
                last_stats, last_acceptance = self.step()
                seconds.append(time.perf_counter() - start)
                record = self._record(last_stats, last_acceptance, seconds[-1])
                self.history.append(record)
                self._append_log(record)
                self.iteration += 1
                bar.update(task, advance=1, stats=self._progress_text(last_stats,
                                                                      last_acceptance))
                if is_collapsed(last_stats, last_acceptance):
                    status = "collapsed"
                    message = collapse_message(last_stats, last_acceptance, self.framework,
                                               self.iteration - 1,
                                               self.checkpoint_iteration)
                    break
                if self.checkpoint_every and self.iteration % self.checkpoint_every == 0:
                    self.save_checkpoint()
        # A collapsed state is not saved: the last checkpoint stays the one
        # to resume from.
        if status != "collapsed":
            self.save_checkpoint()

        if status == "collapsed":
            final, final_acceptance = last_stats, last_acceptance
        else:
            final, final_acceptance = self.estimate()
        return TrainResult(
            framework=self.framework, history=self.history, final=final,
            final_acceptance=final_acceptance,
            seconds_per_iteration=_steady_mean(seconds),
            status=status, message=message, parameters=self.backend.parameters())

    def _record(self, stats: Stats, acceptance: float | None, seconds: float) -> dict:
        record = {"iteration": self.iteration, "framework": self.framework,
                  "energy": stats.mean.real if isinstance(stats.mean, complex) else stats.mean,
                  "energy_imag": stats.mean.imag if isinstance(stats.mean, complex) else 0.0,
                  "error_of_mean": stats.error_of_mean, "variance": stats.variance,
                  "r_hat": stats.r_hat, "tau_corr": stats.tau_corr, "acceptance": acceptance,
                  "seconds": seconds}
        if stats.undefined_reason:
            record["undefined"] = stats.undefined_reason
        return _json_ready(record)

    @staticmethod
    def _progress_text(stats: Stats, acceptance: float | None) -> str:
        energy = stats.mean.real if isinstance(stats.mean, complex) else stats.mean
        r_hat = "undefined" if stats.r_hat is None else f"{stats.r_hat:.3f}"
        accept = "n/a" if acceptance is None else f"{acceptance:.2f}"
        return (f"E {format_value_error(energy, stats.error_of_mean)} | var {stats.variance:.2e} "
                f"| R-hat {r_hat} | acc {accept}")

    def _progress(self, enabled: bool) -> Progress:
        # The statistics come before the times so that an 80-column terminal
        # cuts the times, not the energy.
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=10),
                        MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                        disable=not enabled)

    # --- log and checkpoints ------------------------------------------------------

    def _append_log(self, record: dict) -> None:
        if self.log_path is None:
            return
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _truncate_log(self) -> None:
        """Rewrite the log with only the records before ``self.iteration``.

        After a resume, records written after the checkpoint belong to the
        interrupted run and would be repeated; a fresh run starts an empty log.
        """
        if self.log_path is None:
            return
        lines = [json.dumps(record) + "\n" for record in self.history]
        write_atomically(self.log_path, "".join(lines).encode("utf-8"))

    def save_checkpoint(self) -> None:
        """Write parameters, optimizer state, chains and RNG state atomically."""
        if self.checkpoint_path is None:
            return
        tensors, metadata = self.backend.state()
        # np.array keeps 0-d arrays (optimizer step counts) 0-d, where
        # np.ascontiguousarray would make them 1-d.
        tensors = {key: np.array(value, order="C") for key, value in tensors.items()}
        tensors["sampler/chains"] = np.array(self.chains, order="C")
        complex_keys = [key for key, value in tensors.items() if np.iscomplexobj(value)]
        for key in complex_keys:
            tensors[key] = np.stack([tensors[key].real, tensors[key].imag], axis=-1)
        header = {
            "format": CHECKPOINT_FORMAT, "framework": self.framework,
            "config": json.dumps(asdict(self.config)), "iteration": str(self.iteration),
            # PCG64's state contains 128-bit integers, which JSON keeps exactly.
            "rng": json.dumps(self.rng.bit_generator.state),
            "history": json.dumps(self.history), "complex": json.dumps(complex_keys),
            "backend": json.dumps(metadata),
        }
        write_atomically(self.checkpoint_path, safetensors_bytes(tensors, metadata=header))
        self.checkpoint_iteration = self.iteration

    def load_checkpoint(self) -> None:
        """Restore the state written by ``save_checkpoint``; the config must match."""
        if self.checkpoint_path is None or not os.path.exists(self.checkpoint_path):
            raise FileNotFoundError(
                f"no checkpoint to resume from at {self.checkpoint_path}; run without "
                f"--resume first, or point --out at the directory of an earlier run")
        with safe_open(self.checkpoint_path, framework="numpy") as reader:
            header = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}

        if header.get("format") != CHECKPOINT_FORMAT or header.get("framework") != self.framework:
            raise ValueError(
                f"{self.checkpoint_path} is not a {self.framework} VMC checkpoint "
                f"(format={header.get('format')!r}, framework={header.get('framework')!r})")
        saved = json.loads(header["config"])
        current = asdict(self.config)
        # More iterations is the usual reason to resume; everything else must match.
        changed = [key for key in current if key != "iterations" and saved.get(key) != current[key]]
        if changed:
            key = changed[0]
            raise ValueError(
                f"checkpoint {self.checkpoint_path} was written with {key}={saved.get(key)!r}, "
                f"but this run has {key}={current[key]!r}; resume with the same settings "
                f"(only --iterations may change) or use another --out directory")

        for key in json.loads(header["complex"]):
            pair = tensors[key]
            tensors[key] = pair[..., 0] + 1j * pair[..., 1]
        self.chains = tensors.pop("sampler/chains")
        self.rng.bit_generator.state = json.loads(header["rng"])
        self.iteration = self.checkpoint_iteration = int(header["iteration"])
        self.history = json.loads(header["history"])
        self.backend.load_state(tensors, json.loads(header["backend"]))


# --- framework backends ---------------------------------------------------------------
#
# A backend owns one framework's model, optimizer and sampler calls and speaks
# numpy to the trainer: configurations (n_chains, n_sites) float64 in and out.


def _diag_shift(config: VMCConfig) -> float | None:
    return config.diag_shift if config.sr else None


def _exact_stats(result, n_sites: int) -> Stats:
    """Return an exact estimate as ``Stats``: no sampling error, no chains."""
    return Stats(mean=float(result.energy), error_of_mean=0.0, variance=float(result.variance),
                 r_hat=None, tau_corr=None, n_chains=0, n_samples=2**n_sites,
                 undefined_reason="exact sum over all configurations: no Markov chains")


def _make_backend(framework: str, config: VMCConfig, hamiltonian):
    if framework == "torch":
        return _TorchBackend(config, hamiltonian)
    return _FlaxBackend(config, hamiltonian)


def _torch_model(config: VMCConfig):
    """Return the torch ansatz of ``config``, initialised under ``torch.manual_seed(seed)``."""
    import torch

    from torch_impl import ansatz

    torch.manual_seed(config.seed)
    real = {"float64": torch.float64, "float32": torch.float32}[config.dtype]
    if config.model == "ffn":
        return ansatz.FFN(config.n_sites, alpha=config.alpha, dtype=real)
    dtype = {torch.float64: torch.complex128, torch.float32: torch.complex64}[real]
    return ansatz.RBM(config.n_sites, alpha=config.alpha,
                      dtype=dtype if config.complex_params else real)


class _TorchBackend:
    def __init__(self, config: VMCConfig, hamiltonian):
        import torch

        from torch_impl import local_energy, sampler, vmc

        self.torch, self.sampler, self.vmc = torch, sampler, vmc
        self.local_energy_module = local_energy
        self.config, self.hamiltonian = config, hamiltonian
        self.model = _torch_model(config)
        self.real_dtype = {"float64": torch.float64, "float32": torch.float32}[config.dtype]
        parameters = list(self.model.parameters())
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
        else:
            self.optimizer = torch.optim.SGD(parameters, lr=config.learning_rate)

    def parameters(self) -> dict:
        return {key: value.detach().cpu().numpy().copy()
                for key, value in self.model.state_dict().items()}

    def sample(self, chains, sites, uniforms, n_discard, n_samples):
        s = self.torch.as_tensor(chains, dtype=self.real_dtype)
        if self.config.model == "rbm":
            run = self.sampler.sample_rbm(*self.sampler.rbm_arrays(self.model), s, sites,
                                          uniforms, n_discard, n_samples)
        else:
            run = self.sampler.sample(self.model.log_psi, s, sites, uniforms, n_discard,
                                      n_samples)
        return (run.samples.numpy().astype(np.float64), run.acceptance,
                run.last.numpy().astype(np.float64))

    def _e_loc(self, s):
        return self.local_energy_module.model_local_energy(self.model, self.hamiltonian, s)

    def local_energy(self, samples) -> np.ndarray:
        s = self.torch.as_tensor(samples, dtype=self.real_dtype)
        return self._e_loc(s).numpy()

    def step(self, samples) -> np.ndarray:
        s = self.torch.as_tensor(samples, dtype=self.real_dtype)
        result = self.vmc.step(self.model, self.optimizer, self.hamiltonian, s,
                               diag_shift=_diag_shift(self.config))
        return result.e_loc.detach().numpy()

    def exact_step(self) -> Stats:
        result = self.vmc.step(self.model, self.optimizer, self.hamiltonian, None,
                               diag_shift=_diag_shift(self.config))
        return _exact_stats(result, self.config.n_sites)

    def exact_energy(self) -> Stats:
        return _exact_stats(self.vmc.exact_estimate(self.model, self.hamiltonian),
                            self.config.n_sites)

    def state(self):
        tensors = {f"params/{key}": value for key, value in self.parameters().items()}
        optimizer_state = self.optimizer.state_dict()
        for index, entries in optimizer_state["state"].items():
            for name, value in entries.items():
                tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().numpy().copy()
        return tensors, {"param_groups": optimizer_state["param_groups"]}

    def load_state(self, tensors, metadata):
        torch = self.torch
        template = self.model.state_dict()
        state_dict = {key.removeprefix("params/"): torch.as_tensor(value, dtype=template[
            key.removeprefix("params/")].dtype) for key, value in tensors.items()
            if key.startswith("params/")}
        self.model.load_state_dict(state_dict, strict=True)
        state = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/")
                tensor = torch.as_tensor(value)
                state.setdefault(int(index), {})[name] = tensor
        self.optimizer.load_state_dict({"state": state,
                                        "param_groups": metadata["param_groups"]})


class _FlaxBackend:
    def __init__(self, config: VMCConfig, hamiltonian):
        import jax
        import jax.numpy as jnp

        from flax_impl import ansatz, local_energy, sampler, vmc
        from twins.convert import state_dict_to_variables
        from twins.optim_map import torch_to_optax

        self.jax, self.jnp, self.sampler, self.vmc = jax, jnp, sampler, vmc
        self.config, self.hamiltonian = config, hamiltonian
        self.real_dtype = {"float64": jnp.float64, "float32": jnp.float32}[config.dtype]
        if config.model == "ffn":
            self.model = ansatz.FFN(n_sites=config.n_sites, alpha=config.alpha,
                                    param_dtype=self.real_dtype)
        else:
            complex_dtype = {jnp.float64: jnp.complex128, jnp.float32: jnp.complex64}
            self.model = ansatz.RBM(alpha=config.alpha, param_dtype=(
                complex_dtype[self.real_dtype] if config.complex_params else self.real_dtype))
        # The same starting point as the torch twin: its init, converted by rule.
        template = jax.eval_shape(self.model.init, jax.random.key(0),
                                  jnp.ones((1, config.n_sites), self.real_dtype))
        converted = state_dict_to_variables(_torch_model(config).state_dict(), template)
        self.variables = jax.tree_util.tree_map(jnp.asarray, converted)
        # The optax twin of torch.optim.SGD / Adam from the optimizer layer. The
        # VMC direction already follows torch's complex convention, so it is not
        # conjugated. Adam keeps one moment per real component, as torch does.
        self.optimizer = torch_to_optax("Adam" if config.optimizer == "adam" else "SGD",
                                        lr=config.learning_rate,
                                        conjugate_complex_grads=False)
        self.opt_state = self.optimizer.init(self.variables["params"])
        # One jitted local energy, reused every iteration (a new closure would
        # compile again).
        self._e_loc = jax.jit(lambda variables, s: local_energy.model_local_energy(
            self.model, variables["params"], hamiltonian, s))

    def parameters(self) -> dict:
        from twins.convert import variables_to_state_dict

        return {key: np.asarray(value) for key, value in
                variables_to_state_dict(self.variables).items()}

    def sample(self, chains, sites, uniforms, n_discard, n_samples):
        s = self.jnp.asarray(chains, dtype=self.real_dtype)
        if self.config.model == "rbm":
            run = self.sampler.sample_rbm(*self.sampler.rbm_arrays(self.variables), s, sites,
                                          uniforms, n_discard, n_samples)
        else:
            run = self.sampler.sample(self.model.apply, self.variables, s, sites, uniforms,
                                      n_discard, n_samples)
        return (np.asarray(run.samples, dtype=np.float64), float(run.acceptance),
                np.asarray(run.last, dtype=np.float64))

    def local_energy(self, samples) -> np.ndarray:
        s = self.jnp.asarray(samples, dtype=self.real_dtype)
        return np.asarray(self._e_loc(self.variables, s))

    def _step(self, s) -> object:
        params, self.opt_state, result = self.vmc.step(
            self.model, self.optimizer, self.variables["params"], self.opt_state,
            self.hamiltonian, s, diag_shift=_diag_shift(self.config))
        self.variables = {**self.variables, "params": params}
        return result

    def step(self, samples) -> np.ndarray:
        s = self.jnp.asarray(samples, dtype=self.real_dtype)
        return np.asarray(self._step(s).e_loc)

    def exact_step(self) -> Stats:
        return _exact_stats(self._step(None), self.config.n_sites)

    def exact_energy(self) -> Stats:
        result = self.vmc.exact_estimate(self.model, self.variables["params"], self.hamiltonian)
        return _exact_stats(result, self.config.n_sites)

    def state(self):
        from flax import serialization, traverse_util

        tensors = {f"params/{key}": value for key, value in self.parameters().items()}
        flat = traverse_util.flatten_dict(serialization.to_state_dict(self.opt_state), sep="/")
        for key, value in flat.items():
            tensors[f"optimizer/{key}"] = np.asarray(value)
        return tensors, {}

    def load_state(self, tensors, metadata):
        from flax import serialization, traverse_util

        from twins.convert import state_dict_to_variables

        params = {key.removeprefix("params/"): value for key, value in tensors.items()
                  if key.startswith("params/")}
        converted = state_dict_to_variables(params, self.variables)
        self.variables = self.jax.tree_util.tree_map(self.jnp.asarray, converted)

        saved = {key.removeprefix("optimizer/"): value for key, value in tensors.items()
                 if key.startswith("optimizer/")}
        # Empty sub-states (optax.EmptyState) have no arrays in the file but must
        # stay in the tree, so the template keeps them as empty nodes.
        template = traverse_util.flatten_dict(serialization.to_state_dict(self.opt_state),
                                              keep_empty_nodes=True, sep="/")
        expected = {key for key, value in template.items()
                    if value is not traverse_util.empty_node}
        if set(saved) != expected:
            differing = sorted(expected ^ set(saved))
            raise ValueError(f"the checkpoint's optimizer state does not match this optimizer "
                             f"(first differing entry: {differing[0]!r}); resume with the same "
                             f"--optimizer")
        restored = traverse_util.unflatten_dict({**template, **saved}, sep="/")
        self.opt_state = serialization.from_state_dict(self.opt_state, restored)
