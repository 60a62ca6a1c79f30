"""The study's Keras CNN, layer for layer (KerasCNN: Keras 2's names and layer numbers h), and the
variant with anti-aliased pooling. Alone in its module, whose source keys the cache: editing how models
are loaded does not retrain it."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from mnist_probe.names import CODE_LAYER, layer_h, layer_name
from mnist_probe.outputs import NUM_CLASSES


class Conv2dReLU(nn.Conv2d):
    """Conv2D(activation='relu'): Keras folds the ReLU into the layer; its hook sees post-ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class LinearReLU(nn.Linear):
    """Dense(activation='relu')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class MaxBlurPool2d(nn.Module):
    """Anti-aliased max-pooling (Zhang 2019, "Making convolutional networks shift-invariant again"):
    max over 2×2 windows with stride 1, then a 3×3 binomial blur ([1, 2, 1]ᵀ[1, 2, 1] / 16) taken
    with stride 2, so a 1-px shift of the input changes the output smoothly instead of aliasing.
    Same output size as MaxPool2d(2, 2) on even inputs (28 -> 14 -> 7) and no parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16
        self.register_buffer("blur", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, stride=1)  # 28 -> 27
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")  # -> 29
        return F.conv2d(x, self.blur.to(x.dtype), stride=2, groups=x.shape[1])  # -> 14


class KerasCNN(nn.Sequential):
    """The study's 12-layer Sequential: 983,626 parameters, glorot_uniform kernels, zero biases.

    Input N×1×28×28 in [0, 1] (in_channels × input_size: built for another data set's images);
    output num_classes logits (softmax gives the probabilities Keras printed).
    Flatten is C×H×W (Keras: H×W×C); this only matters if weights are ported from Keras.
    anti_alias=True swaps both max-poolings for MaxBlurPool2d (model=keras_cnn_aa): the same
    layers, names and parameters, pooling that aliases less under shifts.
    """

    # What the study looked at (mnist_probe.model_layers reads these): feature maps at h = 1, 2, 5, 6, 8,
    # the deformation under shifts at h = 2, 6, 8, the code vector at h = 10.
    feature_layers = ("conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dropout_2")
    shift_layers = ("conv2d_2", "conv2d_4", "dropout_2")
    code_layer = CODE_LAYER

    def __init__(
        self,
        filters: int = 64,
        dense: int = 256,
        num_classes: int = NUM_CLASSES,
        anti_alias: bool = False,
        in_channels: int = 1,
        input_size: int | tuple[int, int] = 28,
    ) -> None:
        f, (height, width) = filters, side_lengths(input_size)

        def pool() -> nn.Module:
            return MaxBlurPool2d(f) if anti_alias else nn.MaxPool2d(2, 2)

        super().__init__(
            OrderedDict(
                conv2d_1=Conv2dReLU(in_channels, f, 5, padding="same"),
                conv2d_2=Conv2dReLU(f, f, 5, padding="same"),
                max_pooling2d_1=pool(),
                dropout_1=nn.Dropout(0.25),
                conv2d_3=Conv2dReLU(f, f, 3, padding="same"),
                conv2d_4=Conv2dReLU(f, f, 3, padding="same"),
                max_pooling2d_2=pool(),
                dropout_2=nn.Dropout(0.25),
                flatten_1=nn.Flatten(),
                dense_1=LinearReLU(f * (height // 4) * (width // 4), dense),  # two poolings: 28 -> 7
                dropout_3=nn.Dropout(0.5),
                dense_2=nn.Linear(dense, num_classes),
            )
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)  # = Keras glorot_uniform (same fans)
                nn.init.zeros_(module.bias)

    def layer(self, layer: int | str) -> nn.Module:
        """The module at h index or Keras name."""
        return getattr(self, layer_name(layer))

    def upto(self, layer: int | str) -> nn.Sequential:
        """The sub-network from the input through layer h (inclusive)."""
        return nn.Sequential(OrderedDict(list(self.named_children())[: layer_h(layer)]))


def anti_aliased_cnn(
    filters: int = 64,
    dense: int = 256,
    num_classes: int = NUM_CLASSES,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 28,
) -> KerasCNN:
    """The study's network with anti-aliased max-pooling (model=keras_cnn_aa)."""
    return KerasCNN(
        filters, dense, num_classes, anti_alias=True, in_channels=in_channels, input_size=input_size
    )


def side_lengths(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) of a network's input_size argument: one side for a square, or both."""
    if isinstance(input_size, int):
        return input_size, input_size
    return int(input_size[0]), int(input_size[1])
