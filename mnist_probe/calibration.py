"""Can the CNN's probabilities be trusted? Expected calibration error (ECE, 15 bins), negative
log-likelihood and Brier score, the reliability curve behind the ECE, and temperature scaling
(Guo et al. 2017): one scalar T > 0 fitted on held-out logits, logits / T, accuracy unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from mnist_probe.outputs import top1_accuracy
from mnist_probe.rows import Scores

BINS = 15  # equal-width confidence bins of ECE and the reliability diagram


def scores(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = BINS) -> Scores:
    """ECE (torchmetrics, L1 over n_bins equal-width confidence bins), NLL, Brier and accuracy."""
    logits = logits.double()  # logits in the thousands: softmax and log-softmax stay exact
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(labels, probs.shape[1]).double()
    return Scores(
        ece=multiclass_calibration_error(probs, labels, probs.shape[1], n_bins=n_bins).item(),
        nll=F.cross_entropy(logits, labels).item(),
        brier=((probs - onehot) ** 2).sum(1).mean().item(),
        accuracy=top1_accuracy(probs, labels),
    )


def reliability(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = BINS) -> dict[str, list]:
    """Per confidence bin: mean confidence, accuracy and count (the reliability diagram's bars)."""
    probs = torch.softmax(logits.double(), 1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence, edges[1:-1], right=True)  # bin b holds (edges[b], edges[b+1]]
    out: dict[str, list] = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        out["count"].append(n)
        out["confidence"].append(confidence[inside].mean().item() if n else float("nan"))
        out["accuracy"].append(correct[inside].mean().item() if n else float("nan"))
    return out


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T minimising the NLL of logits / T (LBFGS on log T, so T stays > 0)."""
    logits = logits.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
