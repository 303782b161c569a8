"""Core pieces: run directories, config layering, image decoding, models and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cxrtool.config import build_config, parse_list
from cxrtool.data.imageio import ImageReadError, load_preprocessed, read_gray
from cxrtool.errors import CxrError
from cxrtool.models import create_model
from cxrtool.models.archs import arch_names
from cxrtool.models.checkpoint import load_checkpoint, load_state, model_card, read_card, save_checkpoint
from cxrtool.models.resnet import ResNet50
from cxrtool.run_locks import new_run_dir
from cxrtool.runs import latest_run, resolve_run


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("num_classes", [14, 1000])
def test_cxr_resnet50_matches_torchvision_parameter_count(num_classes):
    assert n_params(ResNet50(num_classes)) == n_params(torchvision.models.resnet50(num_classes=num_classes))


def test_cxr_resnet50_takes_torchvision_weights_and_computes_the_same():
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    ours = ResNet50().eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(ours(x), tv(x), atol=1e-5)


@pytest.mark.parametrize("arch", arch_names())
def test_every_arch_exposes_features_head_and_cam_layer(arch):
    model = create_model(arch, 3).eval()
    x = torch.rand(2, 1, 64, 64)  # one grey channel: the model repeats it to three
    feats = model.forward_features(x)
    assert feats.ndim == 4 and feats.shape[1] == model.num_features
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert model(x).shape == (2, 3)
    seen = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    model(x)
    handle.remove()
    assert torch.equal(seen["out"], feats)


def test_unknown_arch_suggests_the_close_name():
    with pytest.raises(CxrError, match="Did you mean 'densenet121'"):
        create_model("densnet121", 2)


def test_weights_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    reference = torchvision.models.resnet18()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    for path in ("w.safetensors", "w.pth"):
        model = create_model("resnet18", 2, weights=str(tmp_path / path))
        assert torch.equal(model.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(CxrError, match="does not fit"):
        create_model("tiny-cnn", 2, weights=str(tmp_path / "w.safetensors"))


def test_a_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CxrError, match="not a weights-only state dict"):
        create_model("tiny-cnn", 2, weights=str(tmp_path / "evil.pth"))


def test_checkpoint_roundtrip_with_training_state(tmp_path):
    model = create_model("tiny-cnn", 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 32, 32)).sum().backward()
    opt.step()
    card = model_card(model, ["a", "b", "c"], image_size=32, cache_size=32, data_hash="abc")
    save_checkpoint(
        tmp_path / "best",
        model,
        card,
        state={"optimizer": opt.state_dict(), "epoch": 4, "rng": torch.get_rng_state(), "np": np.arange(3)},
    )
    loaded, loaded_card = load_checkpoint(tmp_path / "best")
    assert loaded_card["labels"] == ["a", "b", "c"] and read_card(tmp_path / "best")["data_hash"] == "abc"
    x = torch.rand(1, 1, 32, 32)
    model.eval()
    assert torch.allclose(loaded(x), model(x))
    state = load_state(tmp_path / "best")
    assert state["epoch"] == 4 and np.array_equal(state["np"], np.arange(3))
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    # Overwriting replaces the folder atomically and leaves no temporary folders behind.
    save_checkpoint(tmp_path / "best", model, card)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_run_dirs_refuse_overwrite_and_latest_is_found(tmp_path):
    run = new_run_dir("pretrain", "tiny", out=tmp_path / "r1")
    (run / "x").write_text("keep")
    with pytest.raises(CxrError, match="holds x, which no cxrtool command wrote"):
        new_run_dir("pretrain", "tiny", out=run)
    assert (run / "x").read_text() == "keep"
    assert latest_run(tmp_path) is None
    with pytest.raises(CxrError, match="none found"):
        resolve_run(None, root=tmp_path)
    (run / "x").unlink()
    (run / "checkpoints").mkdir()
    (run / "manifest.json").write_text("{}")
    assert latest_run(tmp_path) is None  # no finished epoch: nothing to use
    (run / "checkpoints" / "best").mkdir()
    (run / "checkpoints" / "best" / "card.json").write_text("{}")
    assert resolve_run(None, root=tmp_path) == run


def test_config_layers_defaults_yaml_and_options(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        epochs: int = 3
        lr: float = 1e-3
        out: Path | None = None

    (tmp_path / "c.yaml").write_text("epochs: 7\nlr: 0.5\nout: somewhere\n")
    cfg = build_config(Cfg, tmp_path / "c.yaml", epochs=9, lr=None)
    assert (cfg.epochs, cfg.lr, cfg.out) == (9, 0.5, Path("somewhere"))
    (tmp_path / "bad.yaml").write_text("epoch: 7\n")
    with pytest.raises(CxrError, match="Did you mean 'epochs'"):
        build_config(Cfg, tmp_path / "bad.yaml")
    assert parse_list("PA, AP", "--views") == ["PA", "AP"]


def test_decoding_formats_agree(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    rgba = Image.fromarray(gray).convert("RGBA")
    rgba.save(tmp_path / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    (tmp_path / "png.jpg").write_bytes((tmp_path / "g.png").read_bytes())  # PNG data, .jpg name
    for name in ("g.png", "rgb.png", "rgba.png", "g16.png", "png.jpg"):
        assert np.array_equal(read_gray(tmp_path / name), gray), name
    out, crop = load_preprocessed(tmp_path / "g.png", 16)
    assert out.shape == (16, 16) and (crop.x, crop.y, crop.side) == (10, 0, 40)


def test_bad_images_raise_a_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    for name, reason in (
        ("empty.png", "empty"),
        ("text.png", "not an image"),
        ("trunc.png", "truncated"),
        ("nope.png", "not found"),
    ):
        with pytest.raises(ImageReadError, match=reason):
            read_gray(tmp_path / name)


def test_a_cross_validation_run_is_found_and_explains_itself(tmp_path):
    from cxrtool.models.checkpoint import resolve_checkpoint

    cv = tmp_path / "finetune-cv"
    (cv / "fold-1").mkdir(parents=True)
    (cv / "manifest.json").write_text(json.dumps({"kind": "cv"}))
    (cv / "oof_predictions.csv").write_text("id,patient,fold\n")
    assert resolve_run(None, root=tmp_path) == cv
    with pytest.raises(CxrError, match=r"one model per fold.*fold-1"):
        resolve_checkpoint(cv)


def test_a_dicom_whose_lut_breaks_is_an_unreadable_image_not_a_crash(tmp_path, monkeypatch):
    import pydicom.pixels
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 16, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 10).tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    assert read_gray(tmp_path / "x.dcm").shape == (16, 16)

    def broken(*args, **kwargs):
        raise ValueError("bad LUT descriptor")

    monkeypatch.setattr(pydicom.pixels, "apply_voi_lut", broken)
    with pytest.raises(ImageReadError, match="unusable LUT"):
        read_gray(tmp_path / "x.dcm")
