"""mnist_probe beside the libraries that do one of its jobs each, on the same inputs in one process:
recording every layer (torchvision's create_feature_extractor, TorchLens), Grad-CAM
(pytorch-grad-cam, and a plain autograd Grad-CAM written out here as the floor) and minibatch CKA
between two networks (torch-cka). The peers come with the `bench` extra (`make bench` installs it);
a peer that is not installed gets a row saying so, with no value. Each row gives seconds per 1,000
images (median of the repeats, the contenders alternated so that drift in the machine's speed hits
all alike) and how far its values are from mnist_probe's."""

from __future__ import annotations

import copy
import importlib.util
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mnist_probe.attribution import _last_conv, attribute, correlation
from mnist_probe.bench.common import alternated, median_seconds
from mnist_probe.cka import cka_between
from mnist_probe.hooks import record
from mnist_probe.layer_names import resolve_layers, split_layer

EXTRA = "pip install -e '.[bench]'"
# Values that differ by less than this times the layer's largest are the same up to float32 rounding
# (TorchLens's ResNet-18 layer4 reads 3e-7 off record's).
ROUNDING = 1e-5


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def grey_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with a 1-channel stem, as a user brings it for MNIST: its blocks'
    ReLU runs twice a pass (recorded per call) and its bn2 output takes the shortcut in place."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model.eval()


def fx_return_nodes(model: nn.Module, layers: list[str]) -> tuple[dict[str, str], list[type]]:
    """torchvision's feature extractor's return_nodes for record's layer names, and the module types
    made leaves of the trace: the k-th call of a module that runs several times is 'PATH:k' here
    and FX's k-th node of it (FX renames nodes, 'relu_1', 'max_pooling2d' for 'max_pooling2d_1')."""
    from torchvision.models.feature_extraction import NodePathTracer

    where = {split_layer(model, name)[:2]: name for name in layers}  # (path, call or None) -> name
    paths = {path for path, _ in where}
    leaves = list({type(m) for n, m in model.named_modules() if n in paths})
    tracer = NodePathTracer(leaf_modules=leaves)
    calls: Counter[str] = Counter()
    nodes = {}
    for node in tracer.trace(model.eval()).nodes:
        if node.op == "call_module" and node.target in paths:
            calls[node.target] += 1
            name = where.get((node.target, calls[node.target])) or where.get((node.target, None))
            if name is not None:
                nodes[tracer.node_to_qualname[node]] = name
    return nodes, leaves


def torchlens_outputs(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """TorchLens's saved output of every layer of record's: each module pass's output layer
    (log[path] alone is the pass's first operation: the conv before a Conv2d subclass's ReLU)."""
    import torchlens

    log = torchlens.log_forward_pass(model, x, layers_to_save="all")
    out = {}
    for name in layers:
        path, call, _ = split_layer(model, name)
        module = log.modules[path]
        passed = module.passes[call] if call is not None else module
        out[name] = log[passed.output_layers[-1]].activation
    return out


@torch.no_grad()
def bench_recording(
    model: nn.Module, images: torch.Tensor, batch: int, repeats: int, label: str = ""
) -> list[dict]:
    """Every layer 'all' records (every call of a module that runs several times), for every image:
    mnist_probe's record, torchvision's feature extractor and TorchLens (each batch's tensors
    concatenated per layer, as record returns them), beside a plain forward pass that records nothing,
    and the floor any recorder that returns tensors pays: the same bytes copied into new memory; and
    record into the tensors of its previous call (out=), which pays no new memory. A peer's values that
    differ from record's are counted by layer (an in-place operation after a layer changes what a
    recorder that keeps the tensor itself returns: torchvision's extractor gives each ResNet bn1 after
    the in-place ReLU that follows it)."""
    model = model.eval()
    layers = resolve_layers(model, "all")
    batches = [images[s : s + batch] for s in range(0, len(images), batch)]

    def concatenated(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {name: torch.cat([o[name] for o in outputs]) for name in layers}

    reused = record(model, images, layers, batch)
    contenders: dict[str, Callable[[], object]] = {
        "plain forward pass (records nothing)": lambda: [model(b) for b in batches],
        "mnist_probe record": lambda: record(model, images, layers, batch),
        "mnist_probe record into its last call's tensors (out=)": lambda: record(
            model, images, layers, batch, out=reused
        ),
    }
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes, leaves = fx_return_nodes(model, layers)
    extractor = create_feature_extractor(model, return_nodes=nodes, tracer_kwargs={"leaf_modules": leaves})
    contenders["torchvision create_feature_extractor"] = lambda: concatenated([extractor(b) for b in batches])
    missing = []
    if installed("torchlens"):
        contenders["TorchLens log_forward_pass"] = lambda: concatenated(
            [torchlens_outputs(model, b, layers) for b in batches]
        )
    else:
        missing.append("TorchLens")
    seconds = alternated(contenders, repeats)
    ours = reused  # what the last call wrote
    seconds["the copy alone: the same bytes into new memory"] = median_seconds(
        lambda: [torch.empty_like(a).copy_(a) for a in ours.values()], repeats
    )
    per_k = 1000 / len(images)
    plain = seconds["plain forward pass (records nothing)"]
    what = f"record all {len(layers)} layers{label}"
    rows = []
    for name, s in seconds.items():
        rows.append({"what": f"{what}: {name}", "value": s * per_k, "unit": "s/1000 img"})
        if s is not plain:
            rows.append({"what": f"  {name}{label} / plain forward pass", "value": s / plain, "unit": "x"})
        if name.startswith(("torchvision", "TorchLens")):
            theirs = contenders[name]()
            gaps = {k: float((theirs[k] - ours[k]).abs().max()) for k in layers}
            differ = sum(gaps[k] > ROUNDING * (1 + float(ours[k].abs().max())) for k in layers)
            rows += [
                {
                    "what": f"  {name}{label}: largest |difference| from record",
                    "value": max(gaps.values()),
                    "unit": "",
                },
                {
                    "what": f"  {name}{label}: layers whose values differ from record's (beyond rounding)",
                    "value": differ,
                    "unit": f"of {len(layers)}",
                },
            ]
    rows += [
        {"what": f"{what}: {peer} not installed ({EXTRA})", "value": None, "unit": ""} for peer in missing
    ]
    return rows


# Peak RSS (/proc's VmHWM, KiB) of recording every layer in a fresh process: once the model and the
# images are in memory and 8 images have run, and after record returned, with the bytes it returned.
RECORD_MEMORY = """
import re, sys, torch
from mnist_probe.data import load_mnist, to_float
from mnist_probe.hooks import record
from mnist_probe.keras_cnn import KerasCNN
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
torch.manual_seed(0)
images = to_float(load_mnist(sys.argv[1], "test")[0][: int(sys.argv[2])])
model = KerasCNN().eval()
record(model, images[:8])  # the trace and torch's own start-up, before the baseline
before = hwm()
acts = record(model, images)
print(before, hwm(), sum(a.numel() * a.element_size() for a in acts.values()) // 1024)
"""


def bench_record_memory(root: str, images: int) -> list[dict]:
    """Peak memory of record (every layer of the study's CNN, `images` test images) above what the
    process held before, against the activations it returned: 1.0 would be no copy beyond them."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", RECORD_MEMORY, root, str(images)], check=True, capture_output=True, text=True
    ).stdout.split()
    before, peak, returned = (int(v) / 1024 for v in out[-3:])
    return [
        {
            "what": f"record all 12 layers, {images} images: activations returned",
            "value": returned,
            "unit": "MiB",
        },
        {"what": "  peak memory above the process's before recording", "value": peak - before, "unit": "MiB"},
        {"what": "  peak above / activations returned", "value": (peak - before) / returned, "unit": "x"},
    ]


def plain_grad_cam(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The least a Grad-CAM can do, written out as a user would: a hook, one forward, one backward."""
    kept = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    scores = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(scores[torch.arange(len(x)), targets].sum(), kept[0])
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * kept[0]).sum(1, keepdim=True))
    return F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def bench_grad_cam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch: int, repeats: int
) -> list[dict]:
    """Grad-CAM of the last conv layer for every image: mnist_probe's attribute, a plain autograd
    Grad-CAM and pytorch-grad-cam's GradCAM (which scales each map to [0, 1]: compared by Pearson)."""
    model = model.eval()
    layer = dict(model.named_modules())[_last_conv(model)]
    chunks = [(images[s : s + batch], targets[s : s + batch]) for s in range(0, len(images), batch)]
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "mnist_probe attribute": lambda: attribute(model, images, targets, "grad_cam", batch_size=batch),
        "plain autograd": lambda: torch.cat([plain_grad_cam(model, layer, x, t) for x, t in chunks]),
    }
    missing = []
    if installed("pytorch_grad_cam"):
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = GradCAM(model, [layer])

        def theirs() -> torch.Tensor:
            maps = [cam(x, [ClassifierOutputTarget(int(k)) for k in t]) for x, t in chunks]
            return torch.cat([torch.as_tensor(m) for m in maps])

        contenders["pytorch-grad-cam GradCAM"] = theirs
    else:
        missing.append("pytorch-grad-cam")
    seconds = alternated(contenders, repeats)
    ours = contenders["mnist_probe attribute"]()
    plain = seconds["plain autograd"]
    rows = []
    for name, s in seconds.items():
        rows.append({"what": f"Grad-CAM: {name}", "value": 1000 * s / len(images), "unit": "ms/img"})
        if s is not plain:
            rows.append({"what": f"  {name} / plain autograd", "value": s / plain, "unit": "x"})
        if name != "mnist_probe attribute":
            r = correlation(ours, contenders[name]().float())
            rows.append(
                {
                    "what": f"  {name}: least Pearson r with mnist_probe's maps",
                    "value": float(r.min()),
                    "unit": "",
                }
            )
    rows += [
        {"what": f"Grad-CAM: {peer} not installed ({EXTRA})", "value": None, "unit": ""} for peer in missing
    ]
    return rows


def plain_saliency(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """|d score / d input|, channels summed: the gradient a user would take by hand."""
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(x)[torch.arange(len(x)), targets].sum(), x)
    return grad.abs().sum(1)


def bench_saliency(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch: int, repeats: int
) -> list[dict]:
    """Saliency for every image: mnist_probe's attribute (Captum's Saliency) against a plain autograd
    gradient, and the largest difference between their maps."""
    model = model.eval()
    chunks = [(images[s : s + batch], targets[s : s + batch]) for s in range(0, len(images), batch)]
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "mnist_probe attribute": lambda: attribute(model, images, targets, "saliency", batch_size=batch),
        "plain autograd": lambda: torch.cat([plain_saliency(model, x, t) for x, t in chunks]),
    }
    seconds = alternated(contenders, repeats)
    gap = float((contenders["mnist_probe attribute"]() - contenders["plain autograd"]()).abs().max())
    ours, plain = seconds["mnist_probe attribute"], seconds["plain autograd"]
    return [
        {"what": "saliency: mnist_probe attribute", "value": 1000 * ours / len(images), "unit": "ms/img"},
        {"what": "saliency: plain autograd", "value": 1000 * plain / len(images), "unit": "ms/img"},
        {"what": "  mnist_probe attribute / plain autograd", "value": ours / plain, "unit": "x"},
        {"what": "  saliency: largest |difference| between the two maps", "value": gap, "unit": ""},
    ]


def bench_cka(
    model_a: nn.Module, model_b: nn.Module, images: torch.Tensor, layers: list[str], batch: int, repeats: int
) -> list[dict]:
    """Minibatch linear CKA between `layers` of two networks (the same unbiased HSIC estimator and
    minibatches): mnist_probe's cka_between against torch-cka's CKA.compare (float32; it hooks the
    models for good, so each call gets fresh copies)."""
    model_a, model_b = model_a.eval(), model_b.eval()
    contenders: dict[str, Callable[[], object]] = {
        "mnist_probe cka_between": lambda: cka_between(model_a, model_b, images, layers, layers, batch)[2],
    }
    if not installed("torch_cka"):
        return [{"what": f"CKA: torch-cka not installed ({EXTRA})", "value": None, "unit": ""}]
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    def theirs() -> torch.Tensor:
        cka = CKA(copy.deepcopy(model_a), copy.deepcopy(model_b), model1_layers=layers, model2_layers=layers)
        with torch.no_grad():
            cka.compare(DataLoader(TensorDataset(images), batch_size=batch))
        return cka.export()["CKA"]

    contenders["torch-cka CKA.compare"] = theirs
    seconds = alternated(contenders, repeats, warm=False)
    gap = float((torch.as_tensor(contenders["mnist_probe cka_between"]()) - theirs()).abs().max())
    what = f"CKA {len(layers)}×{len(layers)} layers, {len(images)} images, minibatch {batch}"
    ours, peer = seconds["mnist_probe cka_between"], seconds["torch-cka CKA.compare"]
    return [
        {"what": f"{what}: mnist_probe cka_between", "value": ours, "unit": "s"},
        {"what": f"{what}: torch-cka CKA.compare", "value": peer, "unit": "s"},
        {"what": "  torch-cka / mnist_probe", "value": peer / ours, "unit": "x"},
        {"what": "  largest |difference| between the two matrices", "value": gap, "unit": ""},
    ]
