from pathlib import Path

import pytest
import torch

from mnist_probe import UserError
from mnist_probe.data import (
    FILES,
    DataSpec,
    ImageDataModule,
    KerasAugment,
    load_mnist,
    split_tensors,
    to_float,
)
from tests.conftest import mnist_root


@pytest.fixture(scope="module")
def dm() -> ImageDataModule:
    dm = ImageDataModule(DataSpec(root=mnist_root()))
    dm.setup()
    return dm


def test_split_counts_and_no_overlap(dm):
    counts = {k: len(v[1]) for k, v in dm.tensors.items()}
    assert counts == {"train": 54_000, "val": 6_000, "test": 10_000}
    # train and val together are the 60k training images exactly once each
    train_x, _ = dm.tensors["train"]
    val_x, _ = dm.tensors["val"]
    full, _ = load_mnist(mnist_root(), "train")
    assert torch.equal(torch.cat([train_x, val_x]).sum(0, dtype=torch.int64), full.sum(0, dtype=torch.int64))


def test_values_and_labels(dm):
    x, y = dm.tensors["test"]
    assert x.dtype == torch.uint8 and x.shape == (10_000, 28, 28)
    assert set(y.tolist()) == set(range(10))
    f = to_float(x[:100])
    assert f.shape == (100, 1, 28, 28) and f.min() == 0 and f.max() == 1


def test_split_is_seeded():
    a, b = DataSpec(root=mnist_root()), DataSpec(root=mnist_root(), split_seed=1)
    assert torch.equal(split_tensors(a, "val")[1], split_tensors(DataSpec(root=mnist_root()), "val")[1])
    assert not torch.equal(split_tensors(a, "val")[1], split_tensors(b, "val")[1])


def test_subsets_take_the_first_images_of_their_split():
    full = DataSpec(root=mnist_root())
    small = DataSpec(root=mnist_root(), train_subset=100, test_subset=50)
    assert torch.equal(split_tensors(small, "train")[1], split_tensors(full, "train")[1][:100])
    assert torch.equal(split_tensors(small, "val")[1], split_tensors(full, "val")[1])  # untouched
    assert len(split_tensors(small, "scored")[1]) == 50 and len(split_tensors(small, "test")[1]) == 10_000
    assert small.content() != full.content() and "root" not in full.content()


def test_loader_yields_whole_batches(dm):
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (86, 28, 28) and y.shape == (86,)
    n = sum(len(b[1]) for b in dm.test_dataloader())
    assert n == 10_000  # nothing dropped outside training


def test_augment_identity_when_off(dm):
    x = to_float(dm.tensors["test"][0][:32])
    assert torch.equal(KerasAugment(enabled=False)(x), x)
    assert torch.equal(KerasAugment(rotation=0, zoom=0, shift=0)(x), x)


def test_augment_keeps_shape_and_range_and_changes_images(dm):
    torch.manual_seed(0)
    x = to_float(dm.tensors["test"][0][:64])
    out = KerasAugment()(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().mean() > 0.01
    # a pure shift of 0.1 moves the centre of mass by at most 2.8 px (+ rounding at the border)
    shifted = KerasAugment(rotation=0, zoom=0, shift=0.1)(x)
    grid = torch.arange(28.0)
    com = lambda im: (im.sum(2).squeeze(1) * grid).sum(1) / im.sum((1, 2, 3))  # noqa: E731
    assert (com(shifted) - com(x)).abs().max() <= 3.2


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(UserError) as err:
        load_mnist(tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert "MNIST_ROOT" in msg and all(name in msg for name in FILES)
    assert "\n" not in msg


def test_hold_on_an_accelerator_moves_train_and_val_once_and_batches_are_indexed_there():
    """On a GPU the images live there once (the datamodule's setup does this for the trainer's
    device); "meta" stands in for one here: a batch drawn afterwards is already on that device."""
    dm = ImageDataModule(DataSpec(root=mnist_root(), train_subset=256), batch_size=32)
    dm.setup()
    before = dict(dm.tensors)
    dm.hold_on("cpu")
    assert all(dm.tensors[k][0] is before[k][0] for k in before)  # the CPU: nothing moves
    dm.hold_on(torch.device("meta"))
    where = {k: v[0].device.type for k, v in dm.tensors.items()}
    assert where == {"train": "meta", "val": "meta", "test": "cpu"}
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == y.device.type == "meta" and x.shape == (32, 28, 28)


def test_idx_files_read_the_same_plain_or_gzipped_flat_or_in_torchvision_layout(tmp_path):
    """A data set of MNIST's format is found in root/FOLDER/raw/ or flat in root, each file plain or
    gzipped (as Debian's dataset packages install them): the same tensors either way."""
    import gzip
    import shutil

    from mnist_probe.idx_files import raw_folder

    source = raw_folder(mnist_root())
    flat, layout = tmp_path / "flat", tmp_path / "layout" / "Clothes" / "raw"
    flat.mkdir()
    layout.mkdir(parents=True)
    for name in FILES:
        if name.startswith("t10k"):  # the test split gzipped, the training split plain: both kinds at once
            with open(source / name, "rb") as f, gzip.open(flat / f"{name}.gz", "wb", compresslevel=1) as g:
                shutil.copyfileobj(f, g)
        else:
            (flat / name).symlink_to(source / name)
        (layout / name).symlink_to(source / name)
    want = load_mnist(mnist_root(), "test")
    for spec in (
        DataSpec(name="Flat", folder="Clothes", root=str(flat)),
        DataSpec(name="Layout", folder="Clothes", root=str(tmp_path / "layout")),
    ):
        got = split_tensors(spec, "test")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), spec.name
    # one file truncated inside its gzip stream: refused naming it, in one line
    with gzip.open(flat / "t10k-labels-idx1-ubyte.gz", "wb") as g:
        g.write((source / "t10k-labels-idx1-ubyte").read_bytes()[:5000])
    with pytest.raises(UserError, match=r"could not read Flat test files in .*flat .*truncated or corrupt"):
        split_tensors(DataSpec(name="Flat", folder="Clothes", root=str(flat)), "test")
    with pytest.raises(UserError, match=r"^Nothing not found: neither .*Clothes/raw nor .* holds train"):
        split_tensors(DataSpec(name="Nothing", folder="Clothes", root=str(tmp_path)), "test")


def test_a_data_set_names_its_classes_and_the_shift_target_may_be_one(tmp_path):
    from mnist_probe.schema import typed
    from tests.conftest import make_cfg

    cfg = typed(make_cfg(tmp_path, "data=fashion_mnist", "shift.target=Trouser"))
    assert cfg.data.name == "Fashion-MNIST" and cfg.data.classes[9] == "Ankle boot"
    assert cfg.shift_target() == 1 and not cfg.data.study
    assert typed(make_cfg(tmp_path, "data=fashion_mnist", "shift.target=6")).shift_target() == 6
    assert typed(make_cfg(tmp_path, "shift.digit=7")).shift_target() == 7  # MNIST: shift.digit as ever
    with pytest.raises(UserError, match=r"shift.target='Shoe' is not allowed: a class of data.classes \(T-"):
        typed(make_cfg(tmp_path, "data=fashion_mnist", "shift.target=Shoe"))
    with pytest.raises(UserError, match=r"data.classes=.* is not allowed: 10 names, class 0's first"):
        typed(make_cfg(tmp_path, "data.classes=[a,b,c]"))
    with pytest.raises(UserError, match=r"data.classes=.* is not allowed: distinct names"):
        typed(make_cfg(tmp_path, "data.classes=[a,b,c,d,e,f,g,h,i,a]"))


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@pytest.mark.skipif(not Path(FASHION, "t10k-labels-idx1-ubyte.gz").is_file(), reason="make fashion-mnist")
def test_fashion_mnist_as_debian_installs_it_is_read_with_its_classes(tmp_path):
    """data=fashion_mnist reads the four gzipped files flat in Debian's folder: 60k + 10k images, a
    thousand test images of each garment, test #0 an ankle boot (the data set's README shows it)."""
    from mnist_probe.schema import typed
    from tests.conftest import make_cfg

    data = typed(make_cfg(tmp_path, "data=fashion_mnist", f"data.root={FASHION}")).data
    images, labels = split_tensors(data, "test")
    assert images.shape == (10_000, 28, 28) and torch.bincount(labels).tolist() == [1000] * 10
    assert data.classes[int(labels[0])] == "Ankle boot"
    train, _ = split_tensors(data, "train")
    mnist, _ = load_mnist(mnist_root(), "test")
    assert len(train) == 54_000 and not torch.equal(images, mnist)
