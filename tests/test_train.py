"""The trainer: it learns, resumes exactly, stops on a non-finite loss, transfers and balances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import synthetic_cache

from cxrtool.errors import CxrError
from cxrtool.models.checkpoint import load_checkpoint, load_state
from cxrtool.train import FinetuneConfig, TrainConfig, finetune, pretrain, resume
from cxrtool.train import trainer as trainer_module
from cxrtool.train.losses import masked_bce
from cxrtool.train.samplers import SeededBatchSampler, balancing_weights
from cxrtool.train.transfer import transfer_model


def tiny(data: Path, out: Path, **kw) -> TrainConfig:
    options = dict(
        data=data,
        out=out,
        arch="tiny-cnn",
        weights="none",
        epochs=3,
        image_size=32,
        workers=0,
        lr=3e-3,
        early_stop=0,
        device="cpu",
    )
    options.update(kw)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return synthetic_cache(tmp_path_factory.mktemp("small") / "data", n_patients=50, size=32, seed=3)


@pytest.fixture(scope="module")
def covid_data(tmp_path_factory):
    return synthetic_cache(
        tmp_path_factory.mktemp("covid") / "data", n_patients=60, size=32, seed=4, labels=["COVID-19"]
    )


def test_masked_loss_skips_missing_labels_and_sums_over_labels():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    full = torch.tensor([[1.0, 0.0, 1.0]])
    partial = torch.tensor([[1.0, float("nan"), 1.0]])
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, full, reduction="none")[0]
    assert torch.isclose(masked_bce(logits, full), each.sum())
    assert torch.isclose(masked_bce(logits, partial), each[0] + each[2])
    logits.requires_grad_(True)
    masked_bce(logits, partial).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[0, 0] != 0


def test_a_small_network_learns_the_generated_lesions(tmp_path):
    data = synthetic_cache(tmp_path / "data", n_patients=120, size=32, seed=1)
    run = pretrain(tiny(data.root, tmp_path / "run", epochs=4, augment="flip"))
    card = json.loads((run / "checkpoints" / "best" / "card.json").read_text())
    assert card["metrics"]["val_auroc_mean"] > 0.75  # chance is 0.5; a broken loop stays near it
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]


def _comparable(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["images_per_s"])


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, small_data):
    straight = pretrain(tiny(small_data.root, tmp_path / "straight", epochs=4, augment="paper", plateau_patience=0))

    def interrupt(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(
            tiny(small_data.root, tmp_path / "stopped", epochs=4, augment="paper", plateau_patience=0),
            callbacks=[interrupt],
        )
    assert len(pd.read_csv(tmp_path / "stopped" / "metrics.csv")) == 2
    resumed = resume(tmp_path / "stopped", epochs=None)
    pd.testing.assert_frame_equal(_comparable(resumed), _comparable(straight))
    a_state, b_state = load_state(straight / "checkpoints" / "last"), load_state(resumed / "checkpoints" / "last")
    assert a_state["scheduler"] == b_state["scheduler"] and a_state["bad_epochs"] == b_state["bad_epochs"]
    a, _ = load_checkpoint(straight, "last")
    b, _ = load_checkpoint(resumed, "last")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_resume_can_extend_the_number_of_epochs(tmp_path, small_data):
    run = pretrain(tiny(small_data.root, tmp_path / "run", epochs=2))
    resume(run, epochs=3)
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    assert load_state(run / "checkpoints" / "last")["epoch"] == 3
    assert json.loads((run / "manifest.json").read_text())["resumed"]


def test_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, small_data, monkeypatch):
    broken = {"on": False}

    def loss(logits, targets):
        value = masked_bce(logits, targets)
        return value * float("nan") if broken["on"] else value

    monkeypatch.setattr(trainer_module, "masked_bce", loss)

    def break_after_first(epoch, row):
        broken["on"] = True

    with pytest.raises(CxrError) as err:
        pretrain(tiny(small_data.root, tmp_path / "run"), callbacks=[break_after_first])
    message = str(err.value)
    assert "\n" not in message and "epoch 2, step 1" in message and "not finite" in message
    model, card = load_checkpoint(tmp_path / "run", "last")
    assert card["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def test_a_non_finite_loss_between_reads_is_caught_with_its_own_step(tmp_path, small_data, monkeypatch):
    # The loss is read only every READ_EVERY steps; the first non-finite step is still the one named.
    calls = {"n": 0}

    def loss(logits, targets):
        calls["n"] += 1
        value = masked_bce(logits, targets)
        return value * float("inf") if calls["n"] >= 2 else value

    monkeypatch.setattr(trainer_module, "masked_bce", loss)
    monkeypatch.setattr(trainer_module, "READ_EVERY", 10_000)
    with pytest.raises(CxrError) as err:
        pretrain(tiny(small_data.root, tmp_path / "run", epochs=1, batch_size=4))
    assert calls["n"] > 2  # the epoch went on past the bad step: it was caught at the read
    message = str(err.value)
    assert "epoch 1, step 2:" in message and "not finite" in message and "no checkpoint written" in message


def test_loss_tally_sums_on_the_device_and_remembers_the_first_bad_step():
    tally = trainer_module.LossTally(torch.device("cpu"))
    for step, value in enumerate([0.5, 1.5, float("nan"), 2.0, float("inf")], start=1):
        tally.add(torch.tensor(value), 4, step)
    _total, bad_step, bad_value = tally.read()
    assert bad_step == 3 and np.isnan(bad_value) and tally.seen == 20
    clean = trainer_module.LossTally(torch.device("cpu"))
    clean.add(torch.tensor(0.5), 4, 1)
    clean.add(torch.tensor(1.5), 2, 2)
    assert clean.read() == (pytest.approx(5.0), 0, 0.0)


def _finetune_two_epochs(parent: Path, data, out: Path, **options) -> Path:
    """Finetune `parent` on `data` for two epochs on the CPU at lr 1e-2 (`options`: more config fields)."""
    return finetune(
        FinetuneConfig(
            parent=str(parent), data=data.root, out=out, epochs=2, workers=0, device="cpu", lr=1e-2, **options
        )
    )


def test_finetune_swaps_the_head_and_keeps_the_backbone(tmp_path, trained_run, covid_data):
    parent, parent_card = load_checkpoint(trained_run)
    model, _ = transfer_model(trained_run / "checkpoints" / "best", ["COVID-19"], seed=0)
    assert model.head.out_features == 1 and parent.head.out_features == 5
    for (name, x), y in zip(parent.body.state_dict().items(), model.body.state_dict().values()):
        assert torch.equal(x, y), name

    run = _finetune_two_epochs(trained_run, covid_data, tmp_path / "ft")
    tuned, card = load_checkpoint(run)
    assert card["labels"] == ["COVID-19"] and card["arch"] == parent_card["arch"]
    assert card["image_size"] == parent_card["image_size"]  # taken from the parent
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "finetune" and manifest["parent"] == str(
        (trained_run / "checkpoints" / "best").resolve()
    )
    assert not all(
        torch.equal(x, y) for x, y in zip(parent.body.state_dict().values(), tuned.body.state_dict().values())
    )


def test_freeze_backbone_trains_only_the_head(tmp_path, trained_run, covid_data):
    parent, _ = load_checkpoint(trained_run)
    run = _finetune_two_epochs(trained_run, covid_data, tmp_path / "ft", freeze_backbone=True, select="last")
    tuned, _ = load_checkpoint(run, "last")
    for (name, x), y in zip(parent.body.state_dict().items(), tuned.body.state_dict().values()):
        assert torch.equal(x, y), name  # weights and batch-norm statistics alike
    start, _ = transfer_model(trained_run / "checkpoints" / "best", ["COVID-19"], seed=0)
    assert not torch.equal(start.head.weight, tuned.head.weight)


def test_transfer_keeps_head_rows_of_labels_the_parent_knew(trained_run):
    parent, card = load_checkpoint(trained_run)
    labels = [*card["labels"][:2][::-1], "COVID-19"]
    model, _ = transfer_model(trained_run / "checkpoints" / "best", labels, seed=0)
    assert torch.equal(model.head.weight[0], parent.head.weight[1])
    assert torch.equal(model.head.weight[1], parent.head.weight[0])


def test_oversampling_balances_a_skewed_label():
    targets = np.zeros((1000, 1), dtype=np.float32)
    targets[:100] = 1  # 10% positives

    def positive_share(weights):
        sampler = SeededBatchSampler(1000, 50, seed=0, weights=weights)
        drawn = np.concatenate(list(sampler))
        return targets[drawn, 0].mean()

    assert positive_share(None) == pytest.approx(0.1)
    assert 0.42 < positive_share(balancing_weights(targets)) < 0.58


def test_sampler_order_depends_on_seed_and_epoch_and_shards_by_rank():
    s = SeededBatchSampler(37, 5, seed=1)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(2)
    assert list(s) == first
    s.set_epoch(3)
    assert list(s) != first
    shards = []
    for rank in range(2):
        r = SeededBatchSampler(37, 5, seed=1, rank=rank, world_size=2)
        r.set_epoch(2)
        shards.append(list(r))
    assert len(shards[0]) == len(shards[1])  # equal steps per process
    assert set(np.concatenate(shards[0] + shards[1]).tolist()) == set(range(37))


def test_small_validation_split_is_reported_once_and_recorded(tmp_path, covid_data, capsys):
    run = finetune(
        FinetuneConfig(
            parent="none",
            arch="tiny-cnn",
            data=covid_data.root,
            out=tmp_path / "ft",
            epochs=1,
            image_size=32,
            workers=0,
            device="cpu",
        )
    )
    err = capsys.readouterr().err
    assert err.count("--select last") == 1 and "COVID-19" in err
    selection = json.loads((run / "manifest.json").read_text())["selection"]
    assert selection["rule"] == "auroc" and selection["small_validation"] == ["COVID-19"]
    counts = selection["validation_counts"]["COVID-19"]
    assert counts["positive"] + counts["negative"] == len(covid_data.rows("val"))


@pytest.mark.parametrize(
    "kw, option",
    [
        ({"epochs": 0}, "--epochs"),
        ({"select": "best"}, "--select"),
        ({"augment": "heavy"}, "--augment"),
        ({"batch_size": 1}, "--batch-size"),
        ({"weights": "missing.safetensors"}, "--weights"),
    ],
)
def test_bad_options_name_the_option(tmp_path, small_data, kw, option):
    with pytest.raises(CxrError, match=option):
        tiny(small_data.root, tmp_path / "x", **kw)


def test_finetune_labels_missing_from_the_data_fail_in_one_line(tmp_path, small_data):
    with pytest.raises(CxrError, match=r"lacks the label.*COVID-19") as err:
        finetune(
            FinetuneConfig(
                parent="none",
                arch="tiny-cnn",
                data=small_data.root,
                labels=["COVID-19"],
                out=tmp_path / "x",
                workers=0,
                device="cpu",
            )
        )
    assert "\n" not in str(err.value)
