"""TEST FIXTURES ONLY: a tiny model, data and a killable training script.

Nothing in the pipeline uses this module. It lives in the package (not in
``tests/``) so that checkpoints of :class:`TinyMLP` store an importable class
path (``galforge.train._testing:TinyMLP``), which is what
:func:`galforge.train.checkpoint.load_for_inference` needs, and so that a
subprocess can run a training job to be killed with SIGKILL::

    python -m galforge.train._testing --workdir W [--sleep 0.05] [--out weights.pt]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from galforge.train.checkpoint import record_init_kwargs

__all__ = ["TinyMLP", "make_data", "mse_loss", "tiny_config", "run_tiny"]


@record_init_kwargs
class TinyMLP(nn.Module):
    """A two-layer perceptron with dropout (so resuming must restore the torch RNG)."""

    def __init__(self, n_in: int = 4, hidden: int = 16, n_out: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_data(n: int = 96, n_in: int = 4, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` with ``y = sin(x @ w) + 0.1 noise``, from a private generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    w = torch.randn(n_in, 1, generator=g)
    y = torch.sin(x @ w) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def mse_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error, with the mean absolute error as a logged metric."""
    x, y = batch
    pred = model(x)
    loss = torch.mean((pred - y) ** 2)
    return loss, {"mae": float(torch.mean(torch.abs(pred.detach() - y)))}


def tiny_config(**overrides: Any) -> Any:
    """A :class:`~galforge.train.settings.TrainSettings` for tests: 4 epochs of 6 batches."""
    from galforge.train.settings import TrainSettings

    base = {"epochs": 4, "batch_size": 16, "lr": 1e-2, "seed": 7, "progress": False,
            "checkpoint_every": 5, "scheduler": "cosine", "lr_min": 1e-4}
    return TrainSettings.from_dict({**base, **overrides})


def run_tiny(
    workdir: Any,
    sleep: float = 0.0,
    config: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
    loss_fn: Callable[..., Any] = mse_loss,
    device: str = "cpu",
    **fit_kwargs: Any,
) -> Any:
    """Train a :class:`TinyMLP` on :func:`make_data` (64 train, 32 validation samples).

    ``config`` overrides :func:`tiny_config`; ``sleep`` seconds are slept after
    each step (to give a test time to kill the process); the rest goes to ``fit``.
    """
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything

    cfg = tiny_config(**dict(config or {}))
    seed_everything(cfg.seed)
    model = TinyMLP()
    x, y = make_data()
    cbs = list(callbacks)
    if sleep > 0:
        cbs.append(lambda info: time.sleep(sleep))
    kwargs = {
        "normalization": {"x_mean": x.mean(0).numpy(), "y_std": float(y.std())},
        "run_config": {"study": "test", "scale": "tiny"},
        **fit_kwargs,
    }
    return fit(model, loss_fn, (x[:64], y[:64]), (x[64:], y[64:]), cfg, workdir=workdir,
               device=device, callbacks=cbs, **kwargs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each step")
    ap.add_argument("--out", help="save the final state_dict here")
    args = ap.parse_args(argv)
    result = run_tiny(args.workdir, sleep=args.sleep)
    if args.out:
        torch.save(result.model.state_dict(), args.out)


if __name__ == "__main__":
    # Run the copy imported under its real name, so that checkpoints store the
    # importable class path galforge.train._testing:TinyMLP, not __main__:TinyMLP.
    from galforge.train._testing import main as _main

    _main()
