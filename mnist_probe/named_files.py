"""The files a config names, checked before any work: MNIST's four, the cache folder and a page's folder
(creatable), report.compare's page.json, and a checkpoint: there, a model file by its first bytes,
and no pickled code in it."""

from __future__ import annotations

from pathlib import Path

from mnist_probe.checks import creatable, no_pickled_code
from mnist_probe.errors import UserError, missing_checkpoint
from mnist_probe.idx_files import require_files
from mnist_probe.names import PAGE_JSON

# How a model file starts: a zip (torch.save since 1.6, Lightning's .ckpt, Keras 3's .keras), a
# pickle (torch.save's legacy format), HDF5 (Keras 2's .h5), an ONNX protobuf (field 1, ir_version).
MODEL_MAGIC = {b"PK\x03\x04": "zip", b"\x80": "pickle", b"\x89HDF\r\n\x1a\n": "HDF5", b"\x08": "ONNX"}


def check_files(config) -> None:
    """The files a typed config (a schema.Config, whose validate calls this) names exist: MNIST's four
    (unless it may download them); the checkpoint, and that it is a model file at all (read by its
    first bytes, before torch loads)."""
    # (the layer table reads no images; an image folder is checked as the data node is typed)
    if config.data.format == "idx" and not config.data.download and config.stage != "layers":
        require_files(config.data.root, config.data.folder, config.data.name)
    # MNIST_PROBE_CACHE sets it too: the message names the key the schema knows
    creatable("paths.cache", config.paths.cache)
    report = config.report
    if report is not None and report.page is not None:
        creatable("report.page", Path(report.page).parent, report.page)
    if report is not None and report.compare is not None and not (Path(report.compare) / PAGE_JSON).is_file():
        raise UserError(
            f"report.compare={report.compare} holds no {PAGE_JSON}; point it at the folder of "
            "an earlier +experiment=report run"
        )
    if config.checkpoint is None:
        return
    path = Path(config.checkpoint).expanduser()
    if not path.is_file():
        raise missing_checkpoint(config.checkpoint)
    with path.open("rb") as f:
        head = f.read(8)
    if not any(head.startswith(magic) for magic in MODEL_MAGIC):
        what = "empty" if not head else "not a state dict, Lightning checkpoint, Keras or ONNX file"
        raise UserError(
            f"checkpoint {config.checkpoint} is {what}; point checkpoint= at a model file "
            "(.pt, .ckpt, .h5, .keras, .onnx)"
        )
    no_pickled_code(path, config.checkpoint)
