"""What each filter wants: for one conv layer, the test-set patches (receptive-field crops) that excite
each of its filters most, and an input optimised to excite each filter (activation maximisation).
Both work on any model with 1-channel 28×28 inputs, where tools made for ImageNet models do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mnist_probe.data import to_float
from mnist_probe.hooks import output_of, record
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model import device_of
from mnist_probe.outputs import input_shape
from mnist_probe.translation import translate


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels one unit of a layer sees: a size×size box, `stride` pixels further for each
    step along the map, starting `offset` pixels from the image's corner (negative: in the padding)."""

    size: int
    stride: int
    offset: int

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x)'s box in input pixels, bottom/right exclusive."""
        top, left = self.offset + y * self.stride, self.offset + x * self.stride
        return top, left, top + self.size, left + self.size


def receptive_field(model: nn.Module, layer: str, samples: int = 16) -> ReceptiveField:
    """The receptive field of a layer's units, read off the gradient of two neighbouring units with
    respect to the input: the pixels whose gradient is nonzero for any of `samples` random inputs
    (a max-pool passes gradient to one pixel of its window per input), so it holds for any stack
    of convs and pools."""
    (name,) = resolve_layers(model, layer)
    model.eval()
    x = torch.rand(samples, *input_shape(model), generator=torch.Generator().manual_seed(0))
    x = x.to(device_of(model))
    x.requires_grad_(True)
    act = output_of(model, name, x)
    h, w = act.shape[-2:]
    rows = []
    y0 = h // 2 if h // 2 + 1 < h else h // 2 - 1  # two neighbouring rows, the centre's first
    for y in (y0, y0 + 1) if h > 1 else (0,):
        (grad,) = torch.autograd.grad(act[:, :, y, w // 2].sum(), x, retain_graph=True)
        seen = (grad.abs().sum((0, 1)) > 0).nonzero()[:, 0]
        rows.append((y, int(seen.min()), int(seen.max())))
    y0, top0, bottom0 = rows[0]
    stride = rows[1][1] - top0 if len(rows) > 1 else 1
    return ReceptiveField(size=bottom0 - top0 + 1, stride=max(stride, 1), offset=top0 - y0 * max(stride, 1))


@torch.no_grad()
def top_activations(
    model: nn.Module, images: torch.Tensor, layer: str, k: int = 9, batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """For each filter (channel) of a conv layer, its k largest activations over the images: their
    values and (image, y, x) positions, each C×k, largest first."""
    best_v = best_i = None
    for start in range(0, len(images), batch_size):
        act = record(model, images[start : start + batch_size], layer)[resolve_layers(model, layer)[0]]
        n, c, h, w = act.shape
        flat = act.permute(1, 0, 2, 3).reshape(c, -1)  # C × (n·h·w)
        v, i = flat.topk(min(k, flat.shape[1]), dim=1)
        i = i + start * h * w  # positions in the whole set
        if best_v is None:
            best_v, best_i = v, i
        else:
            v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
            best_v, order = v.topk(min(k, v.shape[1]), dim=1)
            best_i = i.gather(1, order)
    image, rest = best_i // (h * w), best_i % (h * w)
    return {"value": best_v, "image": image, "y": rest // w, "x": rest % w}


def centred_starts(
    images_u8: torch.Tensor, top: dict[str, torch.Tensor], field: ReceptiveField, centre: tuple[int, int]
) -> torch.Tensor:
    """For each filter, its strongest test image moved so that its strongest unit sits at the centre
    unit (filters × channels × H × W): where maximise_filters starts, so that the unit is on from the
    first step."""
    x = to_float(images_u8)
    out = []
    for c in range(top["image"].shape[0]):
        dy = (centre[0] - int(top["y"][c, 0])) * field.stride
        dx = (centre[1] - int(top["x"][c, 0])) * field.stride
        out.append(translate(x[int(top["image"][c, 0])], dx, dy))
    return torch.stack(out)


def top_patches(
    model: nn.Module, images_u8: torch.Tensor, layer: str, k: int = 9
) -> tuple[torch.Tensor, dict[str, torch.Tensor], ReceptiveField]:
    """The receptive-field crops of each filter's k strongest activations: filters×k×channels×size×size
    patches (zero outside the image), with the positions (top_activations) and the receptive field."""
    field = receptive_field(model, layer)
    top = top_activations(model, images_u8, layer, k)
    x = to_float(images_u8)
    c, kk = top["image"].shape
    patches = torch.zeros(c, kk, x.shape[1], field.size, field.size)
    for ci in range(c):
        for j in range(kk):
            box = field.box(int(top["y"][ci, j]), int(top["x"][ci, j]))
            patches[ci, j] = crop(x[int(top["image"][ci, j])], box)
    return patches, top, field


def centre_unit(model: nn.Module, layer: str) -> tuple[int, int]:
    """(y, x) of the unit at the centre of a layer's map: the one maximise_filters excites."""
    (name,) = resolve_layers(model, layer)
    with torch.no_grad():
        h, w = output_of(model, name, torch.zeros(1, *input_shape(model), device=device_of(model))).shape[-2:]
    return h // 2, w // 2


def crop(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """…×28×28 images cut to a (top, left, bottom, right) box, zero where it leaves the image."""
    top, left, bottom, right = box
    size = images.shape[-1]
    padded = torch.nn.functional.pad(images, (size, size, size, size))
    return padded[..., top + size : bottom + size, left + size : right + size]


def maximise_filters(
    model: nn.Module,
    layer: str,
    channels: list[int] | None = None,
    steps: int = 200,
    lr: float = 0.05,
    tv: float = 0.05,
    l2: float = 0.01,
    seed: int = 0,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """An input (filters × channels × H × W, in [0, 1]) optimised to excite each filter of a layer
    at the centre unit of its map (centre_unit gives the unit; receptive_field its box): gradient
    ascent with Adam from seeded noise, with the usual regularisers (total variation, an L2 penalty,
    random jitter of up to 1 px each step). One batch: a row per filter. `start` (the same shape)
    starts each filter from an image instead of noise: a ReLU unit that is off on noise gets no
    gradient to turn on."""
    (name,) = resolve_layers(model, layer)
    model.eval()
    device, generator = device_of(model), torch.Generator().manual_seed(seed)
    if channels is None:
        blank = torch.zeros(1, *input_shape(model), device=device)
        channels = list(range(output_of(model, name, blank).shape[1]))
    n = len(channels)
    noise = 0.1 * torch.randn(n, *input_shape(model), generator=generator)
    if start is None:
        logits = noise - 2.0
    else:  # the image's logit (clipped off 0 and 1) plus a little noise
        logits = torch.logit(start.reshape(n, *input_shape(model)).clamp(0.05, 0.95)) + noise
    logits = logits.to(device).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        x = torch.sigmoid(logits)
        act = output_of(model, name, torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))
        h, w = act.shape[-2:]
        wanted = act[torch.arange(n), channels, h // 2, w // 2]
        variation = (x.diff(dim=-2).abs().mean() + x.diff(dim=-1).abs().mean()) * n
        loss = -wanted.sum() + tv * variation + l2 * (x**2).mean() * n
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.sigmoid(logits).detach().cpu()


def what_filters_want(
    model: nn.Module,
    layer: str,
    images_u8: torch.Tensor,
    top_k: int = 9,
    steps: int = 100,
    seed: int = 0,
    filters: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per filter of a conv layer (its first `filters`; None: all): its top_k test patches
    (receptive-field crops of the images that excite it most) and, with steps > 0, the input optimised
    to excite its centre unit, started from its top images and cut to the same receptive field as the
    patches (None with steps=0)."""
    patches, top, field = top_patches(model, images_u8, layer, top_k)
    kept = slice(0, filters)
    patches, top = patches[kept], {k: v[kept] for k, v in top.items()}
    if not steps:
        return patches, None
    centre = centre_unit(model, layer)
    start = centred_starts(images_u8, top, field, centre)
    made = maximise_filters(model, layer, list(range(len(patches))), steps=steps, seed=seed, start=start)
    return patches, crop(made, field.box(*centre))
