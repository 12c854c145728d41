"""The command line's arguments: the parser, and every check of a value the user typed.

Validation happens here, once, at the boundary, before any data is loaded or learner
built; each mistake is a :class:`MetaRepError` naming the value and what is allowed
(argparse's own errors included, as one line). Each learner's declared
hyper-parameters become ``train`` flags generically (``--inner-lr 0.4``,
``--first-order``), found after ``--algorithm`` is known; the same can be given as
``--hp inner_lr=0.4``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import MetaRepError, check_positive_int
from .limits import MAX_SEED

PROG = "python -m metarep_core"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the usage block first)."""

    def error(self, message):
        raise MetaRepError(f"{message} (see {self.prog} --help)")


# ----------------------------------------------------------------------------- parsers
def _add_common(p):
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice)")


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="MetaRep Explorer: meta-learning from the command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("datasets", help="list the datasets")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("algorithms", help="list the meta-learners and their hyper-parameters")
    p.add_argument("--json", action="store_true", help="print a JSON list of learner metadata")

    p = sub.add_parser("train", help="meta-train a learner and save its best checkpoint",
                       epilog="Each algorithm's hyper-parameters are flags too (see "
                              f"`{PROG} algorithms`), e.g. --inner-lr 0.4 --first-order; "
                              "or --hp name=value.")
    p.add_argument("--algorithm", required=True, help="a learner name (see `algorithms`)")
    p.add_argument("--dataset", required=True, help="glyphs, digits, sinusoid or folder:PATH")
    p.add_argument("--n-way", type=int, default=None, help="classes per episode (default 5; 1 for regression)")
    p.add_argument("--k-shot", type=int, default=1, help="support examples per class (default 1)")
    p.add_argument("--n-query", type=int, default=15, help="query examples per class (default 15)")
    p.add_argument("--steps", type=int, default=1000, help="meta-steps (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and episode seed (default 0)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="dataset generation and class-split seed (default 0)")
    p.add_argument("--out", required=True, help="checkpoint file to write (.safetensors)")
    p.add_argument("--val-every", type=int, default=100, help="validate every N steps (0: never)")
    p.add_argument("--val-episodes", type=int, default=100, help="validation episodes (default 100)")
    p.add_argument("--eval-episodes", type=int, default=0,
                   help="after training, evaluate the best weights on this many test episodes")
    p.add_argument("--eval-n-query", type=int, default=15,
                   help="query examples per class in that test evaluation (default 15)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this side")
    p.add_argument("--channels", type=int, default=1, help="1 (grayscale) or 3 (RGB)")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of the algorithm (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="train on the Ray cluster at ray://HOST:PORT (or HOST:PORT on one of its "
                        "nodes); default: $METAREP_RAY_ADDRESS, else this machine")
    _add_common(p)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on test episodes (mean, 95%% CI)")
    p.add_argument("checkpoint", help="a .safetensors checkpoint")
    p.add_argument("--dataset", default=None,
                   help="default: the checkpoint's dataset if built-in (a folder: path must be given)")
    p.add_argument("--split", default="test", help="test (default), val, train or all")
    p.add_argument("--episodes", type=int, default=600, help="episodes (default 600)")
    p.add_argument("--n-way", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--k-shot", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--n-query", type=int, default=15, help="query examples per class (default 15)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--data-seed", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's input size")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the episodes as a Ray task on the cluster at ray://HOST:PORT (or "
                        "HOST:PORT on one of its nodes); default: $METAREP_RAY_ADDRESS, else this machine")
    _add_common(p)

    p = sub.add_parser("bench", help="run the benchmarks (JSON lines with --json)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("names", nargs="*", help="workloads to run (default: all)")
    return parser


def _hp_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_hyperparam_flags(p: argparse.ArgumentParser, cls) -> list[str]:
    """One flag per declared hyper-parameter (values stay strings: HyperParam.validate
    converts and range-checks them, with its own message)."""
    taken = set(p._option_string_actions)
    names = []
    for h in cls.all_hyperparams():
        flag = _hp_flag(h.name)
        if flag in taken:
            continue  # clashes with a CLI flag; still reachable as --hp name=value
        if h.kind == "bool":
            p.add_argument(flag, dest=f"hp__{h.name}", nargs="?", const="true", default=None,
                           metavar="true|false", help=h.help.replace("%", "%%"))
        else:
            allowed = (f"one of {', '.join(map(str, h.choices))}" if h.kind == "choice"
                       else f"{h.kind} in [{h.low}, {h.high}]")
            p.add_argument(flag, dest=f"hp__{h.name}", default=None, metavar="VALUE",
                           help=f"{h.help.replace('%', '%%')} ({allowed}; default {h.default})")
        names.append(h.name)
    return names


def _algorithm_in(argv: list[str]) -> str | None:
    """The value of ``--algorithm`` in a ``train`` command line, if any."""
    for i, tok in enumerate(argv):
        if tok == "--algorithm" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith("--algorithm="):
            return tok.split("=", 1)[1]
    return None


def parse_args(argv: list[str]):
    """Two-stage parse: the train sub-command learns its hyper-parameter flags from
    ``--algorithm`` first (so ``train --algorithm maml --help`` lists them too)."""
    parser = build_parser()
    algorithm = _algorithm_in(argv)
    if not argv or argv[0] != "train" or algorithm is None:
        return parser.parse_args(argv)
    from .learners import get_learner_class
    cls = get_learner_class(algorithm)
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    _add_hyperparam_flags(train_parser, cls)
    try:
        return parser.parse_args(argv)
    except MetaRepError as err:
        if "unrecognized arguments" in str(err):
            allowed = ", ".join(_hp_flag(h.name) for h in cls.all_hyperparams())
            raise MetaRepError(f"{str(err).split(' (see ')[0]}; {cls.name}'s hyper-parameter "
                               f"flags are: {allowed}") from None
        raise


def hyperparams_of(args, cls) -> dict:
    hp = {}
    for item in args.hp:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MetaRepError(f"--hp takes NAME=VALUE, got {item!r}")
        hp[name.strip().replace("-", "_")] = value.strip()
    for key, value in vars(args).items():
        if key.startswith("hp__") and value is not None:
            hp[key[4:]] = value
    cls.validate_hyperparams(hp)  # fail before loading data
    return hp


def check_seed(name: str, value) -> int:
    return check_positive_int(name, value, low=0, high=MAX_SEED)


def check_out(out: str) -> Path:
    """The checkpoint path to write: a new or regular file in an existing folder."""
    path = Path(out)
    if path.is_dir():
        raise MetaRepError(f"--out {out!r} is a directory; name the checkpoint file to write "
                           f"(e.g. {str(path / 'model.safetensors')!r})")
    if path.exists() and not path.is_file():
        raise MetaRepError(f"--out {out!r} exists and is not a regular file (a FIFO or device); "
                           "name a .safetensors file to write")
    if not path.parent.is_dir():
        raise MetaRepError(f"--out {out!r}: folder {str(path.parent)!r} does not exist")
    return path


def check_train_args(args, cls) -> dict:
    """Every train flag checked once, here, before any data is loaded: returns the
    validated hyper-parameters."""
    hp = hyperparams_of(args, cls)
    for name in ("k_shot", "n_query", "steps"):
        check_positive_int(name, getattr(args, name))
    if args.n_way is not None:
        check_positive_int("n_way", args.n_way)
    check_positive_int("val_every", args.val_every, low=0)
    check_positive_int("val_episodes", args.val_episodes)
    check_positive_int("eval_episodes", args.eval_episodes, low=0)
    check_positive_int("eval_n_query", args.eval_n_query)
    check_seed("seed", args.seed)
    check_seed("data_seed", args.data_seed)
    args.out_path = check_out(args.out)
    return hp


def check_evaluate_args(args) -> None:
    """The evaluate flags that need no checkpoint, checked before it is read."""
    check_positive_int("episodes", args.episodes)
    check_positive_int("n_query", args.n_query)
    check_seed("seed", args.seed)
    if args.data_seed is not None:
        check_seed("data_seed", args.data_seed)
