"""A real browser over a real TensorBoard: the images dashboard shows the feature maps.

Slow (trains the small CNN, starts TensorBoard and headless Chromium). `make screenshot` runs it
with MNIST_PROBE_SCREENSHOT=docs/tensorboard_feature_maps.png to refresh the README's picture.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_probe.run import run
from tests.conftest import SMALL_TRAIN, make_cfg

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_images_dashboard_shows_feature_maps(small_run, tmp_path):
    if CHROMIUM is None:  # a skip would let `make screenshot` pass having refreshed nothing
        pytest.fail("needs Debian's chromium: `make chromium` (apt-get install chromium) installs it")
    trained, _ = small_run
    cfg = make_cfg(
        tmp_path,
        "+experiment=activations",
        *SMALL_TRAIN,
        "activations.layers=[2]",
        "activations.n_codes=200",
        cache=Path(trained.paths.cache),
    )
    run(cfg)
    port = free_port()
    tb = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(Path(cfg.paths.output_dir) / "tb"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):  # bounded wait for the server
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        shot = tmp_path / "tensorboard.png"
        subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--window-size=1400,1000",
                "--virtual-time-budget=20000",
                f"--screenshot={shot}",
                f"http://127.0.0.1:{port}/#images&tagFilter=conv2d_2",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        tb.terminate()
        tb.wait(timeout=30)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (1000, 1400, 3)
    # viridis feature maps: many dark-purple pixels (R<80, G<40, B>60) that TensorBoard's own
    # orange-and-white chrome does not have
    purple = (image[..., 0] < 80) & (image[..., 1] < 40) & (image[..., 2] > 60)
    assert purple.sum() > 50_000, "no feature maps on the images dashboard"
    if os.environ.get("MNIST_PROBE_SCREENSHOT"):
        shutil.copy(shot, os.environ["MNIST_PROBE_SCREENSHOT"])
