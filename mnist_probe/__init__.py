"""mnist_probe: what did my CNN learn? The study's MNIST CNN, opened up three ways.

The public API, for a notebook (README: "Use it as a library"):

    from mnist_probe import load_mnist, KerasCNN, record, translate, CodeVectors
    images, labels = load_mnist("path/holding/MNIST", "test")
    acts = record(KerasCNN().eval(), images[:8], ["conv2d_1", "dense_1"])

Training takes the four specs of mnist_probe.specs: fit_or_load(DataSpec(...), Recipe(...), seed, cache_dir).

Names load on first use (PEP 562), so `import mnist_probe` costs nothing until one is touched.
"""

from __future__ import annotations

from importlib import import_module

from mnist_probe import study  # the study's own figures: constants, cheap to import
from mnist_probe.errors import UserError

# name -> the module that defines it
_API = {
    # what to train: the four specs (no torch)
    "DataSpec": "specs",
    "ModelSpec": "model_spec",
    "Recipe": "specs",
    "Hardware": "specs",
    # data
    "load_mnist": "data",
    "split_tensors": "data",
    "to_float": "data",
    "KerasAugment": "data",
    "ImageDataModule": "data",
    "first_of_each_class": "data",
    # model
    "KerasCNN": "keras_cnn",
    "LitCNN": "lit",
    "load_model": "model",
    "LAYER_NAMES": "model",
    "CODE_LAYER": "model",
    "build_model": "model",
    "check_io": "outputs",
    "LeNet5": "lenet",
    "outputs_of": "outputs",
    "output_kind": "outputs",
    "load_onnx": "onnx_model",
    # any model's layers
    "code_layer": "model_layers",
    "conv_layers": "model_layers",
    "feature_layers": "model_layers",
    "layer_table": "model_layers",
    # beyond the study
    "attribute": "attribution",
    "shift_consistency": "attribution",
    "top_patches": "filters",
    "maximise_filters": "filters",
    "receptive_field": "filters",
    "position_probes": "position",
    "linear_cka": "cka",
    "cka_between": "cka",
    "shift_cka": "cka",
    # can the maps be trusted: the sanity checks
    "model_randomisation": "sanity",
    "data_randomisation": "sanity",
    "memorising": "sanity",
    "faithfulness": "sanity",
    "RANDOMISATION_DRAWS": "sanity",
    "two_level_interval": "intervals",
    # why val_acc exceeds train_acc
    "GapProbe": "gap",
    "gap_accuracies": "gap",
    "split_gap": "gap",
    # Keras files
    "load_keras": "keras_weights",
    "save_keras": "keras_weights",
    # train
    "OpenedModel": "training",
    "fit_or_load": "training",
    "from_checkpoint": "training",
    "accuracy": "scoring",
    "confidence": "scoring",
    "logits_of": "scoring",
    # hooks
    "ActivationRecorder": "hooks",
    "record": "hooks",
    "class_similarity": "hooks",
    "record_with_output": "hooks",
    "stream": "hooks",
    "resolve_layers": "layer_names",
    "module_calls": "layer_names",
    "output_of": "hooks",
    # interpreters
    "CodeVectors": "interpretation",
    "Pixels": "interpretation",
    "make_interpreter": "interpretation",
    "fit_on_features": "interpretation",
    "linear_probes": "probes",
    "FastSVC": "fast_svc",
    "InterpreterSpec": "interpretation",
    "features_of": "interpretation",
    "fit_or_load_interpreter": "interpretation",
    # shift
    "translate": "translation",
    "shift_pairs": "translation",
    "shifted_stack": "translation",
    "grid_predictions": "translation",
    "dataset_metrics": "translation",
    "consistency": "translation",
    "change_1px": "translation",
    # calibration
    "fit_temperature": "calibration",
    "scores": "calibration",
    # tables
    "markdown_table": "tables",
    "write_table": "tables",
}

__all__ = ["UserError", "study", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'mnist_probe' has no attribute {name!r}")
    return getattr(import_module(f"mnist_probe.{_API[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
