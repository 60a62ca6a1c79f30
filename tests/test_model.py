import math

import pytest
import torch
import torch.nn.functional as F

from mnist_probe import UserError
from mnist_probe.keras_cnn import KerasCNN, MaxBlurPool2d
from mnist_probe.model import LAYER_NAMES, layer_h, layer_name

# docs/ARCHITECTURE.md's layer table: output shape of each h for one image.
SHAPES = [
    (64, 28, 28),
    (64, 28, 28),
    (64, 14, 14),
    (64, 14, 14),
    (64, 14, 14),
    (64, 14, 14),
    (64, 7, 7),
    (64, 7, 7),
    (3136,),
    (256,),
    (256,),
    (10,),
]


def test_parameter_count_matches_keras():
    assert sum(p.numel() for p in KerasCNN().parameters()) == 983_626


def test_layer_names_in_keras_order():
    names = [name for name, _ in KerasCNN().named_children()]
    assert names == LAYER_NAMES
    assert names[0] == "conv2d_1" and names[9] == "dense_1" and len(names) == 12


def test_each_layer_output_shape():
    model = KerasCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    for h, (layer, shape) in enumerate(zip(model, SHAPES, strict=True), start=1):
        x = layer(x)
        assert tuple(x.shape[1:]) == shape, f"h={h} {LAYER_NAMES[h - 1]}"


def test_relu_folded_into_conv_and_dense_outputs():
    model = KerasCNN().eval()
    x = torch.rand(4, 1, 28, 28)
    for h in (1, 2, 5, 6, 10):
        assert model.upto(h)(x).min() >= 0
    assert model(x).min() < 0  # dense_2 gives logits, not probabilities


def test_glorot_uniform_init_and_zero_bias():
    torch.manual_seed(0)
    model = KerasCNN()
    for name in ("conv2d_2", "dense_1"):
        w = model.layer(name).weight
        fan_in = w[0].numel()
        fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() == 4 else 1)
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= limit
        assert w.abs().max() > 0.95 * limit  # fills the whole range
        # uniform(-a, a) has std a/sqrt(3)
        assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.03)
        assert torch.count_nonzero(model.layer(name).bias) == 0


def test_layer_lookup_by_h_and_name():
    assert layer_name(10) == "dense_1" and layer_name("5") == "conv2d_3"
    assert layer_h("dropout_2") == 8
    with pytest.raises(UserError, match="h runs from 1 to 12"):
        layer_name(13)
    with pytest.raises(UserError, match="valid names"):
        layer_name("conv9")


def test_anti_aliased_pooling_keeps_the_layers_and_shifts_more_smoothly():
    plain, smooth = KerasCNN().eval(), KerasCNN(anti_alias=True).eval()
    smooth.load_state_dict(plain.state_dict())  # the same parameters: only pooling differs
    assert sum(p.numel() for p in smooth.parameters()) == 983_626
    x = torch.rand(2, 1, 28, 28)
    for h, (layer, shape) in enumerate(zip(smooth, SHAPES, strict=True), start=1):
        x = layer(x)
        assert tuple(x.shape[1:]) == shape, f"h={h}"
    impulse = torch.zeros(1, 1, 28, 28)
    impulse[..., 13, 13] = 1
    outs = [MaxBlurPool2d(1)(torch.roll(impulse, s, dims=3)) for s in (0, 1)]
    plain_outs = [torch.nn.MaxPool2d(2, 2)(torch.roll(impulse, s, dims=3)) for s in (0, 1)]
    # a 1-px move of a dot: max-pooling jumps a whole output cell, the blurred pool shifts mass gently
    assert (plain_outs[0] - plain_outs[1]).abs().sum() == 2  # all of it moves to the next cell
    assert (outs[0] - outs[1]).abs().sum() <= 1.0  # half of it moves
    assert outs[0].sum() == pytest.approx(outs[1].sum())  # and none is lost


def test_clipped_loss_is_cross_entropy_until_it_clips():
    from mnist_probe.lit import clipped_cross_entropy
    from mnist_probe.specs import KERAS_EPSILON

    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(64, 10, generator=gen) * 2, torch.randint(0, 10, (64,), generator=gen)
    assert torch.allclose(clipped_cross_entropy(logits, labels), F.cross_entropy(logits, labels), atol=1e-6)
    # A hopelessly wrong example is clipped too: its loss stops at -log(epsilon).
    wrong = torch.tensor([[0.0, 40.0] + [0.0] * 8])
    loss = clipped_cross_entropy(wrong, torch.tensor([0])).item()
    assert loss == pytest.approx(-math.log(KERAS_EPSILON), rel=1e-4)


def test_clipped_loss_stops_pushing_an_example_it_is_sure_of():
    """The over-confidence hypothesis: Keras's clip zeroes the gradient of a sure example, while
    cross-entropy on logits keeps pushing its logits apart."""
    from mnist_probe.lit import clipped_cross_entropy

    for margin, clipped in [(20.0, True), (5.0, False)]:  # p(true) = 1 - 2e-8 vs 1 - 6e-2
        logits = torch.zeros(1, 10)
        logits[0, 3] = margin
        for loss_fn, zero in [(clipped_cross_entropy, clipped), (F.cross_entropy, False)]:
            x = logits.clone().requires_grad_()
            loss_fn(x, torch.tensor([3])).backward()
            assert (x.grad.abs().max().item() == 0.0) == zero, (loss_fn.__name__, margin)


def test_clipped_loss_never_corrects_a_sure_mistake_and_confidence_counts_them():
    """The other side of the clip: an error whose true class gets P < epsilon adds no gradient, so a
    training with the clipped loss leaves it wrong; confidence() counts exactly those errors."""
    from mnist_probe.lit import clipped_cross_entropy
    from mnist_probe.scoring import confidence

    labels = torch.tensor([3, 3])
    logits = torch.zeros(2, 10)
    logits[0, 5], logits[1, 5] = 20.0, 10.0  # P(true) = 2e-9 (below 1e-7) and 4.5e-5 (above)
    for loss_fn, stuck in [(clipped_cross_entropy, [True, False]), (F.cross_entropy, [False, False])]:
        for row, zero in enumerate(stuck):
            x = logits[row : row + 1].clone().requires_grad_()
            loss_fn(x, labels[row : row + 1]).backward()
            assert (x.grad.abs().max().item() == 0.0) == zero, (loss_fn.__name__, row)
    sure = confidence(logits, labels)
    assert sure.errors == 2 and sure.errors_below_epsilon == 1


def test_litcnn_learns_with_the_clipped_loss():
    from mnist_probe.data import load_mnist, to_float
    from mnist_probe.lit import LitCNN
    from tests.conftest import mnist_root

    images, labels = load_mnist(mnist_root(), "test")
    x, y = to_float(images[:64]), labels[:64]
    torch.manual_seed(0)
    lit = LitCNN(KerasCNN(filters=16), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), loss="clipped")
    opt = lit.optimizer_factory(lit.parameters())
    losses = []
    for _ in range(30):  # the study's network with 16 filters a layer: a tenth of the compute
        opt.zero_grad()
        loss = lit.loss(lit(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses  # measured: 2.31 -> 0.53 in 30 steps on 64 real digits


def test_every_loss_offered_is_implemented_and_label_smoothing_is_less_sure():
    from mnist_probe.lit import LOSS_FUNCTIONS as IMPLEMENTED
    from mnist_probe.schema import LOSSES

    assert sorted(LOSSES) == sorted(IMPLEMENTED)
    # label smoothing 0.1 over 10 classes: the loss is least at p(true) = 0.91, not at 1
    sure = torch.zeros(1, 10)
    sure[0, 3] = 30.0
    best = torch.full((1, 10), 0.0)
    best[0, 3] = math.log(0.91 / 0.01)
    label = torch.tensor([3])
    smoothed = IMPLEMENTED["label_smoothing"]
    assert smoothed(best, label) < smoothed(sure, label)
    assert F.cross_entropy(sure, label) < F.cross_entropy(best, label)
