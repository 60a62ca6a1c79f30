"""Bad input, interrupted runs, parallel jobs, reproducibility: what users will do to the tool."""

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from mnist_probe import UserError
from mnist_probe.data import FILES, load_mnist, raw_folder, split_tensors
from mnist_probe.machine import describe
from mnist_probe.outputs import top1_accuracy
from mnist_probe.run import check_config, run
from mnist_probe.schema import typed
from mnist_probe.stages.adapters import trained_cnn
from tests.conftest import REPO, SMALL_FILTERS, SMALL_TRAIN, make_cfg, mnist_root


def mnist_copy(tmp_path: Path) -> Path:
    """A private MNIST root whose four files are symlinks to the real ones (replace to break one)."""
    raw = raw_folder(tmp_path / "mnist")
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / name).symlink_to(raw_folder(mnist_root()) / name)
    return tmp_path / "mnist"


def replace(root: Path, name: str, data: bytes) -> None:
    (raw_folder(root) / name).unlink()
    (raw_folder(root) / name).write_bytes(data)


def real_bytes(name: str) -> bytes:
    return (raw_folder(mnist_root()) / name).read_bytes()


def test_one_missing_file_is_named(tmp_path):
    root = mnist_copy(tmp_path)
    (raw_folder(root) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"holds t10k-labels-idx1-ubyte \(plain or .gz\); set MNIST_ROOT"):
        load_mnist(root, "test")


@pytest.mark.parametrize(
    "name, cut",
    [("t10k-images-idx3-ubyte", 1000), ("t10k-labels-idx1-ubyte", 5000), ("t10k-labels-idx1-ubyte", 3)],
)
def test_truncated_idx_file_is_a_clear_error(tmp_path, name, cut):
    root = mnist_copy(tmp_path)
    replace(root, name, real_bytes(name)[:cut])
    with pytest.raises(UserError, match="(truncated or corrupt|are wrong)"):
        load_mnist(root, "test")


@pytest.mark.parametrize("cut", [16 + 784 * 59_999, 16 + 784 * 60_000 + 5, 7])  # an image short, extra bytes
def test_a_damaged_training_file_is_refused_before_any_work(tmp_path, cut):
    """The config check reads the IDX headers and sizes: a run stops before the training starts, with
    one line naming the file."""
    root = mnist_copy(tmp_path)
    name = "train-images-idx3-ubyte"
    data = real_bytes(name)
    replace(root, name, data[:cut] if cut <= len(data) else data + b"\0" * (cut - len(data)))
    cfg = make_cfg(tmp_path, "+experiment=train", f"data.root={root}")
    with pytest.raises(UserError, match=f"MNIST file .*{name} is truncated or corrupt .*replace it"):
        check_config(cfg)
    assert not (tmp_path / "cache").exists()


def test_corrupt_header_is_a_clear_error(tmp_path):
    root = mnist_copy(tmp_path)
    data = bytearray(real_bytes("t10k-labels-idx1-ubyte"))
    data[2] = 0x55  # the IDX magic number's type byte
    replace(root, "t10k-labels-idx1-ubyte", bytes(data))
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_mnist(root, "test")


def test_md5_mismatch_refused_only_when_verifying(tmp_path):
    root = mnist_copy(tmp_path)
    data = bytearray(real_bytes("t10k-labels-idx1-ubyte"))
    data[100] = (data[100] + 1) % 10  # a different but valid label: readable, not the original
    replace(root, "t10k-labels-idx1-ubyte", bytes(data))
    assert load_mnist(root, "test")[1][100 - 8] == data[100]  # readable without verify
    with pytest.raises(UserError, match="md5 mismatch for .*t10k-labels-idx1-ubyte"):
        load_mnist(root, "test", verify=True)


def cli(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_probe.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "arg, valid",
    [
        (
            "+experiment=nope",
            "activations, beyond, interpreters, layers, report, reproduce, seeds, shift, train",
        ),
        ("model=resnet", "keras_cnn"),
        ("interpreter=svm,xgb", "dt, gb, knn"),
        ("train=quick", "default, fashion, fast, study"),
        ("trainer=tpu", "auto, cpu, ddp, gpu"),
        ("hydra/launcher=nope", "basic, joblib, slurm, submitit_local"),
    ],
)
def test_unknown_group_choice_is_one_line_listing_valid_ones(tmp_path, arg, valid):
    proc = cli(arg, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: "), out
    assert "is not allowed" in out[0] and valid in out[0], out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "make_file, message",
    [
        (None, "does not exist"),
        (lambda p: torch.save(torch.nn.Linear(2, 2).state_dict(), p), "does not fit KerasCNN"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not a checkpoint"), "truncated"),
        (lambda p: p.write_bytes(b""), "is empty; point checkpoint= at a model file"),
        (lambda p: p.write_text("weights, as a user might think"), "not a state dict, Lightning checkpoint"),
    ],
)
def test_bad_checkpoint_refused_before_any_work(tmp_path, make_file, message):
    path = tmp_path / "mine.pt"
    if make_file:
        make_file(path)
    cfg = make_cfg(tmp_path, "+experiment=shift", f"checkpoint={path}")
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not list((tmp_path / "cache").rglob("*.*"))  # no entry, no staging, nothing


def test_a_refused_checkpoint_leaves_no_run_dir(tmp_path):
    """Refused after Hydra made the run dir (the architecture needs torch to check): one line, exit
    2, and the empty run dir removed."""
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "mine.pt")
    proc = cli(
        "+experiment=train",
        f"checkpoint={tmp_path / 'mine.pt'}",
        f"data.root={mnist_root()}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache={tmp_path / 'cache'}",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "error:" in line]
    assert len(errors) == 1 and "does not fit KerasCNN" in errors[0]
    assert not (tmp_path / "run").exists() and not list((tmp_path / "cache").rglob("*.pt"))


def test_a_users_checkpoint_is_opened_up_not_retrained(small_run, tmp_path):
    cfg, results = small_run
    mine = make_cfg(
        tmp_path,
        "+experiment=train",
        "data.test_subset=1000",
        f"+model.filters={SMALL_FILTERS}",
        f"checkpoint={results['checkpoint']}",
    )
    check_config(mine)
    cnn = trained_cnn(mine)
    assert cnn.test_acc == pytest.approx(results["test_acc"], abs=1e-6)
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert cnn.key.startswith("file-") and [f.parent.name[:7] for f in files] == ["logits-"]  # no weights
    # its test pass is kept as the scored logits the stages read: the accuracy it was scored by
    labels = split_tensors(typed(mine).data, "scored")[1]
    logits = torch.load(files[0], weights_only=True)
    assert top1_accuracy(logits, labels) == cnn.test_acc
    # scored on other test images, the same file is another entry: no stale accuracy
    other = trained_cnn(
        make_cfg(
            tmp_path,
            "+experiment=train",
            "data.test_subset=500",
            f"+model.filters={SMALL_FILTERS}",
            f"checkpoint={results['checkpoint']}",
        )
    )
    assert other.key != cnn.key and other.meta["test_images"] == 500 and not other.meta["cached"]


def small_train_args(tmp_path: Path, epochs: int = 4) -> list[str]:
    overrides = [o for o in SMALL_TRAIN if not o.startswith("train.epochs")]
    return [
        "+experiment=train",
        *overrides,
        f"train.epochs={epochs}",
        f"data.root={mnist_root()}",
        "trainer.progress_bar=false",
        f"paths.cache={tmp_path / 'cache'}",
    ]


DEADLINE_S = 300  # how long a test waits for an event before it fails


def next_checkpoint(proc: subprocess.Popen, cache: Path, after: float = 0.0) -> Path:
    """The staging dir's last.ckpt once it is written later than `after` (an mtime), while proc runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = list(cache.glob("cnn-*.partial/work/last.ckpt"))
        if found and found[0].stat().st_mtime > after:
            return found[0]
        assert proc.poll() is None, "the run ended before its next checkpoint"
        time.sleep(0.02)
    raise AssertionError(f"no new checkpoint within {DEADLINE_S} s")


class Output:
    """A running process's merged output, read as it comes (a progress bar writes '\\r', not lines)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text, self.proc = "", proc
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read(1):
            self.text += chunk

    def wait_for(self, pattern: str, start: int = 0) -> re.Match:
        """The first match of pattern in the output after position start, once it has been written."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            found = re.compile(pattern).search(self.text, start)
            if found:
                return found
            assert self.proc.poll() is None or self.thread.is_alive(), self.text[-2000:]
            time.sleep(0.01)
        raise AssertionError(f"{pattern!r} not written within {DEADLINE_S} s: {self.text[-2000:]}")

    def rest(self) -> str:
        self.thread.join(timeout=DEADLINE_S)
        return self.text


def a_few_steps_into(epoch: str = r"\d+") -> str:
    """The progress bar of an epoch of 32 steps (that epoch, 0-based; any by default), 2 to 24 steps in."""
    return rf"Epoch {epoch}: +\d+%[^|]*\|[^|]*\| ([2-9]|1\d|2[0-4])/32"


# How each stop reaches a run: its signal, the exit status it ends with, and the name its log line says.
SIGNALS = {"Ctrl-C": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


@pytest.mark.parametrize(
    "stops",
    [
        pytest.param(["Ctrl-C"], id="ctrl-c"),
        # each stop a training of its own: two minutes
        pytest.param(["SIGKILL", "Ctrl-C", "SIGTERM"], id="kill-ctrl-c-term", marks=pytest.mark.slow),
    ],
)
def test_a_stopped_training_resumes_bit_for_bit(small_run, tmp_path, stops):
    """Killed (SIGKILL) after its first epoch, or stopped part-way through an epoch by Ctrl-C or by
    SIGTERM, each time resumed by the same command: the training ends with the very weights of the
    same training never interrupted (small_run: the same data, recipe and seed)."""
    args = small_train_args(tmp_path, epochs=4)
    cache = tmp_path / "cache"

    def start(run: str, *more: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "mnist_probe.run", *args, *more, f"hydra.run.dir={tmp_path / run}"]
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    logs, ckpt = [], None
    for n, name in enumerate(stops, 1):
        if name == "SIGKILL":
            proc = start(f"run{n}")
            ckpt = next_checkpoint(proc, cache)
            proc.kill()  # SIGKILL: no handler runs; the first epoch's checkpoint is what is left
            proc.communicate()
            assert "Timer" in torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"]
            logs.append("")
            continue
        sig, status = SIGNALS[name]
        proc = start(f"run{n}", "trainer.progress_bar=true")  # its bar says which step it is at
        output = Output(proc)
        ckpt = next_checkpoint(proc, cache, after=ckpt.stat().st_mtime if ckpt else 0.0)  # an epoch ends
        output.wait_for(a_few_steps_into(), len(output.text))  # the next one begins
        proc.send_signal(sig)
        proc.wait(timeout=120)
        out = output.rest()
        logs.append(out)
        assert proc.returncode == status, out[-2000:]
        said = [line for line in out.splitlines() if "stopped by" in line]
        assert len(said) == 1 and f"stopped by {name} at step " in said[0] and "Traceback" not in out
        step = int(said[0].split(" at step ")[1].split(" of")[0])
        assert 0 < step < 32  # part-way through an epoch of 32 steps, saved there
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["ImageDataModule"]
        assert state["batches_done"] == step
    staging = ckpt.parents[1]
    entry = staging.with_name(staging.name.removesuffix(".partial"))
    assert not entry.exists()  # an interrupted entry is never published

    again = cli(*args, f"hydra.run.dir={tmp_path / 'run4'}")
    assert again.returncode == 0, again.stderr[-2000:]
    runs = [*logs, again.stdout + again.stderr]
    for stop, out in zip(stops, runs[1:], strict=True):  # each rerun goes on where the stop before left off
        assert "resuming interrupted training" in out
        assert ("steps of the next)" in out) == (stop != "SIGKILL")  # part-way: from the step it saved
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["epochs"] == 4 and meta["test_acc"] > 0.9
    resumed = torch.load(entry / "model.pt", weights_only=True)
    whole = torch.load(small_run[1]["checkpoint"], weights_only=True)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "a resumed run drew other batches"
    assert meta["test_acc"] == small_run[1]["test_acc"]
    assert meta["resumed_after_epochs"] >= 1 and meta["untimed_epochs"] == 0  # the Timer rode along
    parts = meta["parts"]  # one per run: where each ran, which epochs, how long
    assert len(parts) == len(stops) + 1 and {p["machine"] for p in parts} == {describe()}
    assert parts[0]["first_epoch"] == 1 and parts[-1]["last_epoch"] == 4
    for stop, before, after in zip(stops, parts[:-1], parts[1:], strict=True):
        # a stop part-way splits an epoch between two runs; SIGKILL leaves the last whole epoch's
        assert after["first_epoch"] == before["last_epoch"] + (stop == "SIGKILL")
    assert sum(p["seconds"] for p in parts) == pytest.approx(meta["train_seconds"], rel=0.05, abs=1.0)
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "model.pt"]  # work/ removed
    assert not staging.exists()


@pytest.mark.slow  # two job processes and a training each: a minute; the one-run stop test stays in make test
def test_parallel_jobs_train_the_shared_cnn_once_and_a_stop_reaches_them(tmp_path):
    """Hydra's joblib launcher runs two jobs at once; both need the same CNN. SIGTERM to the
    multirun's own process is passed on to the job training it, which saves its checkpoint at the
    step it reached; the same command then resumes that training, once, and both jobs use it."""
    args = [a for a in small_train_args(tmp_path, epochs=2) if a != "+experiment=train"]
    cmd = [
        sys.executable,
        "-m",
        "mnist_probe.run",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "+experiment=shift",
        "shift.dy=0,-2",
        "shift.models=[]",
        "shift.dataset.samples=20",
        "shift.dataset.radius=1",
        *args,
    ]
    stopped = [*cmd, f"hydra.sweep.dir={tmp_path / 'stopped'}", "trainer.progress_bar=true"]
    proc = subprocess.Popen(stopped, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(proc)  # the training job's progress bar comes through its launcher's output
    ckpt = next_checkpoint(proc, tmp_path / "cache")  # the first epoch is done
    output.wait_for(a_few_steps_into("1"), len(output.text))  # a few steps into the second
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    out = output.rest()
    assert proc.returncode == 143 and "sweep stopped by SIGTERM" in out, out[-2000:]
    stops = [
        line
        for log in (tmp_path / "stopped").glob("*/*.log")
        for line in log.read_text().splitlines()
        if "stopped by SIGTERM at step " in line
    ]
    assert len(stops) == 1, out[-3000:]  # the job that trains; the other waits for its CNN
    step = int(stops[0].split(" at step ")[1].split(" of")[0])
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["ImageDataModule"]["batches_done"] == step
    assert not list((tmp_path / "cache").glob("cnn-*/meta.json"))  # nothing published

    again = subprocess.run(
        [*cmd, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Joblib.Parallel" in again.stdout + again.stderr  # the parallel launcher ran the jobs
    logs = [p.read_text() for p in (tmp_path / "sweep").glob("*/*.log")]
    assert len(logs) == 2
    assert sum(log.count("training CNN") for log in logs) == 1
    assert sum(log.count(f"(1 of 2 epochs done, and {step} steps of the next)") for log in logs) == 1
    assert sum(log.count("loaded cached CNN") for log in logs) == 1
    assert len(list((tmp_path / "cache").glob("cnn-*/model.pt"))) == 1
    keys = {json.loads(p.read_text())["cnn_key"] for p in (tmp_path / "sweep").glob("*/results.json")}
    assert len(keys) == 1


def shift_table(cfg) -> list[dict]:
    with open(Path(cfg.paths.output_dir) / "shift_table.csv") as f:
        return list(csv.DictReader(f))


def test_same_config_and_seed_give_the_same_model_and_shift_table(tmp_path):
    tables, accs, weights = [], [], []
    for attempt in ("a", "b"):
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # train from scratch each time
        cfg = make_cfg(
            tmp_path / attempt,
            "+experiment=shift",
            *SMALL_TRAIN,
            "data.train_subset=1000",
            "train.epochs=1",
            "shift.models=[dt]",
            "shift.dy=[0,-3]",
            "shift.dataset.samples=30",
            "shift.dataset.radius=1",
            cache=tmp_path / "cache",
        )
        results = run(cfg)
        tables.append(shift_table(cfg))
        accs.append(results["cnn_test_acc"])
        weights.append(torch.load(next((tmp_path / "cache").glob("cnn-*/model.pt")), weights_only=True))
    assert accs[0] == accs[1]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert tables[0] == tables[1]


def test_confidence_finds_what_accuracy_hides():
    from mnist_probe.scoring import confidence

    labels = torch.tensor([0, 1, 2, 0])
    calm = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [0, 1.0, 0]])  # one error, mild
    wild = calm * 1000  # the same predictions, logits a thousand times larger
    a, b = confidence(calm, labels), confidence(wild, labels)
    assert a.errors == b.errors == 1
    assert a.errors_below_epsilon == 0 and b.errors_below_epsilon == 1  # P(true) 0.21 against e^-1000
    assert b.cross_entropy > 100 * a.cross_entropy and b.max_abs_logit == 2000.0
    assert b.error_share_of_loss > 0.999 > a.error_share_of_loss > 0.5
    error_loss = torch.nn.functional.cross_entropy(calm[3:], labels[3:]).item()
    assert abs(a.mean_loss_on_errors - error_loss) < 1e-6


@pytest.mark.parametrize(
    "where, message",
    [
        ("a-file/cache", "cannot be made: .*a-file is not a folder you can write"),  # inside a file
        ("a-file", "is a file, not a folder"),
        ("x" * 300 + "/cache", "cannot be made: File name too long"),  # no permission problem: OS refuses
    ],
)
def test_a_cache_folder_that_cannot_be_used_is_refused_in_one_line(tmp_path, where, message):
    (tmp_path / "a-file").write_text("not a folder")
    proc = cli(
        "+experiment=train",
        f"data.root={mnist_root()}",
        f"paths.cache={tmp_path / where}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(out) == 1 and out[0].startswith("error: paths.cache="), out
    assert re.search(message, out[0]) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path, key):
    (tmp_path / "a-file").write_text("not a folder")
    sweep = ["-m", "shift.dy=0,-1"] if key == "hydra.sweep.dir" else []
    run_dir = tmp_path / "a-file" / "run"
    proc = cli(*sweep, "+experiment=shift", f"data.root={mnist_root()}", f"{key}={run_dir}")
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and out == [
        f"error: {key}={run_dir} cannot be made: "
        f"{tmp_path / 'a-file'} is not a folder you can write; set {key} "
        "to a folder you can write"
    ], out


def test_a_checkpoint_holding_pickled_objects_is_not_loaded_and_says_why(tmp_path):
    """A whole pickled module (torch.save(model)) would run code if unpickled: refused in one line before
    any run folder exists, by the command line's check and by load_model alike."""
    from mnist_probe.keras_cnn import KerasCNN
    from mnist_probe.model import load_model

    whole = tmp_path / "whole.pt"
    torch.save(KerasCNN(filters=4), whole)
    proc = cli("+experiment=layers", f"checkpoint={whole}", f"hydra.run.dir={tmp_path / 'run'}")
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(out) == 1 and not (tmp_path / "run").exists(), out
    assert f"holds pickled Python objects ({KerasCNN.__module__}." in out[0] and "state_dict()" in out[0], out
    with pytest.raises(
        UserError, match=r"pickled Python objects \(mnist_probe\.keras_cnn\..*\) that would run"
    ):
        load_model(whole)
    weights = tmp_path / "weights.pt"
    torch.save(KerasCNN(filters=4).state_dict(), weights)
    assert isinstance(load_model(weights, KerasCNN(filters=4)), KerasCNN)
