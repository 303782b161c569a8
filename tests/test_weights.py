"""Starting weights: ImageNet through torchvision's cache and download, partial loads, --allow-partial.

No test touches the network: ImageNet files are random torchvision state dicts saved under a
temporary TORCH_HOME with the file name torchvision expects, and the download itself is replaced
by a function that writes such a file or fails as an offline machine does.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.errors import CxrError
from cxrtool.models.registry import build_model
from cxrtool.models.weights import imagenet_cache_path

runner = CliRunner()
RESNET18_URL = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache; any attempt to download fails loudly (tests stay offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch"


def _offline(monkeypatch):
    def fail(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def test_imagenet_weights_are_taken_from_the_torch_cache(torch_home):
    reference = torchvision.models.resnet18()
    target = torch_home / "hub" / "checkpoints" / Path(RESNET18_URL).name
    assert imagenet_cache_path(RESNET18_URL) == target
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    model, report = build_model("resnet18", 2, weights="imagenet")
    assert torch.equal(model.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert report.complete and len(report.matched) == report.total > 0  # fc.* is the head: not unexpected
    assert model.weights_report["matched"] == report.total


def test_imagenet_densenet_file_with_torchvision_legacy_names(torch_home):
    # torchvision's DenseNet file names layers 'norm.1'; they must load as 'norm1'.
    url = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url
    reference = torchvision.models.densenet121()
    legacy = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in reference.state_dict().items()
    }
    assert any(".norm.1." in k for k in legacy)
    imagenet_cache_path(url).parent.mkdir(parents=True)
    torch.save(legacy, imagenet_cache_path(url))
    model, report = build_model("densenet121", 2, weights="imagenet")
    assert report.complete
    got = model.body.features.denseblock4.denselayer16.conv2.weight
    assert torch.equal(got, reference.features.denseblock4.denselayer16.conv2.weight)


def test_imagenet_weights_missing_from_the_cache_are_downloaded_into_it(torch_home, monkeypatch):
    reference = torchvision.models.resnet18()
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst), progress))
        torch.save(reference.state_dict(), dst)  # what a connected machine receives

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    from cxrtool.progress import set_quiet

    set_quiet(False)  # a user at a terminal sees torchvision's progress bar
    model = build_model("resnet18", 2, weights="imagenet")[0]
    expected = torch_home / "hub" / "checkpoints" / Path(RESNET18_URL).name
    assert calls == [(RESNET18_URL, expected, True)]
    assert expected.is_file() and torch.equal(model.body.conv1.weight, reference.conv1.weight)
    build_model("resnet18", 2, weights="imagenet")  # now cached: no second download
    assert len(calls) == 1


def test_offline_imagenet_is_one_line_naming_file_address_and_place(torch_home, monkeypatch, synth_data, tmp_path):
    _offline(monkeypatch)
    expected = torch_home / "hub" / "checkpoints" / Path(RESNET18_URL).name
    with pytest.raises(CxrError) as err:
        build_model("resnet18", 2, weights="imagenet")
    message = str(err.value)
    assert "\n" not in message and RESNET18_URL in message and f"put it at {expected}" in message
    res = runner.invoke(
        app,
        [
            "pretrain",
            "--data",
            str(synth_data.root),
            "--arch",
            "resnet18",
            "--weights",
            "imagenet",
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code != 0 and res.output.count("error:") == 1 and Path(RESNET18_URL).name in res.output
    assert not (tmp_path / "r" / "manifest.json").exists()


def _resnet18_state() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}


def test_partial_files_fail_without_allow_partial(tmp_path):
    full = _resnet18_state()
    cases = {
        "missing": {k: v for k, v in full.items() if not k.startswith("layer4.")},  # about 10% of the tensors
        "unexpected": {**full, "layer5.0.conv1.weight": torch.zeros(3, 3)},
        "reshaped": {**full, "layer4.1.conv2.weight": torch.zeros(512, 512, 1, 1)},
    }
    for name, state in cases.items():
        save_file(state, str(tmp_path / f"{name}.safetensors"))
        path = str(tmp_path / f"{name}.safetensors")
        with pytest.raises(CxrError, match="--allow-partial") as err:
            build_model("resnet18", 2, weights=path)
        assert path in str(err.value) and "does not fully fit" in str(err.value)
        model, report = build_model("resnet18", 2, weights=path, allow_partial=True)
        assert not report.complete and model.weights_report["names"]
    _, report = build_model("resnet18", 2, weights=str(tmp_path / "missing.safetensors"), allow_partial=True)
    assert report.missing and all(k.startswith("layer4.") for k in report.missing)
    assert len(report.matched) + len(report.missing) == report.total
    _, report = build_model("resnet18", 2, weights=str(tmp_path / "unexpected.safetensors"), allow_partial=True)
    assert report.unexpected == ["layer5.0.conv1.weight"] and len(report.matched) == report.total
    _, report = build_model("resnet18", 2, weights=str(tmp_path / "reshaped.safetensors"), allow_partial=True)
    assert [m.split(":")[0] for m in report.mismatched] == ["layer4.1.conv2.weight"]


def _tiny_partial(tmp_path) -> Path:
    model = build_model("tiny-cnn", 2)[0]
    state = {
        f"body.{k}": v.contiguous() for k, v in model.body.state_dict().items() if not k.startswith("features.conv4")
    }
    save_file(state, str(tmp_path / "partial.safetensors"))
    return tmp_path / "partial.safetensors"


def test_pretrain_allow_partial_lists_the_names_in_the_manifest(synth_data, tmp_path):
    weights = _tiny_partial(tmp_path)
    base = [
        "pretrain",
        "--data",
        str(synth_data.root),
        "--arch",
        "tiny-cnn",
        "--weights",
        str(weights),
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "-q",
    ]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "refused")])
    assert res.exit_code != 0 and "--allow-partial" in res.output and res.output.count("error:") == 1
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "run"), "--allow-partial"])
    assert res.exit_code == 0, res.output
    load = json.loads((tmp_path / "run" / "manifest.json").read_text())["weights_load"]
    assert load["complete"] is False and load["missing"] == len(load["names"]["missing"]) > 0
    assert all(n.startswith("features.conv4") for n in load["names"]["missing"])


def test_finetune_from_a_run_reports_and_checks_its_tensors(trained_run, tmp_path):
    from cxrtool.models.checkpoint import resolve_checkpoint
    from cxrtool.train.transfer import transfer_model

    model, _ = transfer_model(resolve_checkpoint(trained_run), ["Cardiomegaly", "COVID-19"], seed=0)
    assert model.weights_report["complete"] and model.weights_report["matched"] == model.weights_report["total"]
    run = shutil.copytree(trained_run, tmp_path / "run")
    weights = run / "checkpoints" / "best" / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v for k, v in tensors.items() if not k.startswith("body.features.bn4")}, str(weights))
    with pytest.raises(CxrError, match=r"--from .* does not fully fit .*--allow-partial"):
        transfer_model(resolve_checkpoint(run), ["COVID-19"], seed=0)
    model, _ = transfer_model(resolve_checkpoint(run), ["COVID-19"], seed=0, allow_partial=True)
    assert model.weights_report["missing"] > 0
