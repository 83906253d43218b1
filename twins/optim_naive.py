"""Errors of naive optax ports of each torch optimizer, measured on the toy problem.

Toy problem: w0 = [0.5, -1.0], L(w) = 0.5 sum(s (w - t)^2) with s = [1, 3],
t = [1, 2], float64, gradients from autograd (torch) and ``jax.grad`` (JAX).
Each ``NaivePort`` pairs a torch configuration with the optax call a reader
would write first. ``measure`` runs torch, the ``twins.optim_map`` twin and the
naive port. ``python -m twins.optim_naive`` prints the table that
docs/optimizers.md quotes.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from twins.optim.config import OptimizerConfig, optimizer_config
from twins.optim_map import build_transformation
from twins.optim_torch import make_torch_optimizer

TOY_W0 = (0.5, -1.0)
TOY_SCALE = (1.0, 3.0)
TOY_TARGET = (1.0, 2.0)
COMPLEX_Z0 = 3.0 + 4.0j


def toy_loss(w):
    """L(w) = 0.5 sum(s (w - t)^2); works on a torch tensor and on a JAX array."""
    s = TOY_SCALE[0], TOY_SCALE[1]
    return 0.5 * (s[0] * (w[0] - TOY_TARGET[0]) ** 2 + s[1] * (w[1] - TOY_TARGET[1]) ** 2)


def zero_loss(w):
    """0 * sum(w): a zero gradient, so only weight decay moves the parameters."""
    return 0.0 * (w[0] + w[1])


def complex_loss(z):
    """|z|^2 of a complex scalar, as a real number (torch and JAX)."""
    return z.real ** 2 + z.imag ** 2


PROBLEMS = {
    "toy": (toy_loss, np.array(TOY_W0)),
    "zero": (zero_loss, np.array(TOY_W0)),
    "complex": (complex_loss, np.array(COMPLEX_Z0)),
}


def run_optax(transformation: optax.GradientTransformation, problem: str = "toy",
              steps: int = 3) -> np.ndarray:
    """Return the parameters after ``steps`` updates of ``transformation`` on ``problem``.

    The gradient is ``jax.grad`` of the loss, so a complex parameter gets the
    conjugate of torch's ``.grad``.
    """
    loss, w0 = PROBLEMS[problem]
    params = {"w": jnp.asarray(w0)}
    state = transformation.init(params)
    grad_fn = jax.grad(lambda p: loss(p["w"]))
    for _ in range(steps):
        updates, state = transformation.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["w"])


def run_torch(config: OptimizerConfig, problem: str = "toy", steps: int = 3) -> np.ndarray:
    """Return the parameters after ``steps`` torch steps of ``config`` on ``problem``."""
    loss, w0 = PROBLEMS[problem]
    w = torch.nn.Parameter(torch.tensor(w0))
    stepper = make_torch_optimizer(config, [("w", w)])
    for _ in range(steps):
        stepper.zero_grad()
        loss(w).backward()
        stepper.step()
    return w.detach().numpy().copy()


@dataclass(frozen=True)
class NaivePort:
    """A torch configuration and the optax transformation a naive port writes for it."""

    label: str
    config: OptimizerConfig
    naive: Callable[[], optax.GradientTransformation]
    naive_code: str
    problem: str = "toy"
    steps: int = 3


def _halving_lr(count):
    # ExponentialLR(gamma=0.5) from lr 0.01: 0.01, 0.005, 0.0025 on steps 1..3.
    return 0.01 * 0.5 ** jnp.asarray(count, jnp.float64)


NAIVE_PORTS = [
    NaivePort("Adam(lr=0.1, weight_decay=0.1)",
              optimizer_config("Adam", lr=0.1, weight_decay=0.1),
              lambda: optax.adamw(0.1, weight_decay=0.1), "optax.adamw(0.1, weight_decay=0.1)"),
    NaivePort("AdamW(lr=0.1), zero gradient",
              optimizer_config("AdamW", lr=0.1),
              lambda: optax.adamw(0.1), "optax.adamw(0.1)", problem="zero"),
    NaivePort("AdamW(lr=0.1), zero gradient",
              optimizer_config("AdamW", lr=0.1),
              lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(0.1),
                                  optax.add_decayed_weights(0.01)),
              "chain(scale_by_adam(), scale_by_learning_rate(0.1), add_decayed_weights(0.01))",
              problem="zero"),
    NaivePort("AdamW(lr=0.1)", optimizer_config("AdamW", lr=0.1),
              lambda: optax.adamw(0.1), "optax.adamw(0.1)"),
    NaivePort("RMSprop(lr=0.01, eps=0.01)", optimizer_config("RMSprop", lr=0.01, eps=0.01),
              lambda: optax.rmsprop(0.01, decay=0.99, eps=0.01),
              "optax.rmsprop(0.01, decay=0.99, eps=0.01)"),
    NaivePort("RMSprop(lr=0.01, eps=0.01)", optimizer_config("RMSprop", lr=0.01, eps=0.01),
              lambda: optax.rmsprop(0.01, eps=0.01), "optax.rmsprop(0.01, eps=0.01)"),
    NaivePort("RMSprop(lr=0.01, eps=0.01, momentum=0.9) + ExponentialLR(0.5)",
              optimizer_config("RMSprop", lr=0.01, eps=0.01, momentum=0.9,
                               scheduler=("ExponentialLR", {"gamma": 0.5})),
              lambda: optax.chain(optax.scale_by_rms(0.99, 0.01, eps_in_sqrt=False),
                                  optax.scale_by_learning_rate(_halving_lr), optax.trace(0.9)),
              "chain(scale_by_rms(0.99, 0.01, eps_in_sqrt=False), scale_by_learning_rate(lr), "
              "trace(0.9))"),
    NaivePort("SGD(lr=0.1, momentum=0.9, dampening=0.5)",
              optimizer_config("SGD", lr=0.1, momentum=0.9, dampening=0.5),
              lambda: optax.sgd(0.1, momentum=0.9), "optax.sgd(0.1, momentum=0.9)"),
    NaivePort("SGD(lr=0.1, momentum=0.9, dampening=0.5)",
              optimizer_config("SGD", lr=0.1, momentum=0.9, dampening=0.5),
              lambda: optax.sgd(0.05, momentum=0.9), "optax.sgd(0.1 * (1 - 0.5), momentum=0.9)"),
    NaivePort("Adam(lr=0.1, amsgrad=True)", optimizer_config("Adam", lr=0.1, amsgrad=True),
              lambda: optax.amsgrad(0.1), "optax.amsgrad(0.1)", steps=10),
    NaivePort("Adagrad(lr=0.1)", optimizer_config("Adagrad", lr=0.1),
              lambda: optax.adagrad(0.1), "optax.adagrad(0.1)"),
    NaivePort("SGD(lr=0.1) + clip_grad_norm_(1.0)",
              optimizer_config("SGD", lr=0.1, max_grad_norm=1.0),
              lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
              "chain(clip_by_global_norm(1.0), sgd(0.1))"),
    NaivePort("SGD(lr=0.1) + CosineAnnealingLR(T_max=2)",
              optimizer_config("SGD", lr=0.1, scheduler=("CosineAnnealingLR", {"T_max": 2})),
              lambda: optax.sgd(optax.cosine_decay_schedule(0.1, 2)),
              "optax.sgd(cosine_decay_schedule(0.1, 2))", steps=4),
    NaivePort("SGD(lr=0.1) + LinearLR(start_factor=0.25, total_iters=4)",
              optimizer_config("SGD", lr=0.1, scheduler=("LinearLR", {"start_factor": 0.25,
                                                                      "total_iters": 4})),
              lambda: optax.sgd(optax.linear_schedule(0.025, 0.1, 4)),
              "optax.sgd(linear_schedule(0.025, 0.1, 4)) (float32 lr under x64)", steps=4),
    NaivePort("SGD(lr=0.1, momentum=0.9) + OneCycleLR(max_lr=0.1, total_steps=10)",
              optimizer_config("SGD", lr=0.1, momentum=0.9,
                               scheduler=("OneCycleLR", {"max_lr": 0.1, "total_steps": 10})),
              lambda: optax.sgd(optax.cosine_onecycle_schedule(10, 0.1), momentum=0.9),
              "optax.sgd(cosine_onecycle_schedule(10, 0.1), momentum=0.9)", steps=10),
    NaivePort("SGD(lr=0.1), complex z", optimizer_config("SGD", lr=0.1),
              lambda: optax.sgd(0.1), "optax.sgd(0.1) on jax.grad", problem="complex", steps=1),
    NaivePort("Adam(lr=0.1), complex z", optimizer_config("Adam", lr=0.1),
              lambda: optax.chain(_conjugate(), optax.adam(0.1)),
              "optax.adam(0.1) on conj(jax.grad)", problem="complex"),
]


def _conjugate():
    return optax.stateless(lambda updates, params: jax.tree.map(jnp.conj, updates))


@dataclass
class Measurement:
    """torch's parameters, the twin's and the naive port's, after the same steps."""

    port: NaivePort
    torch_value: np.ndarray
    twin_value: np.ndarray
    naive_value: np.ndarray

    @property
    def twin_error(self) -> float:
        return float(np.max(np.abs(self.twin_value - self.torch_value)))

    @property
    def naive_error(self) -> float:
        return float(np.max(np.abs(self.naive_value - self.torch_value)))


def measure(port: NaivePort) -> Measurement:
    """Run torch, the ``twins.optim_map`` twin and the naive port on the port's problem."""
    return Measurement(
        port,
        run_torch(port.config, port.problem, port.steps),
        run_optax(build_transformation(port.config), port.problem, port.steps),
        run_optax(port.naive(), port.problem, port.steps),
    )


def _format(value: np.ndarray) -> str:
    if np.iscomplexobj(value):
        return f"{complex(value):.10g}".strip("()")
    return "[" + ", ".join(f"{v:.10g}" for v in value) + "]"


def markdown_table(measurements: list[Measurement]) -> str:
    """Return the measurements as a Markdown table."""
    lines = ["| torch | steps | torch result | naive port | naive result | naive error | twin error |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in measurements:
        lines.append(
            f"| `{m.port.label}` | {m.port.steps} | {_format(m.torch_value)} | "
            f"`{m.port.naive_code}` | {_format(m.naive_value)} | {m.naive_error:.2e} | "
            f"{m.twin_error:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(markdown_table([measure(port) for port in NAIVE_PORTS]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
