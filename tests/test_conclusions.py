"""Each of the study's four conclusions, checked on results made to support it and made to refute it."""

import pytest

from mnist_probe.stages.report import conclusions
from tests.conftest import REPO, make_cfg


def results(codes=0.99, pixels=0.96, cnn=0.99, cnn_dy4=0.6, unaug_dy4=0.5, change=0.08, unaug_change=0.15,
            p_true=(1.0, 1.0, 0.99, 0.98, 0.01, 0.0), cos_code=0.9, cos_maps=0.4) -> dict:  # fmt: skip
    """A reproduce run's results, every number chosen by the caller."""
    dys = list(range(-5, 6))
    curve = [cnn_dy4 if d == -4 else 0.99 for d in dys]
    pairs = [(0, -k) for k in range(6)]
    return {
        "train": {"test_acc": cnn},
        "interpreters": {"rows": [
            {"interpreter": "svm", "features": "codes", "test_acc": codes},
            {"interpreter": "dt", "features": "codes", "test_acc": codes - 0.005},
            {"interpreter": "rf", "features": "pixels", "test_acc": pixels},
        ]},  # fmt: skip
        "activations": {"within_class_cosine": 0.88, "between_class_cosine": 0.34,
                        "within_between_ratio": 2.6, "n_codes": 1000},  # fmt: skip
        "shift": {
            "samples": 1000, "index": 2, "digit": 1, "pairs": pairs,
            "dataset": [{"model": "CNN", "acc_grid_mean": 0.9, "change_1px": change}],
            "curves": {"CNN": [dys, curve]},
            "rows": [{"model": "CNN", "dx": 0, "dy": dy, "p_true": p}
                     for (_, dy), p in zip(pairs, p_true, strict=True)],  # fmt: skip
            "cosines": {"conv2d_2": [1.0] + [cos_maps] * 5, "dense_1": [1.0] + [cos_code] * 5},
        },  # fmt: skip
        "augment": {"recipe": "default", "rows": [
            {"train.augment.shift": 0.0, "acc_dy-4": unaug_dy4, "acc_grid_mean": 0.6,
             "change_1px": unaug_change}]},  # fmt: skip
    }


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return make_cfg(tmp_path_factory.mktemp("c"), "+experiment=reproduce", f"reproduce.docs={REPO}/unused")


def verdicts(cfg, **kwargs) -> list[str]:
    return [c["verdict"] for c in conclusions(cfg, results(**kwargs))]


def test_code_vectors_keep_what_the_classes_need(cfg):
    assert verdicts(cfg)[0] == "supported"
    assert verdicts(cfg, codes=0.90, cnn=0.99)[0] == "not supported"  # an interpreter 9 points below


def test_convolution_is_the_key_and_position_sensitivity(cfg):
    assert verdicts(cfg)[1] == "convolution supported; position sensitivity supported"
    assert verdicts(cfg, pixels=0.995)[1].startswith("convolution not supported")
    only_unaugmented = "position sensitivity supported only without shift augmentation"
    assert verdicts(cfg, cnn_dy4=0.97)[1].endswith(only_unaugmented)
    assert verdicts(cfg, cnn_dy4=0.97, unaug_dy4=0.97)[1].endswith("position sensitivity not supported")


def test_probabilities_jump_under_translation(cfg):
    assert verdicts(cfg)[2] == "supported"  # P(1) falls 0.97 between dy = -3 and -4
    smooth = {"p_true": (1.0,) * 6, "change": 0.01}
    assert verdicts(cfg, **smooth, unaug_change=0.15)[2] == "supported only without shift augmentation"
    assert verdicts(cfg, **smooth, unaug_change=0.01)[2] == "not supported"


def test_code_vectors_deform_more_softly(cfg):
    assert verdicts(cfg)[3] == "supported"
    assert verdicts(cfg, cos_code=0.3, cos_maps=0.5)[3] == "not supported"
