import json

from mnist_probe.bench import main


def test_bench_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    result = main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["machine"]["torch"] and on_disk["rows"] == result["rows"]
    whats = [r["what"] for r in result["rows"]]
    assert "hook overhead" in whats and "shift sweep / plain inference" in whats
    throughput = [r["value"] for r in result["rows"] if r["unit"] == "img/s"]
    assert throughput and all(v > 0 for v in throughput)
    assert (tmp_path / "bench.md").read_text().startswith("| what | value | unit | target |")
