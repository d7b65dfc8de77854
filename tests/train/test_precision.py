"""Training arithmetic (bgtrain.precision) and the training step that uses it (bgtrain.train.forward_loss)."""

from __future__ import annotations

import pytest
import torch

from bgsdk.errors import UserError
from bgtrain.loss import FocalLoss
from bgtrain.model import UNet
from bgtrain.precision import Precision, cpu_flags, resolve_precision
from bgtrain.train import forward_loss

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "name", "reason"),
    [
        ({"avx2", "avx512_bf16", "amx_tile", "amx_bf16"}, "bf16", "bf16 autocast (AMX detected)"),
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16", "bf16 autocast (AVX-512 BF16 detected)"),
        ({"avx2", "avx512f", "avx512_vnni"}, "fp32", "fp32 (no AMX or AVX-512 BF16 on this CPU)"),
        (set(), "fp32", "fp32 (no AMX or AVX-512 BF16 on this CPU)"),
    ],
)
def test_auto_picks_bf16_only_with_bf16_hardware(flags, name, reason):
    p = resolve_precision("auto", CPU, flags)
    assert (p.name, p.reason, p.device_type) == (name, reason, "cpu")


def test_asked_precisions_and_errors():
    assert resolve_precision("fp32", CPU, {"amx_bf16"}).name == "fp32"
    slow = resolve_precision("bf16", CPU, {"avx2"})
    assert slow.name == "bf16" and "no bf16 hardware" in slow.reason
    assert resolve_precision("bf16", CPU, {"amx_bf16"}).reason == "bf16 autocast (asked)"
    with pytest.raises(UserError, match="--precision 'fp16'"):
        resolve_precision("fp16", CPU, set())


def test_cpu_flags_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nflags\t: other\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(2, 1, 64, 64, generator=g) > 0.97).float()
    return {"input": torch.rand(2, 3, 64, 64, generator=g), "mask": mask, "weight": torch.ones_like(mask)}


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_step_keeps_weights_batchnorm_and_loss_in_float32(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = UNet(base_width=4).to(memory_format=fmt).train()
    seen: dict[str, torch.dtype] = {}

    def record(name: str, use_input: bool = False):
        def hook(module, inputs, output) -> None:  # returns None: the output is left alone
            seen.setdefault(name, (inputs[0] if use_input else output).dtype)

        return hook

    first_conv, first_bn = model.encoder.blocks[0][0], model.encoder.blocks[0][1]
    first_conv.register_forward_hook(record("conv_out"))
    layouts: list[bool] = []
    first_conv.register_forward_hook(lambda m, i, o: layouts.append(i[0].is_contiguous(memory_format=fmt)))
    first_bn.register_forward_hook(record("bn_in", use_input=True))
    model.decoder.head.register_forward_hook(record("logits"))
    loss = forward_loss(model, _batch(), 2.0, FocalLoss(), Precision("bf16", "test"))
    loss.backward()
    assert seen == {"conv_out": torch.bfloat16, "bn_in": torch.bfloat16, "logits": torch.bfloat16}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # weights, gradients and BatchNorm statistics stay float32: autocast casts per op, never a parameter
    assert all(
        p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters()
    )
    assert first_bn.running_mean.dtype == torch.float32 and first_bn.running_var.dtype == torch.float32
    assert layouts == [True]  # the convolutions see the model's memory format (the stem ran on NCHW)
    if channels_last:
        assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_loss_is_the_float32_loss_of_the_logits():
    """forward_loss = FocalLoss on the logits cast to float32 (the same number computed by hand)."""
    torch.manual_seed(0)
    model = UNet(base_width=4).eval()  # eval: BatchNorm statistics do not move between the two calls
    batch = _batch(1)
    loss = forward_loss(model, batch, 1.5, FocalLoss(), Precision("bf16", "test"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch["input"])
    expected = FocalLoss()(logits.float(), batch["mask"], 1.5, batch["weight"])
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(loss.detach(), expected, rtol=0, atol=0)
    fp32 = forward_loss(model, batch, 1.5, FocalLoss(), Precision("fp32", "test"))
    assert fp32.dtype == torch.float32 and abs(fp32.item() - loss.item()) < 0.05 * fp32.item()  # bf16 ~ fp32
