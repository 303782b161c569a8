"""Training: `pretrain` and `finetune` (plus patient cross-validation) over a prepared cache.

`pretrain(cfg) -> run dir`, `finetune(cfg) -> run dir` and `resume(run, ...) -> run dir` are the
library calls the command line makes; the epoch loop lives in `trainer`, the masked loss in
`losses`, the seeded (and balancing) batch samplers in `samplers`, multi-process setup in
`distributed`, the steps every run shares in `steps`, a finetune's starting network in
`transfer`, and cross-validation in `folds`.
"""

from .api import finetune, pretrain, resume
from .config import FinetuneConfig, TrainConfig

__all__ = ["FinetuneConfig", "TrainConfig", "finetune", "pretrain", "resume"]
