"""The conditional neural spline flow of GalacticFlow (Wolf & Buck) for the stellar eDF.

Architecture (the seed's, built from ``nflows`` pieces where nflows has them):

* ``n_layers`` steps, each an invertible linear map ``y = P L U x + b`` (Glow's 1x1
  convolution for vectors, Kingma & Dhariwal 2018: :class:`PermutedLULinear`, nflows'
  ``LULinear`` with a fixed permutation ``P`` and its inverse through
  ``torch.linalg.solve_triangular`` instead of the deprecated ``torch.triangular_solve``;
  started from a random orthogonal matrix, as the seed) followed by a *double*
  rational-quadratic-spline coupling (Durkan et al. 2019): two nflows coupling
  transforms with complementary masks, so that both halves are transformed in turn;
* each coupling's spline parameters come from **multiplicative conditioning**:
  ``θ = MLP_c(c) ⊙ MLP_x(x_a)`` (:class:`MultiplicativeConditioner`), two MLPs of
  ``mlp_layers`` linear layers of width ``hidden``, each followed by LeakyReLU(0.2) (the
  last one too, as the seed's MLP);
* ``bins`` bins over ``[-tail_bound, tail_bound]``, identity (linear tails) outside;
  the spline (:func:`rq_spline`) is evaluated only on inputs clamped into the interval
  and selected with ``torch.where``, and the discriminant of the inverse is clamped at 0
  (nflows issue #87: rounding made it negative, and nflows asserted);
* a standard-normal base distribution.

:class:`EdfFlow` adds the data's standardisation (stored μ/σ of the features and the
conditions, with log10 of the features in ``log_features`` and of the stellar mass) and
the exact density in physical units (:meth:`EdfFlow.log_prob`), and samples in chunks
(:meth:`EdfFlow.sample`, spread over several devices when given), computing
``MLP_c(c)`` once per batch of rows when every star shares one condition vector.

Parameters of the paper preset (14 layers, K = 10, 128 x 4 MLPs, 10 features, 4
conditions): 2,937,788. The seed's code has 2,939,188: its 1x1 convolution stores the
full 10 x 10 L and U matrices (masked) and the diagonal, 210 numbers a layer, where
nflows' ``LULinear`` stores only the 45 + 45 free triangle entries, the 10 diagonal
entries and a 10-vector bias (110): 14 x 100 = 1,400 fewer.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nflows.distributions.normal import StandardNormal
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.lu import LULinear
from torch import Tensor, nn
from torch.nn import functional as F

from galforge.train.checkpoint import record_init_kwargs

__all__ = [
    "CONDITIONS",
    "FEATURES",
    "EdfFlow",
    "MultiplicativeConditioner",
    "PermutedLULinear",
    "SplineCoupling",
    "rq_spline",
]

#: The flow's features: the archive's columns without the particle mass.
FEATURES: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "Z", "feh", "ofe", "age")
#: The conditions: stellar mass (learnt as log10), median and 10th-percentile age, mean Z.
CONDITIONS: tuple[str, ...] = ("mstar", "tau50", "tau10", "mean_z")

#: Rows the CPU pushes through the flow at once when sampling.
CPU_BATCH = 16_384
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
LN10 = math.log(10.0)


# -- the spline ---------------------------------------------------------------------------


def rq_spline(inputs: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, *,
              inverse: bool, tail_bound: float) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on ``[-B, B]``, identity outside (linear tails).

    Bins first: ``inputs`` (M,), unnormalised ``widths`` and ``heights`` (K, M) and
    interior ``derivatives`` (K - 1, M) (Durkan et al. 2019, Eqs. 4-8, with nflows'
    minimum bin width, height and derivative 1e-3 and derivative 1 at both ends). Returns
    the outputs and ``log|d out / d in|``, each (M,). The bins-first layout keeps every
    operation on contiguous vectors of length M (a softmax over a last axis of 10 is
    several times slower on CPU). The spline sees only inputs clamped into ``[-B, B]``;
    outside, ``torch.where`` selects the identity, so no value outside the interval reaches
    the formulas (and no NaN a gradient). The discriminant of the inverse is clamped at 0
    (nflows issue #87).
    """
    b = float(tail_bound)
    k = widths.shape[0]
    inside = (inputs >= -b) & (inputs <= b)
    x = inputs.clamp(-b, b)

    # running sums over the bins as one small matrix product: row j of tri sums bins < j
    tri = torch.tril(torch.ones(k + 1, k, dtype=widths.dtype, device=widths.device), -1)
    steps = torch.arange(k + 1, dtype=widths.dtype, device=widths.device)[:, None]

    def knots(unnorm: Tensor, min_size: float) -> tuple[Tensor, Tensor]:
        e = torch.exp(unnorm - unnorm.amax(dim=0, keepdim=True))
        run = tri @ e  # (K + 1, M): 0, e_0, e_0 + e_1, ..., the total
        cum = 2 * b * (min_size * steps + (1 - min_size * k) * (run / run[-1:])) - b
        cum[0], cum[-1] = -b, b  # the ends exactly at -B, B
        return cum, cum[1:] - cum[:-1]

    cumw, w = knots(widths, MIN_BIN_WIDTH)
    cumh, h = knots(heights, MIN_BIN_HEIGHT)
    one = torch.ones_like(derivatives[:1])
    d = torch.cat([one, MIN_DERIVATIVE + F.softplus(derivatives), one], dim=0)
    grid = cumh if inverse else cumw
    idx = (x[None] >= grid[1:-1]).sum(dim=0, keepdim=True)  # bin of each input, (1, M)

    def pick(t: Tensor, shift: int = 0) -> Tensor:
        return t.gather(0, idx + shift)[0]

    xk, wk, yk, hk = pick(cumw), pick(w), pick(cumh), pick(h)
    dk, dk1 = pick(d), pick(d, 1)
    delta = hk / wk
    s = dk + dk1 - 2 * delta
    if inverse:
        dy = x - yk
        qa = dy * s + hk * (delta - dk)
        qb = hk * dk - dy * s
        qc = -delta * dy
        disc = (qb * qb - 4 * qa * qc).clamp_min(0.0)
        theta = ((2 * qc) / (-qb - torch.sqrt(disc))).clamp(0.0, 1.0)
        out = theta * wk + xk
        t1 = theta * (1 - theta)
    else:
        theta = ((x - xk) / wk).clamp(0.0, 1.0)
        t1 = theta * (1 - theta)
        out = yk + hk * (delta * theta * theta + dk * t1) / (delta + s * t1)
    num = delta * delta * (dk1 * theta * theta + 2 * delta * t1 + dk * (1 - theta) ** 2)
    lad = torch.log(num) - 2 * torch.log(delta + s * t1)
    if inverse:
        lad = -lad
    return torch.where(inside, out, inputs), torch.where(inside, lad, torch.zeros_like(lad))


# -- the pieces ---------------------------------------------------------------------------


def _mlp(n_in: int, n_out: int, hidden: int, layers: int, slope: float) -> nn.Sequential:
    sizes = [n_in] + [hidden] * (layers - 1) + [n_out]
    mods: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        # in place: a negative slope keeps the sign, so the backward pass needs no copy
        mods += [nn.Linear(a, b), nn.LeakyReLU(slope, inplace=slope > 0)]
    return nn.Sequential(*mods)


class MultiplicativeConditioner(nn.Module):
    """``MLP_c(c) ⊙ MLP_x(x_a)``: the spline parameters of one coupling.

    Returns them transposed, (n_out, N): the last linear layer computes ``W hᵀ + b``
    directly, so the bins-first spline needs no copy. ``context`` may have one row for
    all rows of ``x`` (it broadcasts): then ``MLP_c`` runs once.
    """

    def __init__(self, n_in: int, n_out: int, context: int, hidden: int, layers: int,
                 slope: float) -> None:
        super().__init__()
        self.net_x = _mlp(n_in, n_out, hidden, layers, slope)
        self.net_c = _mlp(context, n_out, hidden, layers, slope)
        self.hidden_features = hidden

    @staticmethod
    def _transposed(net: nn.Sequential, x: Tensor) -> Tensor:
        h = net[:-2](x)
        last: nn.Linear = net[-2]  # type: ignore[assignment]
        return net[-1](torch.addmm(last.bias[:, None], last.weight, h.T))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return self._transposed(self.net_x, x) * self._transposed(self.net_c, context)


class SplineCoupling(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' RQS coupling (linear tails) with :func:`rq_spline` as its spline.

    Its conditioner gives the parameters transposed, (3K - 1) x d rows by N columns (see
    :class:`MultiplicativeConditioner`). The spline runs in float32 (float64 for float64
    inputs) even under autocast: its softmax, cumsum and quadratic root lose too much in
    half precision.
    """

    def _coupling_transform(self, inputs: Tensor, transform_params: Tensor,
                            inverse: bool = False) -> tuple[Tensor, Tensor]:
        n, d = inputs.shape
        k = self.num_bins
        dtype = torch.promote_types(inputs.dtype, torch.float32)
        p = transform_params.to(dtype).reshape(3 * k - 1, d * n)
        scale = 1.0 / math.sqrt(self.transform_net.hidden_features)
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            out, lad = rq_spline(inputs.to(dtype).T.reshape(d * n), p[:k] * scale,
                                 p[k:2 * k] * scale, p[2 * k:], inverse=inverse,
                                 tail_bound=self.tail_bound)
        return out.reshape(d, n).T.to(inputs.dtype), lad.reshape(d, n).sum(dim=0)


class PermutedLULinear(LULinear):
    """``y = P L U x + b``: nflows' ``LULinear`` after a fixed permutation ``P``.

    Started from a random orthogonal matrix (drawn from torch's global RNG), whose LU
    factors (with pivoting, and column signs flipped so that U's diagonal is positive as
    nflows' softplus parametrisation requires) set ``P``, ``L`` and ``U``. The inverse
    solves with ``torch.linalg.solve_triangular``.
    """

    def __init__(self, features: int) -> None:
        super().__init__(features, using_cache=False, identity_init=True)
        q = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))[0]
        p, low, up = torch.linalg.lu(q)
        sign = torch.sign(torch.diagonal(up))
        up = up * sign  # Q diag(sign) = P L (U diag(sign)): still orthogonal
        self.register_buffer("perm", p.argmax(dim=1))
        with torch.no_grad():
            li, ui = self.lower_indices, self.upper_indices
            self.lower_entries.copy_(low[li[0], li[1]].float())
            self.upper_entries.copy_(up[ui[0], ui[1]].float())
            diag = torch.diagonal(up).clamp_min(2 * self.eps) - self.eps
            self.unconstrained_upper_diag.copy_(torch.log(torch.expm1(diag)).float())

    def forward_no_cache(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._create_lower_upper()
        out = F.linear(F.linear(inputs, upper), lower)[:, self.perm] + self.bias
        return out, self.logabsdet() * inputs.new_ones(out.shape[0])

    def inverse_no_cache(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        out = F.linear(inputs - self.bias, self.weight_inverse())
        return out, -self.logabsdet() * inputs.new_ones(out.shape[0])

    def weight(self) -> Tensor:
        lower, upper = self._create_lower_upper()
        return (lower @ upper)[self.perm]

    def weight_inverse(self) -> Tensor:
        lower, upper = self._create_lower_upper()
        eye = torch.eye(self.features, dtype=lower.dtype, device=lower.device)
        lu_inv = torch.linalg.solve_triangular(
            upper, torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True),
            upper=True)
        return lu_inv[:, self.perm]


# -- the flow -----------------------------------------------------------------------------


def _as_tensor(v: Any, dtype: torch.dtype = torch.float64) -> Tensor:
    if isinstance(v, Tensor):
        return v.to(dtype)
    return torch.tensor(np.asarray(v, dtype=np.float64), dtype=dtype)  # a copy


@record_init_kwargs
class EdfFlow(nn.Module):
    """p(stars | conditions): the conditional spline flow with its standardisation.

    Parameters
    ----------
    n_layers
        Steps of (permuted LU linear, double spline coupling).
    bins, tail_bound
        Spline bins K over ``[-tail_bound, tail_bound]``.
    hidden, mlp_layers, negative_slope
        Width, number of linear layers and LeakyReLU slope of each conditioner MLP.
    features, conditions
        Names of the features (:data:`FEATURES`) and conditions (:data:`CONDITIONS`).
    log_features
        Features learnt as log10 (their values must be positive).

    The buffers ``feature_mean``/``feature_std`` (of the transformed features) and
    ``condition_mean``/``condition_std`` (of the conditions with log10 M*) are set from
    the training stars by :meth:`set_scaling` and travel in the checkpoint.
    """

    def __init__(self, n_layers: int = 14, bins: int = 10, tail_bound: float = 3.0,
                 hidden: int = 128, mlp_layers: int = 4, negative_slope: float = 0.2,
                 features: Sequence[str] = FEATURES, conditions: Sequence[str] = CONDITIONS,
                 log_features: Sequence[str] = ("Z",)) -> None:
        super().__init__()
        self.feature_names = tuple(features)
        self.condition_names = tuple(conditions)
        unknown = sorted(set(log_features) - set(self.feature_names))
        if unknown:
            raise ValueError(f"log_features {unknown} are not features {self.feature_names}")
        if min(n_layers, bins, hidden, mlp_layers) < 1 or tail_bound <= 0:
            raise ValueError("n_layers, bins, hidden, mlp_layers and tail_bound must be > 0")
        d, c = len(self.feature_names), len(self.condition_names)
        if d < 2 or c < 1:
            raise ValueError(f"need >= 2 features and >= 1 condition, got {d} and {c}")
        self.log_index = [self.feature_names.index(f) for f in log_features]
        half = torch.arange(d) < d // 2

        def net(n_in: int, n_out: int) -> nn.Module:
            return MultiplicativeConditioner(n_in, n_out, c, int(hidden), int(mlp_layers),
                                             float(negative_slope))

        steps: list[Transform] = []
        for _ in range(int(n_layers)):
            steps.append(PermutedLULinear(d))
            for mask in (half, ~half):  # transform one half, then the other
                steps.append(SplineCoupling(mask.int(), net, num_bins=int(bins),
                                            tails="linear", tail_bound=float(tail_bound)))
        self.transform = CompositeTransform(steps)
        self.base = StandardNormal([d])
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        self.register_buffer("condition_mean", torch.zeros(c))
        self.register_buffer("condition_std", torch.ones(c))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_conditions(self) -> int:
        return len(self.condition_names)

    def n_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- standardisation --------------------------------------------------------------
    def set_scaling(self, feature_mean: Any, feature_std: Any, condition_mean: Any,
                    condition_std: Any) -> None:
        """Store μ/σ of the transformed features and conditions (σ must be > 0)."""
        for name, v in (("feature_std", feature_std), ("condition_std", condition_std)):
            if not bool(np.all(np.asarray(v) > 0)):
                raise ValueError(f"{name} must be positive, got {np.asarray(v)}")
        for name, v in (("feature_mean", feature_mean), ("feature_std", feature_std),
                        ("condition_mean", condition_mean), ("condition_std", condition_std)):
            buf = getattr(self, name)
            buf.copy_(_as_tensor(v, buf.dtype).reshape(buf.shape))

    def transformed_features(self, stars: Any) -> Tensor:
        """Features with log10 applied (float64), not yet standardised; (N, features)."""
        x = _as_tensor(stars).clone()
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"stars must be (N, {self.n_features}) in the order "
                             f"{self.feature_names}, got {tuple(x.shape)}")
        if self.log_index:
            v = x[:, self.log_index]
            if bool((v <= 0).any()):
                raise ValueError(f"log features {[self.feature_names[i] for i in self.log_index]} "
                                 "must be positive")
            x[:, self.log_index] = torch.log10(v)
        return x

    def transformed_conditions(self, conditions: Any) -> Tensor:
        """Conditions with log10 of the stellar mass (float64), (N, conditions)."""
        c = _as_tensor(conditions)
        c = (c.reshape(1, -1) if c.dim() == 1 else c).clone()  # never write into the caller's
        if c.shape[1] != self.n_conditions:
            raise ValueError(f"conditions must hold {self.n_conditions} values "
                             f"{self.condition_names}, got {tuple(c.shape)}")
        if "mstar" in self.condition_names:
            i = self.condition_names.index("mstar")
            if bool((c[:, i] <= 0).any()):
                raise ValueError("the stellar mass condition must be positive [M_sun]")
            c[:, i] = torch.log10(c[:, i])
        return c

    def standardise(self, stars: Any) -> tuple[Tensor, Tensor]:
        """``(x, log|dx/d stars|)``: standardised features (float32) and the log Jacobian."""
        t = self.transformed_features(stars)
        mean, std = self.feature_mean.double().cpu(), self.feature_std.double().cpu()
        logjac = -torch.log(std).sum() * torch.ones(t.shape[0], dtype=torch.float64)
        if self.log_index:
            raw = _as_tensor(stars)[:, self.log_index]
            logjac = logjac - torch.log(raw * LN10).sum(dim=1)
        return ((t - mean) / std).float(), logjac

    def standardise_conditions(self, conditions: Any) -> Tensor:
        """Standardised conditions (float32), (N or 1, conditions)."""
        c = self.transformed_conditions(conditions)
        return ((c - self.condition_mean.double().cpu()) / self.condition_std.double().cpu()).float()

    def unstandardise(self, x: Tensor) -> np.ndarray:
        """Physical features (float64 numpy) of standardised ones."""
        t = x.double().cpu() * self.feature_std.double().cpu() + self.feature_mean.double().cpu()
        if self.log_index:
            t[:, self.log_index] = 10.0 ** t[:, self.log_index]
        return t.numpy()

    # -- densities ------------------------------------------------------------------------
    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """log p(x | context) of standardised ``x`` (N, features) and ``context`` (N or 1, C)."""
        z, logabsdet = self.transform(x, context=context)
        return self.base.log_prob(z) + logabsdet

    def log_prob_standardised(self, x: Tensor, context: Tensor) -> Tensor:
        """Same as :meth:`forward`."""
        return self.forward(x, context)

    def log_prob(self, stars: Any, conditions: Any) -> Tensor:
        """Exact log density of stars in physical units (float64, (N,)).

        ``stars``: (N, features) in :attr:`feature_names` order and physical units;
        ``conditions``: the physical conditions (M* in M_sun, ages in Gyr, mean Z), one row
        for all stars or one per star. Includes the standardisation's and the log10
        transforms' Jacobians: ``log p(stars) = log p_flow(x) - Σ log σ - Σ_log log(v ln 10)``.
        """
        x, logjac = self.standardise(stars)
        c = self.standardise_conditions(conditions)
        dev = self.feature_mean.device
        lp = self.forward(x.to(dev), c.to(dev)).double().cpu()
        return lp + logjac

    # -- sampling -------------------------------------------------------------------------
    def sample_standardised(self, n: int, context: Tensor, *,
                            generator: torch.Generator | None = None) -> Tensor:
        """``n`` standardised samples at one standardised ``context`` (1, C) (no grad).

        The noise is drawn at once; on the CPU it goes through the flow in batches of
        :data:`CPU_BATCH` rows (the activations then stay in cache: 300,000 rows at once
        ran 2-4x slower per star on a shared 2-core machine).
        """
        dev = self.feature_mean.device
        z = torch.randn(n, self.n_features, generator=generator).to(dev)
        ctx = context.to(dev).reshape(1, -1)
        step = CPU_BATCH if dev.type == "cpu" else max(n, 1)
        parts = [self.transform.inverse(z[i:i + step], context=ctx)[0]
                 for i in range(0, n, step)]
        return torch.cat(parts) if len(parts) != 1 else parts[0]

    @torch.inference_mode()
    def sample(self, n: int, conditions: Any, *, seed: int = 0, chunk: int = 300_000,
               devices: Sequence[str | torch.device] | None = None) -> np.ndarray:
        """``n`` stars (physical units, (n, features) float64) of a galaxy with ``conditions``.

        Drawn in chunks of ``chunk``; chunk ``i``'s noise comes from a generator seeded with
        ``(seed, i)``, so the sample does not depend on how the chunks are spread over
        ``devices`` (default: the model's device). With several devices each gets a copy of
        the model and a thread (CUDA kernels release the GIL), as GalacticFlow's
        ``sample_galaxy`` spreads its chunks over GPUs.
        """
        was_training = self.training
        self.eval()
        try:
            c = self.standardise_conditions(conditions)
            if c.shape[0] != 1:
                raise ValueError("sample() takes one condition vector")
            sizes = [min(chunk, n - i) for i in range(0, n, max(1, int(chunk)))]
            devs = [torch.device(d) for d in devices] if devices else [self.feature_mean.device]
            models = [self if d == self.feature_mean.device else _copy_to(self, d) for d in devs]
            out: list[np.ndarray | None] = [None] * len(sizes)

            def work(k: int) -> None:
                m = models[k]
                with torch.inference_mode():
                    for i in range(k, len(sizes), len(models)):
                        gen = torch.Generator().manual_seed(_chunk_seed(seed, i))
                        out[i] = self.unstandardise(m.sample_standardised(sizes[i], c,
                                                                           generator=gen))

            if len(models) == 1:
                work(0)
            else:
                threads = [threading.Thread(target=work, args=(k,)) for k in range(len(models))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if any(o is None for o in out):
                    raise RuntimeError("a sampling thread failed (see the log above)")
            return np.concatenate([o for o in out if o is not None], axis=0) if out else \
                np.zeros((0, self.n_features))
        finally:
            self.train(was_training)


def _chunk_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(i), 0x5A]).generate_state(1)[0])


def _copy_to(model: EdfFlow, device: torch.device) -> EdfFlow:
    clone = EdfFlow(**model.init_kwargs)
    clone.load_state_dict(model.state_dict())
    return clone.to(device).eval()


def edf_nll_loss(model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Mean negative log-likelihood of a standardised ``(x, context)`` batch (``fit``'s loss).

    Calls the model itself (its ``forward``), so a DistributedDataParallel wrapper
    synchronises the gradients.
    """
    return -model(batch[0], batch[1]).mean(), {}
