"""`cxrtool export`: ONNX and TorchScript files that give PyTorch's outputs, with the card beside them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cxrtool.cli import app

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from helpers import quick_train, synthetic_cache

    data = synthetic_cache(tmp_path_factory.mktemp("data") / "cache", n_patients=16, size=32)
    return quick_train(data, tmp_path_factory.mktemp("runs") / "tiny", epochs=2)


def _images(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(3))


def test_onnx_runs_in_onnxruntime_alone_with_a_dynamic_batch(run, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from cxrtool.models.checkpoint import load_checkpoint

    out = tmp_path / "onnx"
    res = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert re.search(r"max \|logit difference\| \S+ \(tolerance \S+\)", " ".join(res.output.split()))
    card = json.loads((out / "card.json").read_text())
    model, source_card = load_checkpoint(run)
    assert card["labels"] == source_card["labels"] and card["export"]["format"] == "onnx"
    check = card["export"]["check"]
    assert check["images"] > 1 and check["max_abs_logit_diff"] <= check["tolerance"] and "images of" in check["on"]

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch axis is symbolic
    for n in (1, 5):
        x = _images(n, card["image_size"])
        got = session.run(["logits"], {"image": x.numpy()})[0]
        with torch.no_grad():
            assert np.allclose(got, model(x).numpy(), atol=1e-4)


def test_torchscript_is_checked_the_same_way(run, tmp_path):
    from cxrtool.models.checkpoint import load_checkpoint

    res = runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "ts")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "ts" / "card.json").read_text())
    assert card["export"]["check"]["max_abs_logit_diff"] <= card["export"]["check"]["tolerance"]
    loaded = torch.jit.load(str(tmp_path / "ts" / "model.pt"))
    model, _ = load_checkpoint(run)
    x = _images(3, card["image_size"])
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_a_one_channel_network_exports_with_its_convention_inside(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from cxrtool.models import create_model
    from cxrtool.models.checkpoint import model_card, save_checkpoint

    torch.manual_seed(0)
    model = create_model("tiny-cnn", 2)
    model.set_input_convention("torchxrayvision")
    folder = save_checkpoint(tmp_path / "ckpt", model.eval(), model_card(model, ["A", "B"], 32, 32))
    res = runner.invoke(app, ["export", str(folder), "--format", "onnx"])
    assert res.exit_code == 0, res.output
    card = json.loads((folder / "export" / "onnx" / "card.json").read_text())
    assert card["input"]["convention"] == "torchxrayvision" and "generated images" in card["export"]["check"]["on"]
    assert card["export"]["check"]["max_abs_logit_diff"] <= card["export"]["check"]["tolerance"]


def test_the_docs_snippet_gives_predicts_probabilities(run, tmp_path):
    """docs/export.md's onnxruntime lines (preprocessing included) agree with `cxrtool predict`."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from PIL import Image

    from cxrtool.predict.pipeline import PredictConfig, predict_files

    out = tmp_path / "onnx"
    assert runner.invoke(app, ["export", str(run), "--out", str(out)]).exit_code == 0
    rng = np.random.default_rng(0)
    image = tmp_path / "xray.png"
    pixels = (np.outer(np.hanning(90), np.hanning(70)) * 200 + rng.integers(0, 40, (90, 70))).astype(np.uint8)
    Image.fromarray(pixels).save(image)
    snippet = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    scope = {"__name__": "snippet"}
    exec(snippet.replace("runs/my-run/export/onnx", str(out)).replace("xray.png", str(image)), scope)
    table = predict_files(PredictConfig(inputs=[image], run=run, device="cpu"))
    labels = scope["card"]["labels"]
    ours = table.iloc[0][[f"prob_{l}" for l in labels]].to_numpy(dtype=float)
    assert np.abs(np.asarray(scope["probabilities"]) - ours).max() < 0.01


def test_bad_input_is_one_line(run, tmp_path):
    out = tmp_path / "x"
    assert runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(out)]).exit_code == 0
    before = (out / "model.pt").stat().st_mtime_ns
    cases = [
        (["export", str(run), "--format", "torchscript", "--out", str(out)], "--overwrite"),
        (["export", str(run), "--format", "tflite"], "unsupported format 'tflite'"),
        (["export", str(tmp_path / "nowhere")], "no such run"),
    ]
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "manifest.json").write_text("{}")
    cases.append((["export", str(empty)], "no epoch of this run finished"))
    for args, needle in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and needle in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    assert (out / "model.pt").stat().st_mtime_ns == before  # nothing overwritten
    res = runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output


def test_without_onnx_the_format_says_what_to_install(run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    res = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "pip install onnx onnxscript onnxruntime" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not list((tmp_path / "o").glob("model.*"))
