"""The names a config refers to, importable without torch: the stages, the study's layers, the
interpreters' feature kinds, MNIST's files and sizes. The library builds on them; the config
schema checks against them."""

import re

from mnist_probe.errors import UserError

STAGES = ("train", "activations", "interpreters", "shift", "reproduce", "seeds", "layers", "report", "beyond")
FEATURES = ("codes", "pixels")  # what an interpreter is fitted on: the CNN's code vectors or pixels

# h (1-based position in the Keras Sequential) -> Keras layer name. docs/ARCHITECTURE.md has the full table.
LAYER_NAMES = [
    "conv2d_1",
    "conv2d_2",
    "max_pooling2d_1",
    "dropout_1",
    "conv2d_3",
    "conv2d_4",
    "max_pooling2d_2",
    "dropout_2",
    "flatten_1",
    "dense_1",
    "dropout_3",
    "dense_2",
]
CODE_LAYER = "dense_1"  # h = 10, the 256-d code vector

# The four IDX files torchvision reads from ROOT/MNIST/raw/, with their well-known md5 sums.
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
COUNTS = {"train": 60_000, "test": 10_000}
SIZE = 28  # MNIST images are SIZE × SIZE
SAMPLE_SHAPE = (1, SIZE, SIZE)  # what every stage feeds a network: one digit, floats in [0, 1]
PAGE_JSON = "page.json"  # what a report run keeps of its page's results (report.compare reads it)
EDGE_CONTROL = "edge control"  # a Sobel filter of the input: the "explanation" of no model (sanity checks)
RANDOM_ORDER = "random order"  # pixels removed or revealed in a seeded random order: faithfulness's line
METHODS = ("saliency", "integrated_gradients", "grad_cam")  # the attribution methods (Captum's)


def layer_name(layer: int | str) -> str:
    """Resolve an h index (1..12) or a Keras layer name to the Keras name."""
    if isinstance(layer, str) and layer.isdigit():
        layer = int(layer)
    if isinstance(layer, int) and not isinstance(layer, bool):  # True is not h = 1
        if not 1 <= layer <= len(LAYER_NAMES):
            raise UserError(f"layer h={layer} does not exist: h runs from 1 to {len(LAYER_NAMES)}")
        return LAYER_NAMES[layer - 1]
    if layer not in LAYER_NAMES:
        raise UserError(f"unknown layer {layer!r}; valid names: {', '.join(LAYER_NAMES)}")
    return layer


def layer_h(layer: int | str) -> int:
    """Resolve a Keras layer name (or h) to its 1-based index h."""
    return LAYER_NAMES.index(layer_name(layer)) + 1


def layer_label(layer: str) -> str:
    """A layer as texts and figures name it: with its h for the study's CNN ('dense_1, h = 10')."""
    return f"{layer}, h = {layer_h(layer)}" if layer in LAYER_NAMES else layer


def file_name(layer: str) -> str:
    """A layer name as part of a file name or TensorBoard tag: an ONNX node's 'body/0/Conv', a second
    call 'layer1.0.relu:2' or 'fc2:input' kept flat."""
    return re.sub(r"[^\w.-]+", "_", layer)
