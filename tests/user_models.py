"""Models as people bring them, importable by the tests' command lines
(model._target_=tests.user_models.NAME): a Hugging Face image classifier (a ModelOutput), models
that return a tuple or a dict, and pytorch/examples' MNIST Net, trained on normalised inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tiny_hf_resnet(num_classes: int = 10, num_channels: int = 1) -> nn.Module:
    """transformers' ResNetForImageClassification, a tiny config (no downloaded weights): its
    forward returns an ImageClassifierOutputWithNoAttention whose .logits are the class scores."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=num_channels,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=num_classes,
    )
    return ResNetForImageClassification(config)


class TupleNet(nn.Module):
    """A CNN that returns (logits, features), as many research models do."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten()
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.fc(features), features


class DictNet(TupleNet):
    """The same network returning {"features": ..., "logits": ...}."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(x)
        return {"features": features, "logits": self.fc(features)}


class ScoresLastNet(TupleNet):
    """Its class scores second, behind the features: the tool cannot tell, model.output=1 says."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return features, self.fc(features)


class ExamplesNet(nn.Module):
    """pytorch/examples' mnist/main.py Net, as written there (BSD-3-Clause): trained on
    transforms.Normalize((0.1307,), (0.3081,)); outputs log-probabilities."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output
