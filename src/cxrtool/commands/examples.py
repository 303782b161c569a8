"""Examples printed at the end of each command's `--help`, and how flags and lists are shown there.

Kept in one table so that each command module stays about its options (a `prepare` source's
come from the source registry); `cli.py` attaches them when the app is built. Every example is a
command line that works as typed after the README's tour (the paths are the tour's own).
"""

from __future__ import annotations

from typing import Any, get_args

# Command path (as typed after `cxrtool`) -> example lines.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "prepare combine": ("cxrtool prepare combine data/nih data/covid --out data/nih-covid",),
    "prepare dedupe": ("cxrtool prepare dedupe data/nih data/external --drop-from data/external",),
    "prepare synthetic": ("cxrtool prepare synthetic raw/synthetic --patients 200",),
    "import xrv": ("cxrtool import xrv densenet121-res224-all --out runs/xrv-all",),
    "pretrain": (
        "cxrtool pretrain --arch densenet121 --data data/nih --epochs 20",
        "cxrtool pretrain --resume",
    ),
    "finetune": (
        "cxrtool finetune --data data/covid --oversample",
        "cxrtool finetune --from runs/pretrain-densenet121-RUN --data data/covid --folds 5",
    ),
    "evaluate": ("cxrtool evaluate --compare chexnet", "cxrtool evaluate runs/finetune-RUN --split val"),
    "compare": ("cxrtool compare --arm nih=runs/finetune-A --arm imagenet=runs/finetune-B --out results",),
    "predict": ("cxrtool predict some-xray.dcm other.png", "cxrtool predict runs/finetune-RUN scans/"),
    "cam": (
        "cxrtool cam img.png --class Cardiomegaly",
        "cxrtool cam --data data/nih --split test --boxes data/nih/boxes.csv --top 1",
    ),
    "embed": ("cxrtool embed --method som", "cxrtool embed --method umap --data data/covid"),
    "report": ("cxrtool report", "cxrtool report runs/finetune-RUN --out finetune.html"),
    "export": ("cxrtool export --format onnx",),
    "demo": ("cxrtool demo", "cxrtool demo --quick --out /tmp/cxrtool-demo"),
}
# Each dataset source's subcommand brings its own examples (data/sources/registry.py); they are
# added here when `prepare`'s subcommands are built (commands/prepare.py, `source_commands`).


def epilog(lines: tuple[str, ...]) -> str:
    # "\b" keeps click (and Typer's rich help) from re-wrapping the lines into one paragraph.
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _element_name(option: Any) -> str:
    """`str` for an option typed `list[str]` (Typer's descriptor keeps the annotation)."""
    args = get_args(getattr(getattr(option, "type_descriptor", None), "annotation", None))
    return getattr(args[0], "__name__", "value").lower() if args else "value"


def _show_flags_untyped(params: list[Any]) -> list[Any]:
    for param in params:
        if param.param_type_name == "argument" and param.nargs != 1:
            shown = f"<{_element_name(param)}>..."
            param.display_type_rich = lambda ctx, shown=shown: shown
        if param.param_type_name != "option" or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.multiple:
            param.metavar = f"<{_element_name(param)}>..."
    return params


def polish(command: Any, path: str = "") -> None:
    """Add examples to `command` and its subcommands, and show flags without a type.

    A flag (`--quiet`, `--oversample/--no-oversample`) takes no value, so `--help` shows no type
    for it; a repeatable option shows its element's type with `...` rather than Python's
    `list[str]`. The options are read when help is formatted (`--help` and shell completion are
    added to a command's parameters only then), so `get_params` is wrapped. Typer ships its own
    copy of click, so commands are read by their attributes.
    """
    if path in EXAMPLES and not command.epilog:
        command.epilog = epilog(EXAMPLES[path])
    get_params = command.get_params
    command.get_params = lambda ctx: _show_flags_untyped(get_params(ctx))
    # A group that builds some subcommands on first use (`prepare`) polishes those itself.
    subcommands = getattr(command, "eager_commands", None)
    for name, sub in (subcommands if subcommands is not None else getattr(command, "commands", {})).items():
        polish(sub, f"{path} {name}".strip())
