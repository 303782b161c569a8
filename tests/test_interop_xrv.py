"""`cxrtool import xrv`: torchxrayvision's DenseNet as a cxrtool run, never downloading.

A DenseNet-121 is built by torchxrayvision with random weights and saved as its published files
are (a pickled whole model under the published file name); `import` converts it, and the result
must give torchxrayvision's outputs on the same tensor, and close predictions through each
tool's own preprocessing. Then evaluate, finetune, cam and embed run on the imported run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.errors import CxrError

xrv = pytest.importorskip("torchxrayvision", reason="the xrv extra (pip install 'cxrtool[xrv]') is not installed")

runner = CliRunner()
NAME = "densenet121-res224-all"  # 18 outputs, 14 of them NIH's: the matching by name is exercised


def _random_xrv(seed: int = 0) -> torch.nn.Module:
    """torchxrayvision's DenseNet with random weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = xrv.models.DenseNet(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.05, 0.05)
                m.running_var.uniform_(0.8, 1.2)
        model.classifier.weight.mul_(1e-3)  # logits of a few units, as a trained model's
    return model.eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A folder laid out as torchxrayvision's cache, holding a file saved as theirs are."""
    folder = tmp_path_factory.mktemp("xrv-cache")
    torch.save(_random_xrv(), folder / os.path.basename(xrv.models.model_urls[NAME]["weights_url"]))
    return folder


@pytest.fixture(scope="module")
def imported(published, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "xrv-all"
    res = runner.invoke(app, ["import", "xrv", NAME, "--out", str(out), "--cache-dir", str(published)])
    assert res.exit_code == 0, res.output
    assert "logits match torchxrayvision" in res.output
    return out


def _xrv_loaded(published: Path) -> torch.nn.Module:
    """The same file as torchxrayvision itself loads it (op_threshs set as published)."""
    return xrv.models.DenseNet(weights=NAME, cache_dir=str(published) + os.sep).eval()


def test_card_holds_labels_input_convention_and_provenance(imported, published):
    card = json.loads((imported / "checkpoints" / "best" / "card.json").read_text())
    published_labels = xrv.models.model_urls[NAME]["labels"]
    assert card["labels"] == [l for l in published_labels if l]
    assert card["input"]["convention"] == "torchxrayvision" and card["input"]["channels"] == 1
    assert card["input"]["range"] == [[-1024.0, 1024.0]] and card["image_size"] == 224
    source = card["source"]
    file = published / os.path.basename(xrv.models.model_urls[NAME]["weights_url"])
    import hashlib

    assert source["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert source["sha256_checked"] == "not checked"  # torchxrayvision's own cache; no hash is published
    assert source["version"] == xrv.__version__ and source["weights"] == NAME
    assert json.loads((imported / "manifest.json").read_text())["kind"] == "import"


def test_same_outputs_as_torchxrayvision_on_the_same_tensor(imported, published):
    from cxrtool.models.checkpoint import load_checkpoint

    ours, card = load_checkpoint(imported)
    theirs = _xrv_loaded(published)
    outputs = card["source"]["outputs"]
    x01 = torch.rand(3, 1, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = ours(x01)
        # torchxrayvision's forward: op_norm(sigmoid(logits)) with its published op_threshs.
        reference = theirs((x01 * 2 - 1) * 1024)[:, outputs]
        mine = xrv.models.op_norm(torch.sigmoid(logits), theirs.op_threshs[outputs])
    assert torch.allclose(mine, reference, atol=1e-5), float((mine - reference).abs().max())
    assert logits.std() > 0.1  # the outputs differ between images: the check is not vacuous


def test_predictions_through_each_tools_preprocessing_agree(imported, published, nih_root):
    """cxrtool predict on PNG files vs torchxrayvision's own pipeline (normalize, crop, resize)."""
    import skimage.io

    from cxrtool.predict.pipeline import PredictConfig, predict_files

    files = sorted((nih_root / "images").glob("*.png"))[:12]
    table = predict_files(PredictConfig(inputs=files, run=imported, device="cpu"))
    theirs = _xrv_loaded(published)
    theirs.op_threshs = None  # plain logits, to compare probabilities
    import torchvision

    pipeline = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])
    labels = json.loads((imported / "checkpoints" / "best" / "card.json").read_text())["labels"]
    outputs = [xrv.models.model_urls[NAME]["labels"].index(l) for l in labels]
    batch = []
    for f in files:
        img = xrv.datasets.normalize(skimage.io.imread(f), 255)
        batch.append(pipeline(img[None, ...] if img.ndim == 2 else img.mean(2)[None, ...]))
    with torch.no_grad():
        probs = torch.sigmoid(theirs(torch.from_numpy(np.stack(batch))))[:, outputs].numpy()
    ours = table[[f"prob_{l}" for l in labels]].to_numpy(dtype=float)
    # Two resamplers (Lanczos vs skimage's Gaussian + bilinear) differ by a grey level or so, so
    # the probabilities differ a little; across images they must move together.
    assert np.abs(ours - probs).max() < 0.005, np.abs(ours - probs).max()
    assert ours.std(axis=0).max() > 0.01  # the images get different predictions
    correlation = [np.corrcoef(ours[:, j], probs[:, j])[0, 1] for j in range(len(labels))]
    assert min(correlation) > 0.9, correlation


def test_evaluate_matches_labels_by_name(imported, tmp_path):
    from helpers import synthetic_cache

    data = synthetic_cache(
        tmp_path / "nihlike",
        n_patients=24,
        size=32,
        labels=["Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax", "COVID-19"],
    )
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(imported),
            "--data",
            str(data.root),
            "--bootstrap",
            "0",
            "--no-shortcuts",
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((imported / "eval" / "metrics.json").read_text())
    assert "auroc" in metrics["labels"]["Cardiomegaly"] or metrics["labels"]["Cardiomegaly"]["not_computable"]
    assert metrics["labels"]["COVID-19"]["not_computable"] == "the model has no output for this label"
    assert metrics["labels"]["Fracture"]["not_computable"] == "the data does not annotate this label"
    assert set(metrics["mean"]["labels"]) <= {"Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax"}
    predictions = (imported / "eval" / "predictions.csv").read_text().splitlines()[0]
    assert "prob_Cardiomegaly" in predictions and "prob_Fracture" not in predictions
    # One more pretraining column in the paper's findings table.
    res = runner.invoke(
        app,
        [
            "compare",
            "--arm",
            f"xrv-all={imported}",
            "--label",
            "Effusion",
            "--pretrain",
            f"xrv-all={imported}",
            "--out",
            str(tmp_path / "results"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    findings = (tmp_path / "results" / "findings.csv").read_text()
    assert "xrv-all_auroc" in findings and "Fracture" in findings


def test_finetune_cam_and_embed_on_the_imported_run(imported, tmp_path):
    from helpers import synthetic_cache

    from cxrtool.models.checkpoint import load_checkpoint

    data = synthetic_cache(tmp_path / "covidlike", n_patients=16, size=32, labels=["COVID-19"])
    run = tmp_path / "ft"
    res = runner.invoke(
        app,
        [
            "finetune",
            "--from",
            str(imported),
            "--data",
            str(data.root),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--image-size",
            "64",
            "--batch-size",
            "8",
            "--freeze-backbone",
            "--workers",
            "0",
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    model, card = load_checkpoint(run)
    assert card["input"]["convention"] == "torchxrayvision" and model.in_channels == 1
    parent, _ = load_checkpoint(imported)
    # The body was frozen: the transferred network is torchxrayvision's body with a new head.
    assert torch.equal(model.body.features.conv0.weight, parent.body.features.conv0.weight)

    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.asarray(data.images[0])).save(image)
    res = runner.invoke(
        app,
        [
            "cam",
            str(imported),
            str(image),
            "--class",
            "Cardiomegaly",
            "--out",
            str(tmp_path / "cam"),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "cam").rglob("*.png"))
    res = runner.invoke(
        app,
        [
            "embed",
            "--run",
            str(imported),
            "--data",
            str(data.root),
            "--method",
            "som",
            "--space",
            "latent",
            "--som-grid",
            "3x3",
            "--som-epochs",
            "2",
            "--image-size",
            "64",
            "--out",
            str(tmp_path / "embed"),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "embed").rglob("*.csv"))


def test_offline_and_bad_names_are_one_line(published, tmp_path):
    empty = tmp_path / "cache"
    empty.mkdir()
    res = runner.invoke(
        app, ["import", "xrv", "densenet121-res224-nih", "--cache-dir", str(empty), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "nih-densenet121" in res.output and str(empty) in res.output and "--weights-file" in res.output
    assert not (tmp_path / "r").exists()
    res = runner.invoke(app, ["import", "xrv", "densenet121-res224-nhi"])
    assert res.exit_code == 2 and "Did you mean 'densenet121-res224-nih'" in res.output
    res = runner.invoke(app, ["import", "xrv", "resnet50-res512-all"])
    assert res.exit_code == 2 and "not a DenseNet-121" in res.output


def test_a_local_file_under_any_name(published, tmp_path):
    original = published / os.path.basename(xrv.models.model_urls[NAME]["weights_url"])
    copy = tmp_path / "my-weights.pt"
    copy.write_bytes(original.read_bytes())
    refused = runner.invoke(app, ["import", "xrv", NAME, "--weights-file", str(copy), "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "publishes no SHA-256" in refused.output  # no hash to check it against
    trust = ["--trust-weights-file"]
    res = runner.invoke(app, ["import", "xrv", NAME, "--weights-file", str(copy), "--out", str(tmp_path / "r"), *trust])
    assert res.exit_code == 0, res.output
    source = json.loads((tmp_path / "r" / "checkpoints" / "best" / "card.json").read_text())["source"]
    assert source["file"] == "my-weights.pt" and source["sha256_checked"] == "trusted by the user"
    again = runner.invoke(
        app, ["import", "xrv", NAME, "--weights-file", str(copy), "--out", str(tmp_path / "r"), *trust]
    )
    assert again.exit_code == 2 and "not empty" in again.output  # nothing overwritten
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a pickle")
    res = runner.invoke(
        app, ["import", "xrv", NAME, "--weights-file", str(broken), "--out", str(tmp_path / "b"), *trust]
    )
    assert res.exit_code == 2 and "could not load" in res.output and not (tmp_path / "b").exists()


def test_cards_without_an_input_field_load_as_before(tmp_path):
    from cxrtool.models import create_model
    from cxrtool.models.checkpoint import load_checkpoint, model_card, save_checkpoint

    torch.manual_seed(0)
    folder = save_checkpoint(tmp_path / "best", create_model("tiny-cnn", 2), {})
    card = model_card(create_model("tiny-cnn", 2), ["A", "B"], image_size=32, cache_size=32)
    assert card["input"] == {
        "convention": "imagenet",
        "channels": 3,
        "range": [[-2.1179, 2.2489], [-2.0357, 2.4286], [-1.8044, 2.64]],
    }
    del card["input"]  # a card written before the field existed
    (folder / "card.json").write_text(json.dumps(card))
    model, _ = load_checkpoint(folder)
    assert model.in_channels == 3 and model.convention == "imagenet"
    (folder / "card.json").write_text(json.dumps({**card, "input": {"convention": "bogus"}}))
    with pytest.raises(CxrError, match="unknown input convention 'bogus'"):
        load_checkpoint(folder)


def test_without_the_package_import_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # makes `import torchxrayvision` fail
    res = runner.invoke(app, ["import", "xrv", NAME, "--out", str(tmp_path / "r")])
    assert (
        res.exit_code == 2
        and res.output.strip() == "error: import xrv needs the torchxrayvision package: pip install torchxrayvision"
    )
    assert not (tmp_path / "r").exists()


def test_a_native_run_on_data_with_some_of_its_labels(tmp_path):
    """Matching by name for cxrtool's own runs: shared labels scored, the model's others listed;
    the data's other labels are not (the run chose its labels)."""
    from helpers import quick_train, synthetic_cache

    from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run

    run = quick_train(synthetic_cache(tmp_path / "a", n_patients=16, size=32), tmp_path / "run", epochs=1)
    other = synthetic_cache(
        tmp_path / "b", n_patients=16, size=32, seed=1, labels=["Cardiomegaly", "Effusion", "COVID-19"]
    )
    metrics = evaluate_run(EvaluateConfig(run=run, data=other.root, bootstrap=0, shortcuts=False, device="cpu"))
    assert set(metrics["mean"]["labels"]) <= {"Cardiomegaly", "Effusion"}
    assert metrics["labels"]["Mass"]["not_computable"] == "the data does not annotate this label"
    assert "COVID-19" not in metrics["labels"]
