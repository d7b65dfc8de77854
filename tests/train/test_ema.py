"""The weight average: parity with a plain-Python EMA, buffers averaged, counters copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bgtrain.ema import decay_at, make_ema


def test_decay_warms_up_then_holds():
    assert decay_at(0.998, 0) == pytest.approx(0.1)
    assert decay_at(0.998, 90) == pytest.approx(91 / 100)
    assert decay_at(0.998, 10**6) == 0.998
    assert [decay_at(0.99, n) <= decay_at(0.99, n + 1) for n in range(0, 2000, 50)] == [True] * 40


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_average_matches_an_independent_reference():
    """Parameters and BatchNorm statistics follow a = d*a + (1-d)*w with the warm-up decay."""
    net, decay = _net(), 0.9
    ema = make_ema(net, decay)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ref: dict[str, torch.Tensor] = {}
    for step in range(25):
        net.train()
        out = net(torch.randn(4, 1, 6, 6) + step)  # the shift moves the running statistics too
        loss = (out - torch.randn_like(out)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(net)
        for k, v in net.state_dict().items():
            v = v.detach().clone()
            if step == 0 or not v.is_floating_point():
                ref[k] = v  # first update copies; an integer counter is copied
            else:
                d = min(decay, (1 + step) / (10 + step))
                ref[k] = d * ref[k] + (1 - d) * v
    got = ema.module.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
    assert int(got["1.num_batches_tracked"]) == 25
    assert not torch.allclose(got["0.weight"], net.state_dict()["0.weight"])  # it is an average, not a copy


def test_average_does_not_touch_the_model():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ema = make_ema(net, 0.5)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(1.0)
    ema.update_parameters(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1, 1.5])
def test_decay_out_of_range(decay):
    with pytest.raises(ValueError, match="EMA decay must be in"):
        make_ema(_net(), decay)
