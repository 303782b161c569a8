"""The maps find the lesion: a small network trained on generated effusions points into the
effusion's box in most positive test images, and the same network untrained does not.

Setup (chosen to be robust and quick on a CPU): 128-pixel phantoms, so that tiny-cnn's stride-16
feature map is 8 x 8; one finding (Effusion, half the patients) whose box is compact (about 8% of
the image); 160 patients split half and half; 3 epochs of the plain training loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrtool.cam import METHODS, CamConfig, run_cam
from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays


@pytest.fixture(scope="module")
def effusion_data(tmp_path_factory) -> PreparedData:
    cfg = SyntheticConfig(n_patients=160, max_followups=1, size=128, seed=0, prevalence={"Effusion": 0.5})
    images, frame, boxes = generate_arrays(cfg, findings=["Effusion"])
    split = np.where(np.random.default_rng(0).random(len(frame)) < 0.5, "train", "test")
    index = pd.DataFrame(
        {
            "id": frame["image"],
            "patient": frame["patient"],
            "view": frame["view"],
            "split": split,
            "source": "synthetic",
            "source_path": frame["image"],
            "Effusion": frame["Effusion"],
        }
    )
    root = tmp_path_factory.mktemp("effusion") / "data"
    write_cache(root, images, index, ["Effusion"], boxes=boxes.rename(columns={"image": "id"}))
    return PreparedData(root)


def hit_rates(run, data, tmp_path, methods) -> dict[str, float]:
    rates = {}
    for method in methods:
        out = run_cam(
            CamConfig(
                run=run,
                data=data.root,
                split="test",
                method=method,
                overlays=False,
                maps=False,
                out=tmp_path / run.name / method.replace("+", "p"),
                device="cpu",
            )
        )
        summary = out["box_scores"].set_index("class")
        positives = int(np.nansum(data.targets(data.rows("test"))))
        assert summary.loc["all", "images"] == positives >= 25  # every positive test image was scored
        rates[method] = float(summary.loc["all", "pointing_hit_rate"])
    return rates


def test_trained_network_points_at_the_lesion_and_untrained_does_not(effusion_data, tmp_path):
    from helpers import quick_train

    trained = quick_train(effusion_data, tmp_path / "trained", epochs=3, seed=0)
    untrained = quick_train(effusion_data, tmp_path / "untrained", epochs=0, seed=0)  # the same network, as initialised
    after = hit_rates(trained, effusion_data, tmp_path, METHODS)
    before = hit_rates(untrained, effusion_data, tmp_path, ["cam"])
    assert after["cam"] >= 0.8, after
    assert after["gradcam"] >= 0.8 and after["gradcam++"] >= 0.8, after
    assert before["cam"] <= 0.5 and after["cam"] - before["cam"] >= 0.4, (before, after)
