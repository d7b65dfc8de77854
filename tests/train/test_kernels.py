"""bgtrain.kernels: the stems' eager kernels compute the exported ops' numbers exactly (torch.equal)."""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from bgtrain import model as model_module
from bgtrain.kernels import exporting, interpolate_taps, max3x3
from bgtrain.model import AlignedStem, RegisteredStem, UNet


def _tap_sum(padded: torch.Tensor, d: torch.Tensor, radius: int, dim: int, step: int = 1) -> torch.Tensor:
    """The export form: the model's own weighted sum over every tap, as tracing and export run it."""
    with mock.patch.object(model_module, "exporting", lambda: True):
        return model_module._interpolate(padded, d, radius, dim, step)


@pytest.mark.parametrize("shape", [(2, 1, 17, 9), (3, 2, 8, 31), (1, 1, 1, 5)])
def test_max3x3_is_maxpool_exactly(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    assert torch.equal(max3x3(x), torch.nn.MaxPool2d(3, stride=1, padding=1)(x))
    wide = torch.randn(shape[0], 3, *shape[2:])[:, 1:2]  # a channel slice, as the stems take it
    assert torch.equal(max3x3(wide), F.max_pool2d(wide, 3, stride=1, padding=1))


@pytest.mark.parametrize("dim", [-1, -2])
@pytest.mark.parametrize(("radius", "step"), [(2, 1), (1, 1), (6, 2)])
def test_interpolate_taps_is_the_tap_sum_exactly(dim: int, radius: int, step: int) -> None:
    g = torch.Generator().manual_seed(radius * 10 + step)
    b, c = 6, 3
    shape = [b, c, 20, 24]
    shape[dim] += 2 * radius
    padded = torch.randn(shape, generator=g)
    d = (torch.rand(b, c, 1, 1, generator=g) * 2 - 1) * radius
    d[0, 0] = 0.0  # the identity
    d[1, 0] = float(radius)  # the last tap alone
    d[2, 1] = float(-radius)  # the first tap alone
    if step > 1:
        d = torch.round(d / step) * step  # whole multiples of the step: what the coarse shift uses
        d[3, 2] = 1.0  # between two taps of a step-2 sum: every weight 0, so is the result
    got = interpolate_taps(padded, d, radius, dim, step)
    assert torch.equal(got, _tap_sum(padded, d, radius, dim, step))
    one = d[:, :1]  # one shift for all channels of an image (B,1,1,1) broadcasts the same way
    assert torch.equal(interpolate_taps(padded, one, radius, dim, step), _tap_sum(padded, one, radius, dim, step))


def _misregistered_dies(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = F.avg_pool2d(torch.rand(4, 1, 72, 72, generator=g), 5, stride=1, padding=2)
    x = torch.cat([t, torch.roll(t, (3, -2), (2, 3)), torch.roll(t, (-1, 4), (2, 3))], 1)
    return (x + 0.02 * torch.rand(x.shape, generator=g))[..., 4:68, 4:68]


@pytest.mark.parametrize("stem", [RegisteredStem, AlignedStem])
def test_stems_compute_the_exported_numbers_in_eager_mode(stem: type[torch.nn.Module]) -> None:
    x = _misregistered_dies(0)
    with torch.no_grad():
        eager = stem()(x)
        with mock.patch.object(model_module, "exporting", lambda: True):
            export_form = stem()(x)
    assert torch.equal(eager, export_form)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace announces its deprecation
def test_exporting_is_true_only_while_tracing_or_compiling() -> None:
    seen: list[bool] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(exporting())
        return x + 1

    f(torch.zeros(1))
    torch.jit.trace(f, torch.zeros(1), check_trace=False)
    torch.compile(f, backend="eager")(torch.zeros(2))  # dynamo traces f: the graph forms, which it can fuse
    assert seen == [False, True, True]


def test_a_channels_last_unet_gives_the_nchw_logits_and_its_convolutions_see_channels_last() -> None:
    torch.manual_seed(0)
    nchw = UNet(base_width=4, stem="registered").eval()
    cl = UNet(base_width=4, stem="registered").eval()
    cl.load_state_dict(nchw.state_dict())
    cl = cl.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    seen: list[bool] = []
    cl.encoder.blocks[0][0].register_forward_hook(
        lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = _misregistered_dies(1)
    with torch.no_grad():
        torch.testing.assert_close(cl(x), nchw(x), rtol=1e-5, atol=1e-5)
        cl(x.contiguous(memory_format=torch.channels_last))
    assert seen == [True, True] and cl.channels_last() and not nchw.channels_last()


def test_tracing_a_whole_strip_network_raises_no_tracer_warning() -> None:
    """The whole-strip module reads its sizes from the tiling, never from traced shapes."""
    from bgsdk.tiling import tiling_for
    from bgtrain.infer import WholeStrip

    net = WholeStrip(UNet(base_width=2, stem="registered").eval(), tiling_for("strip", 250, 140)).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Converting a tensor to a Python", category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.jit.trace(net, torch.rand(1, 3, 250, 140), check_trace=False)


def test_tracing_a_registered_unet_raises_no_tracer_warning() -> None:
    """The eager paths' conditions must not touch traced shapes (a TracerWarning in every build's log; the
    shift candidates' constants are the exporter's known, filtered note)."""
    model = UNet(base_width=4, stem="registered").eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Converting a tensor to a Python", category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.jit.trace(model, torch.rand(1, 3, 64, 64), check_trace=False)
