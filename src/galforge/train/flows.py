"""Conditional normalizing flows for p(x | context), built on ``nflows``.

Two builders, each returning an ``nflows`` :class:`~nflows.flows.base.Flow` (an
``nn.Module``) whose constructor arguments are plain values recorded by
:func:`~galforge.train.checkpoint.record_init_kwargs`, so the shared trainer
(:func:`galforge.train.loop.fit` with :func:`flow_nll_loss`) checkpoints it and
:func:`~galforge.train.checkpoint.load_for_inference` rebuilds it:

:func:`conditional_spline_flow`
    Neural spline flow (Durkan et al. 2019): each of ``n_layers`` steps is an
    optional ActNorm, an invertible linear map with an LU-factorised weight (the
    "1x1 convolution" of Glow, Kingma & Dhariwal 2018, for vectors; identity at
    the start) and a rational-quadratic spline coupling transform whose bins come
    from a residual network of the untouched half of ``x`` and the context
    (halves alternate between steps; linear tails outside ``±tail_bound``).
:func:`conditional_maf`
    Masked autoregressive flow (Papamakarios et al. 2017): each of ``n_layers``
    steps is an optional ActNorm and an affine MADE layer conditioned on the
    context, the feature order reversed between steps.

ActNorm (on by default) is Glow's per-feature affine layer, initialised from the
first training batch to zero mean and unit variance; it lets the flow fit data
of any scale (``nflows``' affine MADE layer bounds its scale by about 1, so a MAF
without it cannot shrink data narrower than its noise). The base distribution is
a standard normal in ``features`` dimensions.

Shapes: ``x`` is (N, features) and ``context`` (N, context) float tensors;
``flow.log_prob(x, context)`` is (N,); ``flow.sample(k, context)`` is
(N, k, features) (``k`` draws per context row).

``LULinear``'s inverse (sampling and :meth:`ConditionalFlow.from_noise` of the
spline flow) calls ``torch.triangular_solve``, which torch deprecates (a warning);
it is correct on torch 2.13.
"""

from __future__ import annotations

from typing import Any

import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.lu import LULinear
from nflows.transforms.normalization import ActNorm
from nflows.transforms.permutations import ReversePermutation
from torch import Tensor
from torch.nn import functional as F

from galforge.train.checkpoint import record_init_kwargs

__all__ = [
    "ConditionalFlow",
    "ConditionalMAF",
    "ConditionalSplineFlow",
    "conditional_maf",
    "conditional_spline_flow",
    "flow_nll_loss",
]


def _positive(name: str, value: int, least: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _dropout(value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value!r}")
    return float(value)


class ConditionalFlow(Flow):
    """Base of the flows of this module: a ``Flow`` with a standard-normal base.

    Adds :meth:`to_noise` / :meth:`from_noise` (the bijection in both directions)
    and shape checks of ``x`` and ``context``.
    """

    def __init__(self, transforms: list[Transform], features: int, context: int) -> None:
        super().__init__(CompositeTransform(transforms), StandardNormal([features]))
        self.features = features
        self.context = context

    def _check(self, x: Tensor, context: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"x must be (N, {self.features}), got {tuple(x.shape)}")
        if context.dim() != 2 or context.shape != (x.shape[0], self.context):
            raise ValueError(f"context must be ({x.shape[0]}, {self.context}), "
                             f"got {tuple(context.shape)}")

    def to_noise(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log|det dz/dx|)``: ``x`` mapped to the base space, (N, features) and (N,)."""
        self._check(x, context)
        return self._transform(x, context=context)

    def from_noise(self, z: Tensor, context: Tensor) -> Tensor:
        """``x`` of base-space points ``z`` (N, features): the inverse of :meth:`to_noise`."""
        self._check(z, context)
        x, _ = self._transform.inverse(z, context=context)
        return x


@record_init_kwargs
class ConditionalSplineFlow(ConditionalFlow):
    """Conditional neural spline flow with LU-linear mixing (see the module docstring).

    Parameters
    ----------
    features
        Dimension of ``x`` (>= 2: a coupling layer splits it in two halves).
    context
        Dimension of the conditioning vector (>= 1).
    n_layers
        Steps of (ActNorm,) LU-linear, spline coupling.
    hidden, n_blocks
        Width and number of residual blocks of each coupling network.
    bins
        Spline bins over ``[-tail_bound, tail_bound]``.
    tail_bound
        Half-width of the spline interval; identity (linear tails) outside it.
    dropout
        Dropout probability inside the coupling networks.
    actnorm
        Put an ActNorm layer first in each step.
    """

    def __init__(self, features: int, context: int, n_layers: int = 4, hidden: int = 64,
                 n_blocks: int = 2, bins: int = 8, tail_bound: float = 5.0,
                 dropout: float = 0.0, actnorm: bool = True) -> None:
        features = _positive("features", features, 2)
        context = _positive("context", context)
        n_layers = _positive("n_layers", n_layers)
        hidden, n_blocks = _positive("hidden", hidden), _positive("n_blocks", n_blocks)
        bins = _positive("bins", bins)
        if not float(tail_bound) > 0:
            raise ValueError(f"tail_bound must be > 0, got {tail_bound!r}")
        p = _dropout(dropout)

        def net(n_in: int, n_out: int) -> ResidualNet:
            return ResidualNet(n_in, n_out, hidden_features=hidden, context_features=context,
                               num_blocks=n_blocks, activation=F.relu, dropout_probability=p)

        steps: list[Transform] = []
        for i in range(n_layers):
            mask = (torch.arange(features) + i) % 2  # alternate which half is transformed
            steps += [ActNorm(features)] if actnorm else []
            steps += [
                LULinear(features, identity_init=True),
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, net, num_bins=bins, tails="linear", tail_bound=float(tail_bound)),
            ]
        super().__init__(steps, features, context)


@record_init_kwargs
class ConditionalMAF(ConditionalFlow):
    """Conditional masked autoregressive flow (see the module docstring).

    Parameters
    ----------
    features
        Dimension of ``x`` (>= 1).
    context
        Dimension of the conditioning vector (>= 1).
    n_layers
        Affine MADE layers, the feature order reversed between them.
    hidden, n_blocks
        Width and number of hidden blocks of each MADE.
    residual
        Residual MADE blocks (``nflows``' default) instead of plain ones.
    dropout
        Dropout probability inside the MADEs.
    actnorm
        Put an ActNorm layer first in each step.
    """

    def __init__(self, features: int, context: int, n_layers: int = 5, hidden: int = 64,
                 n_blocks: int = 2, residual: bool = True, dropout: float = 0.0,
                 actnorm: bool = True) -> None:
        features = _positive("features", features)
        context = _positive("context", context)
        n_layers = _positive("n_layers", n_layers)
        hidden, n_blocks = _positive("hidden", hidden), _positive("n_blocks", n_blocks)
        p = _dropout(dropout)
        steps: list[Transform] = []
        for i in range(n_layers):
            if i:
                steps.append(ReversePermutation(features))
            steps += [ActNorm(features)] if actnorm else []
            steps.append(MaskedAffineAutoregressiveTransform(
                features, hidden, context_features=context, num_blocks=n_blocks,
                use_residual_blocks=bool(residual), activation=F.relu, dropout_probability=p))
        super().__init__(steps, features, context)


def conditional_spline_flow(features: int, context: int, **kwargs: Any) -> ConditionalSplineFlow:
    """A :class:`ConditionalSplineFlow` for p(x | context), x in R^features.

    Keyword arguments: ``n_layers`` (4), ``hidden`` (64), ``n_blocks`` (2),
    ``bins`` (8), ``tail_bound`` (5.0), ``dropout`` (0.0), ``actnorm`` (True).

    Examples
    --------
    >>> flow = conditional_spline_flow(3, 2, n_layers=2, hidden=16)
    >>> flow.log_prob(torch.zeros(5, 3), torch.zeros(5, 2)).shape
    torch.Size([5])
    """
    return ConditionalSplineFlow(features, context, **kwargs)


def conditional_maf(features: int, context: int, **kwargs: Any) -> ConditionalMAF:
    """A :class:`ConditionalMAF` for p(x | context), x in R^features.

    Keyword arguments: ``n_layers`` (5), ``hidden`` (64), ``n_blocks`` (2),
    ``residual`` (True), ``dropout`` (0.0), ``actnorm`` (True).

    Examples
    --------
    >>> flow = conditional_maf(2, 1, n_layers=2, hidden=16)
    >>> flow.sample(4, torch.zeros(3, 1)).shape
    torch.Size([3, 4, 2])
    """
    return ConditionalMAF(features, context, **kwargs)


def flow_nll_loss(model: ConditionalFlow, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Mean negative log-likelihood of a ``(x, context)`` batch: a loss for ``fit``.

    The metrics dict is empty (the loss is the NLL in nats per row).
    """
    x, context = batch[0], batch[1]
    return -model.log_prob(x, context=context).mean(), {}
