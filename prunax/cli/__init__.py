"""The ``prunax`` console script: ``prunax bench [STUDY]``, ``prunax bias`` and ``prunax problems``.

Every study's flags are generated from its settings dataclass in ``prunax.benchmarks.configs``
(name, type, default and the ``help`` in the field's metadata), and the arguments are checked by
constructing that dataclass, so ``prunax --help`` and every argument error import nothing heavier
than the standard library. The handlers in ``_commands`` import the studies (and JAX) when they
run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

import prunax
from prunax.benchmarks import configs

__all__ = ["STUDIES", "build_parser", "main"]


@dataclasses.dataclass(frozen=True)
class Study:
    """One ``prunax bench`` subcommand: its settings class, one-line help, the handler's name in
    ``_commands``, whether ``--resume`` applies, and the instance giving the flag defaults (the
    dataclass field defaults when None)."""

    config: type
    help: str
    handler: str
    resume: bool = False
    defaults: object = None


STUDIES = {
    "convergence": Study(
        configs.ConvergenceStudy,
        "methods x sparsities x seeds through prune: the SLR question",
        "convergence",
        resume=True,
    ),
    "blocks": Study(
        configs.ConvergenceStudy,
        "MiniLM block pruning: RGL vs ADMM vs magnitude at 2x-5x encoder compression (~50 min)",
        "blocks",
        resume=True,
        defaults=configs.BLOCKS_STUDY,
    ),
    "projection": Study(
        configs.ProjectionBench,
        "projection vs its floor, NumPy, lax.top_k, sort; sharded; families",
        "projection",
    ),
    "support": Study(
        configs.SupportStudy, "ADMM, SLR, group lasso, magnitude: optimal-support rate", "support"
    ),
    "overhead": Study(configs.OverheadBench, "solver step time against the plain optax step", "overhead"),
    "spd": Study(
        configs.DistillationStudy,
        "MiniLM: sparse progressive distillation vs magnitude + KD vs magnitude (~50 min)",
        "spd",
        resume=True,
    ),
    "structures": Study(
        configs.StructuresStudy,
        "when to use a constrained solver: every method on polarity, patterns and 2:4 (~20 min)",
        "structures",
        resume=True,
    ),
    "oneshot": Study(
        configs.OneShotStudy,
        "post-training pruning of MiniLM (~45 min) or SmolLM2-135M (--problem smollm2, ~1 h): "
        "magnitude, Wanda, SparseGPT, ADMM, no retraining",
        "oneshot",
        resume=True,
    ),
    "forms": Study(
        configs.FormsStudy,
        "FORMS: ADMM into polarized crossbar fragments on ResNet/MNIST, crossbar costs (~8 min)",
        "forms",
        resume=True,
    ),
    "allocation": Study(
        configs.AllocationStudy,
        "CANAO idea: per-layer sparsities from measured latency vs uniform, same budget",
        "allocation",
        resume=True,
    ),
    "speedup": Study(
        configs.SpeedupStudy,
        "coupled structured pruning compacted into smaller dense models: measured speed-ups and "
        "accuracy (ResNet-8/18, YOLO-tiny, MiniLM; ~1 h)",
        "speedup",
        resume=True,
    ),
    "rt3": Study(
        configs.RT3Study,
        "RT3: block pruning, pattern sets per frequency level by REINFORCE, switching (~8 min)",
        "rt3",
        resume=True,
    ),
    "bias": Study(
        configs.BiasStudy,
        "gender-bias detector on MiniLM's attention maps, before and after pruning (~6 min)",
        "bias",
    ),
}

SPD_EPOCHS = ("prune_epochs", "replace_epochs", "finetune_epochs")  # what spd's --epochs sets


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _items(kind: type, what: str):
    """The argparse type of a comma-separated list of ``kind``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(t) for t in text.split(",") if t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    return parse


def _pairs(kinds: tuple[type, ...], item: str):
    """The argparse type of comma-separated ``a:b`` items, one element of ``kinds`` per part."""

    def parse(text: str) -> tuple:
        pairs = []
        for part in (t for t in text.split(",") if t):
            values = part.split(":")
            try:
                if len(values) != len(kinds):
                    raise ValueError(part)
                pairs.append(tuple(kind(v) for kind, v in zip(kinds, values)))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {item} items, got {part!r}") from None
        return tuple(pairs)

    return parse


_WHAT = {int: "integers", float: "numbers", str: "names"}


def _shown(value) -> str:
    """A default as it is typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(":".join(map(_shown, v)) if isinstance(v, tuple) else _shown(v) for v in value)
    if isinstance(value, float):  # 1e6, not 1e+06
        return f"{value:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return str(value)


def flag(field: dataclasses.Field) -> str:
    """The command-line flag of a settings field: ``--field-name`` or ``metadata["flag"]``."""
    return "--" + field.metadata.get("flag", field.name).replace("_", "-")


def _argument(field: dataclasses.Field, hint, default) -> dict:
    """``add_argument`` keywords for ``field`` with annotation ``hint`` and default ``default``."""
    text = field.metadata.get("help", "")
    if default is not None and not isinstance(default, bool):
        text = f"{text} (default: {_shown(default)})" if text else f"default: {_shown(default)}"
    keywords = {"dest": field.name, "default": default, "help": text.replace("%", "%%")}
    metavar = field.metadata.get("flag", field.name).upper()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {**keywords, "action": argparse.BooleanOptionalAction if default else "store_true"}
    if origin in (typing.Union, types.UnionType):  # an optional setting: X | None
        (hint,) = (a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if typing.get_origin(args[0]) is tuple:
            item = field.metadata.get("item", "key:value")
            return {**keywords, "type": _pairs(typing.get_args(args[0]), item), "metavar": f"{item},..."}
        return {**keywords, "type": _items(args[0], _WHAT[args[0]]), "metavar": f"{metavar},..."}
    return {**keywords, "type": hint, "metavar": metavar}


def _add_settings(parser: argparse.ArgumentParser, study: Study) -> None:
    """One flag per field of the study's settings dataclass."""
    hints = typing.get_type_hints(study.config)
    for field in dataclasses.fields(study.config):
        if not field.init:
            continue
        if study.defaults is not None:
            default = getattr(study.defaults, field.name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        parser.add_argument(flag(field), **_argument(field, hints[field.name], default))
    if study.config is configs.DistillationStudy:
        parser.add_argument(
            "--epochs",
            dest="stage_epochs",
            type=_items(int, "integers"),
            metavar="PRUNING,REPLACING,FINE_TUNING",
            help="the three stage epochs at once (sets --prune-epochs, --replace-epochs, --finetune-epochs)",
        )


def _parents() -> dict[str, argparse.ArgumentParser]:
    """The flags every study shares, each declared once: ``--out``, ``--resume``, ``--debug``.
    Their defaults are suppressed, so a flag given before the study name is not reset by it."""
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks instead of one line"
    )
    out = _Parser(add_help=False)
    out.add_argument("--out", default=argparse.SUPPRESS, help="output folder (default runs/<study>-<time>)")
    resume = _Parser(add_help=False)
    resume.add_argument(
        "--resume",
        action="store_true",
        default=argparse.SUPPRESS,
        help="continue in --out: skip finished runs, resume the unfinished one",
    )
    return {"debug": debug, "out": out, "resume": resume}


def _add_study(commands, name: str, parents: dict, help: str | None = None, command: str | None = None):
    """The subcommand ``command`` (default ``name``) running study ``name``."""
    study = STUDIES[name]
    shared = [parents["out"], *([parents["resume"]] if study.resume else []), parents["debug"]]
    parser = commands.add_parser(
        command or name,
        parents=shared,
        help=help or study.help,
        description=study.help if study.defaults is not None else study.config.__doc__,
    )
    _add_settings(parser, study)
    parser.set_defaults(study=name, handler=study.handler, parser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parents = _parents()
    parser = _Parser(prog="prunax", description=prunax.__doc__.splitlines()[0], parents=[parents["debug"]])
    parser.add_argument("--version", action="version", version=f"prunax {prunax.__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)
    bench_help = "run a benchmark (no STUDY: the default convergence study, ~6 min)"
    bench = _add_study(commands, "convergence", parents, bench_help, command="bench")
    studies = bench.add_subparsers(metavar="STUDY", parser_class=_Parser)
    for name in STUDIES:
        _add_study(studies, name, parents)
    _add_study(commands, "bias", parents, "alias of `prunax bench bias`: " + STUDIES["bias"].help)
    listing = commands.add_parser("problems", parents=[parents["debug"]], help="list the problems and sizes")
    listing.set_defaults(study=None, handler="problems", parser=listing)
    return parser


def settings(name: str, args: argparse.Namespace):
    """The study's settings dataclass built from the parsed arguments (a ValueError if invalid)."""
    study = STUDIES[name]
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(study.config) if f.init}
    stage_epochs = getattr(args, "stage_epochs", None)
    if stage_epochs is not None:
        if len(stage_epochs) != len(SPD_EPOCHS):
            raise configs.SettingError(
                f"--epochs takes pruning,replacing,fine-tuning epochs, got {list(stage_epochs)}", "epochs"
            )
        values.update(zip(SPD_EPOCHS, stage_epochs))
    return study.config(**values)


def _argument_error(name: str, err: ValueError) -> str:
    """The message of an invalid setting, naming the flag it came from."""
    fields = {f.name: flag(f) for f in dataclasses.fields(STUDIES[name].config)}
    setting = getattr(err, "setting", None)
    named = fields.get(setting) or ("--epochs" if setting == "epochs" else None)
    return f"argument {named}: {err}" if named else str(err)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv=None) -> int:
    """Run ``prunax`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code, or raises
    SystemExit(2) with one line on stderr for invalid arguments and for a study's known errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    from . import _commands

    study = None
    if args.study is not None:
        try:
            study = settings(args.study, args)
        except ValueError as err:
            args.parser.error(_argument_error(args.study, err))
        try:
            _commands.prepare_out(args)
        except ValueError as err:
            args.parser.error(f"argument --out: {err}")
    try:
        return getattr(_commands, args.handler)(study, args)
    except Exception as err:
        if getattr(args, "debug", False) or not _commands.reportable(err):
            raise
        parser.exit(2, f"prunax: error: {_one_line(err)}{_commands.hint(err, study)}\n")


if __name__ == "__main__":
    sys.exit(main())
