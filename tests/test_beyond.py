"""Where the network looks, what each filter wants, how much position each layer keeps: properties
that could fail, on toy models whose answers are known and on LeNet-5."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from mnist_probe.attribution import METHODS, attribute, correlation, shift_consistency
from mnist_probe.data import load_mnist
from mnist_probe.filters import (
    centre_unit,
    centred_starts,
    maximise_filters,
    receptive_field,
    top_activations,
    top_patches,
)
from mnist_probe.hooks import record
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.lenet import LeNet5
from mnist_probe.position import position_probes
from tests.conftest import mnist_root


class Square(nn.Module):
    def forward(self, x):
        return x * x


def equivariant_toy() -> nn.Module:
    """conv 1×1 (weight 1), x², global mean, then a linear read-out: every attribution of a digit
    shifted inside the image is the shifted attribution (zeros come in, and attribute nothing)."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    torch.manual_seed(0)
    return nn.Sequential(conv, Square(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 10)).eval()


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist(mnist_root(), "test")
    return images[:400], labels[:400]


@pytest.mark.parametrize("method", METHODS)
def test_an_equivariant_model_attributes_the_shifted_digit_where_it_moved(method, digits):
    images, labels = digits
    shifts = [(0, -1), (0, -3), (2, 1)]
    consistent = shift_consistency(equivariant_toy(), images[:20], labels[:20], shifts, method)
    assert np.allclose(consistent, 1.0, atol=1e-6), consistent
    if method == "grad_cam":  # a conv's maps weighted by one number per channel: it moves with any conv
        return
    torch.manual_seed(0)  # a dense read-out of every pixel: not equivariant
    dense = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 784, 10)).eval()
    assert max(shift_consistency(dense, images[:20], labels[:20], shifts, method)) < 0.9


def test_attributions_have_the_image_shape_and_saliency_is_the_gradient(digits):
    images, labels = digits
    net = LeNet5().eval()
    attr = attribute(net, images[:5], labels[:5], "saliency")
    assert attr.shape == (5, 28, 28) and torch.all(attr >= 0)
    x = (images[:1].float() / 255).unsqueeze(1).requires_grad_(True)
    net(x)[0, int(labels[0])].backward()
    assert torch.allclose(attr[0], x.grad[0, 0].abs(), atol=1e-6)
    assert correlation(attr, attr).tolist() == pytest.approx([1.0] * 5)


def test_the_receptive_field_of_the_study_and_lenet_layers():
    keras = KerasCNN()
    assert receptive_field(keras, "conv2d_1") == receptive_field(keras, 1)  # 5×5, stride 1, 2 px of padding
    assert receptive_field(keras, "conv2d_1").size == 5 and receptive_field(keras, "conv2d_1").offset == -2
    assert receptive_field(keras, "conv2d_2").size == 9
    pooled = receptive_field(keras, "conv2d_3")  # after a 2×2 pool: 10 px, then a 3×3 conv at stride 2
    assert (pooled.size, pooled.stride) == (14, 2)
    lenet = receptive_field(LeNet5(), "c3")  # 5×5, a 2×2 pool, 5×5 at stride 2
    assert (lenet.size, lenet.stride) == (5 + 1 + 2 * 4, 2)


def test_each_filters_top_patch_is_its_argmax_over_the_data(digits):
    images, _ = digits
    torch.manual_seed(0)
    net = LeNet5().eval()
    top = top_activations(net, images, "c3", k=9, batch_size=150)  # batches: the running top-k across them
    acts = record(net, images, "c3")["c3"]  # N × 16 × 10 × 10
    for c in range(acts.shape[1]):
        flat = acts[:, c].flatten()
        best = flat.topk(9).values
        assert torch.allclose(top["value"][c], best)
        n, y, x = int(top["image"][c, 0]), int(top["y"][c, 0]), int(top["x"][c, 0])
        assert acts[n, c, y, x] == flat.max()
    patches, _, field = top_patches(net, images, "c3", k=9)
    assert patches.shape == (16, 9, 1, field.size, field.size)  # filters × k × channels × field
    c = 0
    t, left, _, _ = field.box(int(top["y"][c, 0]), int(top["x"][c, 0]))
    image = torch.nn.functional.pad(images[int(top["image"][c, 0])].float() / 255, (28, 28, 28, 28))
    crop = image[t + 28 : t + 28 + field.size, left + 28 : left + 28 + field.size]
    assert torch.equal(patches[c, 0, 0], crop)


def test_each_filters_start_puts_its_strongest_patch_at_the_centre_unit(digits):
    images, _ = digits
    torch.manual_seed(0)
    net = LeNet5().eval()
    _, top, field = top_patches(net, images, "c3", k=1)
    centre = centre_unit(net, "c3")
    starts = centred_starts(images, top, field, centre)
    at_centre = record(net, starts, "c3")["c3"][:, :, centre[0], centre[1]]
    for c in range(16):  # the same receptive-field content: the same activation, unless the move cut it
        assert at_centre[c, c] == pytest.approx(float(top["value"][c, 0]), rel=0.05, abs=1e-3)


def test_activation_maximisation_excites_its_filter_more_than_noise():
    torch.manual_seed(0)
    net = LeNet5().eval()
    wanted = maximise_filters(net, "c3", channels=[0, 5], steps=60, seed=1)
    assert wanted.shape == (2, 1, 28, 28) and torch.all((wanted >= 0) & (wanted <= 1))
    assert torch.equal(wanted, maximise_filters(net, "c3", channels=[0, 5], steps=60, seed=1))  # seeded
    noise = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    made, base = record(net, wanted, "c3")["c3"], record(net, noise, "c3")["c3"]
    y, x = centre_unit(net, "c3")  # the unit it excites: the centre of the 10×10 map
    assert (y, x) == (5, 5)
    for row, c in enumerate([0, 5]):
        assert made[row, c, y, x] > base[row, c, y, x] + 0.1


def test_position_probes_do_not_depend_on_how_many_images_go_through_at_once(digits):
    """Batches are projected onto the same directions: a few images at a time gives the rows that
    all at once gives, projected layers included."""
    images, labels = digits
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)
    ).eval()
    probe = partial(
        position_probes, net, images[:60], labels[:60], radius=1, layers=["1", "2", "4"], max_dims=100
    )
    at_once, in_batches = probe(batch_size=500), probe(batch_size=7)
    assert [r.dims for r in at_once] == [3136, 784, 10]  # the first two are projected to 100
    for a, b in zip(at_once, in_batches, strict=True):
        assert a.layer == b.layer and a.dims == b.dims
        assert a.position_r2 == pytest.approx(b.position_r2, abs=1e-4)
        assert (a.position_acc, a.class_acc) == pytest.approx((b.position_acc, b.class_acc))


def test_a_layer_before_any_pooling_knows_the_shift_and_one_after_global_pooling_does_not(digits):
    """The position probes read the shift exactly off the (shifted) image itself (R² of (dx, dy) near
    1, every shift class right), and are at chance after a global pool, which forgets where the
    digit was; the class probe works on both."""
    images, labels = digits
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    toy = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 10)).eval()
    one = images[:1].expand(200, 28, 28).contiguous()  # one digit, 200 random shifts
    probes = position_probes(toy, one, labels[:1].expand(200), radius=1, layers=["0", "1"])
    rows = {r.layer: r for r in probes}
    assert rows["0"].position_acc == 1.0 and rows["0"].position_r2 > 0.95
    assert rows["1"].position_acc < 0.4 and rows["0"].position_chance == pytest.approx(1 / 9)
    assert rows["1"].position_r2 < 0.1


def grey_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with a 1-channel stem, as a user brings it for MNIST."""
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net.eval()


@pytest.mark.parametrize("make", [KerasCNN, LeNet5, grey_resnet18], ids=["keras_cnn", "lenet5", "resnet18"])
def test_grad_cam_equals_captums_layer_grad_cam(make):
    """attribute(..., 'grad_cam') computes the map itself (one backward pass that stops at the layer)
    and must give Captum's LayerGradCam, upsampled as LayerAttribution.interpolate does it."""
    from captum.attr import LayerAttribution, LayerGradCam

    from mnist_probe.attribution import _last_conv

    torch.manual_seed(0)
    net = make().eval()
    images, labels = load_mnist(mnist_root(), "test")
    x, y = images[:24].unsqueeze(1).float() / 255, labels[:24]
    ours = attribute(net, x, y, "grad_cam", batch_size=10)
    captum = LayerGradCam(net, dict(net.named_modules())[_last_conv(net)])
    cam = captum.attribute(x.clone().requires_grad_(), target=y, relu_attributions=True)
    theirs = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear").detach().sum(1)
    assert ours.shape == (24, 28, 28) and theirs.abs().max() > 0
    assert torch.allclose(ours, theirs, atol=1e-6 * float(theirs.abs().max()), rtol=1e-5)
