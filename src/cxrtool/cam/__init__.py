"""Class activation maps: where a network looks, drawn over the X-ray and scored against lesion boxes.

`run_cam(CamConfig(...))` is what `cxrtool cam` calls; `class_activation_maps` computes maps for a
batch in memory; `read_box_file` and `score_map` are the box scoring on their own.
"""

from .boxes import read_box_file, score_map, summarise
from .maps import METHODS, class_activation_maps, feature_grid, low_res_maps, upsample
from .run import CamConfig, run_cam

__all__ = [
    "METHODS",
    "CamConfig",
    "class_activation_maps",
    "feature_grid",
    "low_res_maps",
    "read_box_file",
    "run_cam",
    "score_map",
    "summarise",
    "upsample",
]
