"""benchmarks/bench_gpu.py runs end to end on the CPU (tiny network, tiny sizes); no timing is judged."""

from __future__ import annotations

import json
import math

from helpers import load_benchmark


def test_smoke_mode_times_trainer_engine_precisions_and_loader(tmp_path, capsys, monkeypatch):
    bench = load_benchmark("bench_gpu", monkeypatch)
    out = tmp_path / "gpu.json"
    bench.main(["--smoke", "--json", str(out)])
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["smoke"] and figures["device"].startswith("CPU")
    assert set(figures["precision"]["tiny-cnn"]) == {"float32", "mixed", "channels_last", "both"}
    trainer, engine = figures["trainer"]["tiny-cnn"], figures["inference"]["tiny-cnn"]
    assert math.isclose(trainer["ratio"], trainer["trainer"] / trainer["bare"])
    assert math.isclose(engine["ratio"], engine["engine"] / engine["bare"])
    assert set(figures["loader"]) == {"0", "1"}
    values = [
        *figures["precision"]["tiny-cnn"].values(),
        *trainer.values(),
        *engine.values(),
        *figures["loader"].values(),
    ]
    assert all(math.isfinite(v) and v > 0 for v in values)
    for heading in (
        "| arch | float32 | mixed precision | channels_last | both |",
        "| arch | bare step | trainer | trainer / bare |",
        "| workers | images/s |",
    ):
        assert heading in printed
    assert f"| tiny-cnn | {trainer['bare']:,.1f} | {trainer['trainer']:,.1f} |" in printed
