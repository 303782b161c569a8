"""What `--resume` accepts besides the run: options that may change, and a refusal for the rest.

A resumed run continues from its own `config.yaml`; an option given with `--resume` that would
train it differently (another `--lr`, `--arch`, `--data`, `--image-size`, `--batch-size`...)
cannot apply to the epochs already done, and used to be dropped without a word. Now only
`MAY_CHANGE` may differ: `--epochs` (train on to a new total), `--workers` and `--device`
(where it runs, not what it learns; resumed runs on the CPU are exact, elsewhere close). Any
other option the user gave (on the command line or in `--config FILE`, never a default) must
equal what the run recorded, else one line names each that differs with both values. Giving the
same value again is fine, so the command that started a run, with `--resume` added, continues it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from ..config import load_yaml, parse_list
from ..errors import CxrError
from ..optionspec import option_spec
from .config import FinetuneConfig

MAY_CHANGE = ("epochs", "workers", "device")


def _flag(name: str) -> str:
    """The option's flag as the command spells it (`parent` is `--from`), read off the config's fields."""
    spec = next((option_spec(f) for f in dataclasses.fields(FinetuneConfig) if f.name == name), None)
    return spec.flags_for(name)[0] if spec is not None else "--" + name.replace("_", "-")


def _as_path(value: Any) -> Path | None:
    return Path(str(value)).expanduser().resolve() if value not in (None, "", "none", "imagenet") else None


def _same(name: str, given: Any, recorded: Any, also: tuple[Any, ...] = ()) -> bool:
    """Whether a given option's value is what the run recorded (paths resolved, lists parsed)."""
    if any(_same(name, given, other) for other in also):
        return True
    if given == recorded:
        return True
    if recorded is None:
        return False
    if name in ("data", "out", "weights", "parent"):
        mine, theirs = _as_path(given), _as_path(recorded)
        if mine is None or theirs is None:
            return str(given) == str(recorded)
        # --from a run names the run; the run recorded the checkpoint inside it that it used
        return mine == theirs or (name == "parent" and mine in theirs.parents)
    if name == "labels":
        return parse_list(given, "--labels") == parse_list(recorded, "--labels")
    if isinstance(given, bool) or isinstance(recorded, bool):
        return bool(given) == bool(recorded)
    if isinstance(given, (int, float)) and isinstance(recorded, (int, float)):
        return math.isclose(float(given), float(recorded), rel_tol=1e-9, abs_tol=0.0)
    return str(given) == str(recorded)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def given_options(options: dict[str, Any], config_file: Path | None) -> dict[str, Any]:
    """The options a user gave with --resume: the --config file's, then the command line's (None: not given)."""
    given = dict(load_yaml(config_file)) if config_file is not None else {}
    given.update({k: v for k, v in options.items() if v is not None})
    return given


def check_resume_options(
    run_dir: Path, config_file: Path, given: dict[str, Any], manifest: dict[str, Any], fields: set[str]
) -> None:
    """Refuse, in one line, options given with --resume that differ from the run's config.yaml."""
    recorded = load_yaml(config_file)
    requested = (manifest.get("selection") or {}).get("requested")
    changed = []
    for name, value in sorted(given.items()):
        if name in MAY_CHANGE:
            continue
        if name not in fields:
            changed.append(f"{_flag(name)} {_shown(value)} (not an option of this run)")
            continue
        if name == "out":  # --out names the run to continue; with a RUN given too, both must agree
            if _as_path(value) != Path(run_dir).resolve():
                changed.append(f"--out {value} (the run continued is {run_dir})")
            continue
        also = (requested,) if name == "select" and requested else ()
        if not _same(name, value, recorded.get(name), also):
            changed.append(f"{_flag(name)} {_shown(value)} (the run has {_shown(recorded.get(name))})")
    if changed:
        may = ", ".join(_flag(n) for n in MAY_CHANGE)
        raise CxrError(
            f"--resume: {run_dir} was started with other options: {'; '.join(changed)}. Only {may} may "
            "change when resuming: drop the others, or start a new run with another --out"
        )
