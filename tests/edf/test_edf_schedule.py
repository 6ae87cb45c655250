"""The shared trainer's additions for GalacticFlow: RAdam and the stepped exponential schedule."""

from __future__ import annotations

import math

import pytest
import torch

from galforge.train.optim import SteppedExponentialLR, make_optimizer, make_scheduler
from galforge.train.settings import TrainSettings


def _lrs(sched: SteppedExponentialLR, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_galacticflow_schedule_decays_every_10_steps_then_every_120():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-5)
    sched = SteppedExponentialLR(opt, 0.9, 10, 120, 3e-6)
    lrs = _lrs(sched, opt, 2000)
    # fast phase: x0.9 every 10 steps until the rate is <= 3e-6
    assert lrs[:10] == [1e-5] * 10 and lrs[10] == pytest.approx(9e-6)
    fast = math.ceil(math.log(3e-6 / 1e-5) / math.log(0.9))  # 12 factors
    t1 = 10 * fast
    assert lrs[t1 - 1] > 3e-6 >= lrs[t1]
    # slow phase: one factor every 120 steps
    assert lrs[t1 + 119] == pytest.approx(lrs[t1])
    assert lrs[t1 + 120] == pytest.approx(0.9 * lrs[t1])


def test_the_schedule_resumes_from_its_state_dict():
    def fresh():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1e-3)
        return opt, SteppedExponentialLR(opt, 0.99, 3, 7, 9e-4)

    opt, sched = fresh()
    first = _lrs(sched, opt, 25)
    opt2, sched2 = fresh()
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    opt3, sched3 = fresh()
    whole = _lrs(sched3, opt3, 60)
    assert first == whole[:25]
    assert _lrs(sched2, opt2, 35) == pytest.approx(whole[25:])


def test_radam_and_the_exponential_schedule_come_from_the_settings():
    cfg = TrainSettings(optimizer="radam", scheduler="exponential", lr=9e-5, gamma=0.998,
                        gamma_every=10, gamma_slow_every=120, gamma_slow_below=3e-6)
    model = torch.nn.Linear(2, 1)
    opt = make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.RAdam)
    sched = make_scheduler(opt, cfg, n_batches=5)
    assert isinstance(sched, SteppedExponentialLR) and sched.gamma == 0.998
