"""`genexfer train …` and `genexfer preprocess`: one module per command, its parser beside its run.

Each command module holds NAME, HELP, DESCRIPTION, `arguments(parser)` and `run(args)` (see
`shared.command.Command`); what they share (option groups and values, the data read, the
settings and the publish call) is in `shared`. Parsers import only the standard library and
stdlib-only modules, so `genexfer --help` works where only the service is installed; torch loads
when a command runs. The `genexfer` entry point (`app.cli`) finds `register` through the
`genexfer.commands` entry-point group.
"""

from __future__ import annotations

from training.cli import demo, evaluate, export, finetune, preprocess, pretrain, tune
from training.cli.shared.command import Subparsers, add_command


def register(commands: Subparsers) -> None:
    """Add `train` (demo, pretrain, finetune, tune, evaluate, export) and `preprocess` to
    `genexfer`."""
    train = commands.add_parser(
        "train",
        help="pretrain, fine-tune and export models (needs the 'train' extra)",
        description="Offline training: needs `pip install genexfer[train]` (PyTorch). "
        "Each command writes a new immutable version folder under --models-dir.",
    )
    steps = train.add_subparsers(dest="train_command", required=True, metavar="STEP")
    for command in (demo, pretrain, finetune, tune, evaluate, export):
        add_command(steps, command)
    add_command(commands, preprocess)
