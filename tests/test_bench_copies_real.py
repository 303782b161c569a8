"""benchmarks/bench_copies_real.py runs on real films and counts planted copies kind by kind; no timing is judged."""

from __future__ import annotations

from helpers import load_benchmark


def test_planted_copies_are_counted_by_kind(capsys, monkeypatch, nih_root):
    bench = load_benchmark("bench_copies_real", monkeypatch)
    figures = bench.main([str(nih_root / "images"), "--limit", "60", "--copies", "3", "--kinds", "jpeg,crop"])
    assert figures["real images"] == 60 and figures["images"] == 66
    assert set(figures["kinds"]) == {"jpeg", "crop"}
    for row in figures["kinds"].values():
        assert row["planted"] == 3 and row["confirmed"] <= row["candidates"] <= 3
    assert figures["kinds"]["jpeg"]["confirmed"] == 3  # a re-encoded film is always found
    assert "| crop | 3 |" in capsys.readouterr().out
