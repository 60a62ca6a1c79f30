"""More than one process: Hydra's submitit launcher (the cluster path, run here with its local
executor), the SLURM preset, and the cache lock under real contention between two processes."""

import json
import subprocess
import sys
import textwrap
import time

import pytest

from mnist_probe.config import compose_config
from tests.conftest import REPO
from tests.test_reliability import cli, small_train_args


@pytest.mark.slow  # two jobs, each a process of its own: make test-slow
def test_submitit_local_sweep_runs_each_job_in_its_own_process(small_run, tmp_path):
    """Two sweep jobs as separate processes (submitit's local executor), at once, on one user's
    checkpoint: both open the same CNN (scored once, under the cache lock), and the summary is
    written. That two jobs at once train a shared CNN once is the joblib test's (test_reliability)."""
    args = [a for a in small_train_args(tmp_path, epochs=1) if a != "+experiment=train"]
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=15",
        "+experiment=shift",
        "shift.dy=0,-2",
        "shift.models=[]",
        "shift.dataset.samples=20",
        "shift.dataset.radius=1",
        f"checkpoint={small_run[1]['checkpoint']}",
        *args,
        f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]  # the local job ids
    assert len(set(jobs)) == 2  # one submitit job (its own process, its own logs) per sweep job
    logs = [p.read_text() for p in sweep.glob("*/*.log")]
    assert len(logs) == 2 and all("(your checkpoint;" in log for log in logs)
    assert not list((tmp_path / "cache").glob("cnn-*/model.pt"))  # nothing trained
    assert len(list((tmp_path / "cache").glob("cnn-file-*/meta.json"))) == 1  # scored once
    assert (sweep / "summary.md").is_file()
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + the CNN at its one shift, per job
    keys = {json.loads(p.read_text())["cnn_key"] for p in sweep.glob("*/results.json")}
    assert len(keys) == 1 and keys.pop().startswith("file-")


def test_the_slurm_preset_composes_onto_submitit():
    cfg = compose_config(
        "+experiment=seeds", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", return_hydra_config=True
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min > 0


CONTENDER = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path
    from mnist_probe.cache import get_or_compute

    entry, marks = Path(sys.argv[1]), Path(sys.argv[2])
    logging.basicConfig(level=logging.INFO, filename=marks / f"{os.getpid()}.log")

    def compute(staging):
        with open(marks / "computed.txt", "a") as f:
            f.write(f"{os.getpid()}\\n")
        deadline = time.monotonic() + 300
        while not (marks / "go").exists():  # held until the test has seen the other process wait
            assert time.monotonic() < deadline, "never told to go on"
            time.sleep(0.01)
        (staging / "value.txt").write_text(str(os.getpid()))
        return {}

    value, meta, cached = get_or_compute(entry, compute, lambda e, m: (e / "value.txt").read_text())
    print(json.dumps({"value": value, "cached": cached}))
""")


def until(found, what: str, deadline_s: float = 300):
    """found() once it is truthy, polled until the deadline; else the test fails naming what it awaited."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {deadline_s} s")


def test_two_processes_contending_for_one_entry_compute_it_once(tmp_path):
    """The first process computes and is held there; the second finds the entry locked and says it waits;
    then the first publishes, and the second loads what the first computed."""
    entry, marks = tmp_path / "cache" / "thing", tmp_path / "marks"
    marks.mkdir()
    cmd = [sys.executable, "-c", CONTENDER, str(entry), str(marks)]

    def start() -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start()
    until(lambda: (marks / "computed.txt").is_file(), "the first process computing")
    second = start()
    until(
        lambda: (
            (marks / f"{second.pid}.log").is_file()
            and "waiting for thing" in (marks / f"{second.pid}.log").read_text()
        ),
        "the second process waiting",
    )
    (marks / "go").touch()
    procs = [first, second]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert (marks / "computed.txt").read_text().split() == [str(first.pid)]  # computed by one process only
    assert [r["value"] for r in results] == [str(first.pid)] * 2  # both got that process's value
    assert [r["cached"] for r in results] == [False, True]
