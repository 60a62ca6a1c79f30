"""LeNet-5 (LeCun et al., 1998) for 28×28 MNIST: a classic CNN with its own layer names, to open up
beside the study's (model=lenet5).

The paper's layers, with the modern defaults most reimplementations use: ReLU for its scaled tanh,
max-pooling for its trainable subsampling, a full C3 for its partial connection table, and C1
padded by 2 so that 28×28 digits take the 32×32 path of the original (C5 is then 16×5×5 -> 120).
Built for other images (in_channels, input_size), C5 reads whatever S4 leaves (16×6×6 for 32×32).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mnist_probe.keras_cnn import side_lengths
from mnist_probe.outputs import NUM_CLASSES


class LeNet5(nn.Sequential):
    """C1 6@28×28, S2 6@14×14, C3 16@10×10, S4 16@5×5, C5 120, F6 84, output 10 logits: 61,706
    parameters. Its code vector is F6's 84 values (the input of the last nn.Linear)."""

    def __init__(
        self, num_classes: int = NUM_CLASSES, in_channels: int = 1, input_size: int | tuple[int, int] = 28
    ) -> None:
        height, width = side_lengths(input_size)
        s4 = ((height // 2 - 4) // 2, (width // 2 - 4) // 2)  # C1 keeps the size, S2 halves, C3 takes 4
        super().__init__(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, 5, padding=2),
                relu1=nn.ReLU(),
                s2=nn.MaxPool2d(2),
                c3=nn.Conv2d(6, 16, 5),
                relu3=nn.ReLU(),
                s4=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                c5=nn.Linear(16 * s4[0] * s4[1], 120),
                relu5=nn.ReLU(),
                f6=nn.Linear(120, 84),
                relu6=nn.ReLU(),
                output=nn.Linear(84, num_classes),
            )
        )
