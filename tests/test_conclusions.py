"""Each of the study's four conclusions, checked on results made to support it and made to refute it."""

import pytest

from mnist_probe.schema import typed
from mnist_probe.stages.verdicts import conclusions
from tests.builders import study_results
from tests.conftest import REPO, make_cfg


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("c"), "+experiment=reproduce", f"reproduce.docs={REPO}/unused")
    return typed(cfg)


def verdicts(config, **kwargs) -> list[str]:
    return [c.verdict for c in conclusions(study_results(**kwargs), config)]


def test_code_vectors_keep_what_the_classes_need(config):
    assert verdicts(config)[0] == "supported"
    assert verdicts(config, codes=0.90, cnn=0.99)[0] == "not supported"  # an interpreter 9 points below


def test_convolution_is_the_key_and_position_sensitivity(config):
    assert verdicts(config)[1] == "convolution supported; position sensitivity supported"
    assert verdicts(config, pixels=0.995)[1].startswith("convolution not supported")
    only_unaugmented = "position sensitivity supported only without shift augmentation"
    assert verdicts(config, cnn_dy4=0.97)[1].endswith(only_unaugmented)
    assert verdicts(config, cnn_dy4=0.97, unaug_dy4=0.97)[1].endswith("position sensitivity not supported")


def test_probabilities_jump_under_translation(config):
    assert verdicts(config)[2] == "supported"  # P(1) falls 0.97 between dy = -3 and -4
    smooth = {"p_true": (1.0,) * 6, "change": 0.01}
    assert verdicts(config, **smooth, unaug_change=0.15)[2] == "supported only without shift augmentation"
    assert verdicts(config, **smooth, unaug_change=0.01)[2] == "not supported"


def test_code_vectors_deform_more_softly(config):
    assert verdicts(config)[3] == "supported"
    assert verdicts(config, cos_code=0.3, cos_maps=0.5)[3] == "not supported"


def test_the_texts_quote_the_numbers_they_judge(config):
    texts = [c.text for c in conclusions(study_results(cnn_dy4=0.6123, unaug_dy4=0.4321), config)]
    assert "keeps 61.23% accuracy at dy = -4" in texts[1] and "falls to 43.21% at dy = -4" in texts[1]
    assert "largest change of P(true) between neighbouring 1-px shifts is 0.970" in texts[2]
    assert "dense_1 0.90" in texts[3] and "conv2d_2 0.40" in texts[3]
