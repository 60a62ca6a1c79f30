"""The names a config refers to, importable without torch: the study's layers and MNIST's files
and sizes. model.py and data.py build on them; the config schema checks against them."""

# h (1-based position in the Keras Sequential) -> Keras layer name. DESIGN.md has the full table.
LAYER_NAMES = [
    "conv2d_1", "conv2d_2", "max_pooling2d_1", "dropout_1",
    "conv2d_3", "conv2d_4", "max_pooling2d_2", "dropout_2",
    "flatten_1", "dense_1", "dropout_3", "dense_2",
]  # fmt: skip
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
