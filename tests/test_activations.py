import io
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_probe.run import run
from tests.conftest import SMALL_TRAIN, make_cfg


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_activations_stage_writes_figures_and_tensorboard(small_run, tmp_path):
    trained, _ = small_run
    cfg = make_cfg(
        tmp_path,
        "+experiment=activations",
        *SMALL_TRAIN,
        "activations.indices=[0,3]",
        "activations.layers=[1,conv2d_3,8]",
        "activations.n_codes=300",
        cache=Path(trained.paths.cache),
    )
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    # test #0 is a 7 and test #3 a 0: 3 layers x 2 images
    sheets = sorted(p.name for p in (out / "feature_maps").glob("*.png"))
    assert len(sheets) == 6 and "conv2d_1_digit7_test0.png" in sheets
    assert Image.open(out / "feature_maps" / "dropout_2_digit0_test3.png").size == (1200, 840)
    for name in ("code_vectors", "code_heatmap", "class_similarity"):
        assert Image.open(out / f"{name}.png").size[0] >= 600
    sim = np.loadtxt(out / "class_similarity.csv", delimiter=",")
    assert sim.shape == (10, 10) and np.allclose(sim, sim.T, atol=1e-3)
    assert results["within_between_ratio"] > 1  # a trained CNN groups classes
    events = EventAccumulator(str(out / "tb" / "activations"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {
        "feature_maps/conv2d_1/digit_7_test0",
        "feature_maps/conv2d_3/digit_0_test3",
        "code_vectors/class_similarity",
    } <= tags
    # TensorBoard holds the PNG's own pixels
    (logged,) = events.Images("feature_maps/conv2d_1/digit_7_test0")
    png = (out / "feature_maps" / "conv2d_1_digit7_test0.png").read_bytes()
    assert np.array_equal(decoded(logged.encoded_image_string), decoded(png))
    projector = (out / "tb" / "activations" / "projector_config.pbtxt").read_text()
    assert "code_vectors" in projector and "sprite" in projector
