"""``python -m metarep_core``: datasets, algorithms, train, evaluate, bench.

Every user mistake ends the same way: ONE line on stderr that names the value and
what is allowed, exit status 2, no traceback (argparse's own errors included). The
arguments are parsed and checked in :mod:`.cli_args`; this module runs the commands.
"""
from __future__ import annotations

import json
import shlex
import signal
import sys
import threading

from .cli_args import PROG, check_evaluate_args, check_seed, check_train_args, parse_args
from .errors import MetaRepError, check_positive_int


# ----------------------------------------------------------------------------- commands
def cmd_datasets(args, out) -> None:
    from .data import DATASETS
    if args.json:
        print(json.dumps(DATASETS), file=out)
        return
    width = max(map(len, DATASETS))
    for name, text in DATASETS.items():
        print(f"{name:<{width}}  {text}", file=out)


def cmd_algorithms(args, out) -> None:
    from .learners import available, get_learner_class
    metas = [get_learner_class(n).metadata() for n in available()]
    if args.json:
        print(json.dumps(metas), file=out)
        return
    width = max(len(m["name"]) for m in metas)
    for m in metas:
        print(f"{m['name']:<{width}}  [{m['family']}] {m['summary']}", file=out)
        print(f"{'':<{width}}  {m['paper']}", file=out)
        hps = ", ".join(f"{h['name']}={h['default']}" for h in m["hyperparams"])
        print(f"{'':<{width}}  hyper-parameters: {hps}", file=out)


def _setup_torch(args, remote: bool = False):
    import torch
    if args.threads is not None:
        torch.set_num_threads(check_positive_int("threads", args.threads, high=256))
    from .training import check_device
    if remote:  # the device is the cluster node's: only its name is checked here
        if str(args.device).split(":")[0] not in ("cpu", "cuda"):
            raise MetaRepError(f"device must be cpu or cuda, got {args.device!r}")
        return str(args.device)
    return check_device(args.device)


def _load_data(spec, *, seed, image_size, channels=1):
    from .data import load_dataset
    return load_dataset(spec, seed=seed, image_size=image_size, channels=channels)


def _is_regression(dataset) -> bool:
    return getattr(dataset, "task", "classification") == "regression"


def _progress(args, cls):
    """(tqdm bar or None, Trainer callback that advances it)."""
    if args.quiet:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=args.steps, desc=f"{cls.name} on {args.dataset}", unit="step",
               file=args.err, mininterval=0.5, dynamic_ncols=True)

    def progress(info):
        post = {"loss": f"{info['loss']:.3f}"}
        if "accuracy" in info:
            post["acc"] = f"{info['accuracy']:.1f}%"
        for key, label in (("val_accuracy", "val"), ("val_mse", "val_mse")):
            if key in info:
                post[label] = f"{info[key]:.4g}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    return bar, progress


def _run_until_interrupted(trainer, bar):
    """``trainer.run()``; Ctrl-C stops it between steps (the best weights still count)."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return trainer.run(stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()


def _cluster_address(args) -> str | None:
    """``--cluster`` (or ``$METAREP_RAY_ADDRESS``), connected to; None to train here.
    An unreachable or malformed address is a user error (one line, exit 2)."""
    from .cluster import connect, ray_address
    address = args.cluster if args.cluster is not None else ray_address()
    if address is None:
        return None
    return connect(address)


def _train_on_cluster(learner, dataset, args, n_way, device, meta, progress, bar):
    """The Trainer run in a Ray actor, its steps fed to the same progress bar; Ctrl-C
    stops it between steps. Returns (the best weights as a learner, a TrainResult)."""
    from .checkpoints import load_checkpoint
    from .cluster.runner import RemoteTraining, WorkerLost, train_result
    trainer_args = {"n_way": n_way, "k_shot": args.k_shot, "n_query": args.n_query,
                    "steps": args.steps, "seed": args.seed, "val_every": args.val_every,
                    "val_episodes": args.val_episodes}
    remote = RemoteTraining(learner, dataset, trainer_args, device=device, meta=meta,
                            num_cpus=args.threads or 1)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        got = remote.drive(progress, stop)
    except WorkerLost as exc:
        kept = ""
        if remote.best is not None:
            from .checkpoints import save_checkpoint
            best, _ = load_checkpoint(remote.best)
            save_checkpoint(best, args.out_path, **meta, n_way=n_way, k_shot=args.k_shot,
                            n_query=args.n_query, seed=args.seed, steps=remote.best_step)
            kept = f"; the best weights so far (step {remote.best_step}) were saved to {args.out_path}"
        raise MetaRepError(f"training on the Ray cluster at {_remote_address()} failed: {exc}{kept}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    result = train_result(got)
    if got.get("checkpoint") is not None:
        learner, _ = load_checkpoint(got["checkpoint"])
        result.best_state = learner.state_dict()
    return learner, result


def _remote_address() -> str:
    from .cluster import connected_address
    return connected_address() or "?"


def _test_metrics(learner, dataset, args, n_way) -> dict:
    """The best weights on ``--eval-episodes`` test episodes: test_accuracy (or
    test_mse), test_ci95, test_episodes, test_n_query."""
    from .evaluation import evaluate
    test = evaluate(learner, dataset, "test", n_way=n_way, k_shot=args.k_shot,
                    n_query=args.eval_n_query, episodes=args.eval_episodes, seed=0)
    key = "mse" if _is_regression(dataset) else "accuracy"
    return {f"test_{key}": test[key], "test_ci95": test["ci95"], "test_episodes": test["episodes"],
            "test_n_query": test["n_query"]}


def _print_train_report(report: dict, result, args, out) -> None:
    if args.json:
        print(json.dumps(report), file=out)
        return
    best = (f"best {result.best_metric} {result.best_value:.4g} at step {result.best_step}"
            if result.best_value is not None else f"{result.steps_done} steps, no validation")
    test = (f", test {report.get('test_accuracy', report.get('test_mse')):.4g} "
            f"± {report['test_ci95']:.2g}" if "test_ci95" in report else "")
    print(f"saved {args.out_path}: {best}{test}", file=out)
    if result.message:
        print(result.message, file=out)


def cmd_train(args, out) -> None:
    import torch
    from .checkpoints import save_checkpoint
    from .learners import get_learner_class
    from .training import Trainer

    cls = get_learner_class(args.algorithm)
    hp = check_train_args(args, cls)
    address = _cluster_address(args)
    device = _setup_torch(args, remote=address is not None)
    dataset = _load_data(args.dataset, seed=args.data_seed, image_size=args.image_size,
                         channels=args.channels)
    n_way = args.n_way if args.n_way is not None else (1 if _is_regression(dataset) else 5)
    torch.manual_seed(args.seed)
    learner = cls(dataset.input_shape, n_way, task=getattr(dataset, "task", "classification"), **hp)
    meta = {"dataset": args.dataset, "dataset_params": dict(getattr(dataset, "params", {}) or {}),
            "data_seed": args.data_seed, "image_size": args.image_size, "channels": args.channels,
            "command": " ".join([PROG] + [shlex.quote(a) for a in args.argv])}
    # The Trainer writes the best weights as they improve; when a test evaluation follows,
    # the checkpoint is written once, after it, with the test figures (not twice).
    evaluate_after = bool(args.eval_episodes)
    bar, progress = _progress(args, cls)
    if address is not None:
        learner, result = _train_on_cluster(learner, dataset, args, n_way, device, meta, progress, bar)
        if not evaluate_after and result.best_state is not None:
            save_checkpoint(learner, args.out_path, **meta, metrics=result.metrics(), n_way=n_way,
                            k_shot=args.k_shot, n_query=args.n_query, seed=args.seed,
                            steps=result.best_step if result.best_step is not None
                            else result.steps_done)
            result.checkpoint_path = str(args.out_path)
    else:
        trainer = Trainer(learner, dataset, n_way=n_way, k_shot=args.k_shot, n_query=args.n_query,
                          steps=args.steps, seed=args.seed, val_every=args.val_every,
                          val_episodes=args.val_episodes, device=device, callback=progress,
                          checkpoint_path=None if evaluate_after else args.out_path,
                          checkpoint_meta=meta)
        result = _run_until_interrupted(trainer, bar)
    report = {"checkpoint": str(args.out_path), "algorithm": cls.name, "dataset": args.dataset,
              "n_way": n_way, "k_shot": args.k_shot, **result.metrics(),
              "stopped_early": result.stopped_early, "nan_detected": result.nan_detected}
    if result.message:
        report["message"] = result.message
    if evaluate_after and result.best_state is not None:
        learner.load_state_dict(result.best_state)  # after a NaN the Trainer keeps the last good
        test = _test_metrics(learner, dataset, args, n_way)
        report.update(test)
        save_checkpoint(learner, args.out_path, **meta, metrics={**result.metrics(), **test},
                        n_way=n_way, k_shot=args.k_shot, n_query=args.n_query, seed=args.seed,
                        steps=result.best_step if result.best_step is not None else result.steps_done)
    _print_train_report(report, result, args, out)
    if result.nan_detected:
        raise MetaRepError(result.message + f" (checkpoint with the best weights: {args.out_path})")


def _dataset_of(meta: dict, checkpoint: str) -> str:
    """The dataset named in a checkpoint's metadata, if it is a built-in one: a
    checkpoint never chooses a path to read from disk (``folder:/dev/zero``)."""
    from .data import DATASETS
    BUILTIN_DATASETS = tuple(name for name in DATASETS if ":" not in name)  # not folder:PATH
    spec = meta.get("dataset")
    if not spec or not isinstance(spec, str):
        raise MetaRepError(f"checkpoint {checkpoint!r} does not name its dataset; pass --dataset")
    if spec not in BUILTIN_DATASETS:
        shown = spec if len(spec) <= 120 else spec[:120] + "..."
        raise MetaRepError(f"checkpoint {checkpoint!r} was made on dataset {shown!r}; a checkpoint's "
                           "metadata never chooses a path to read, so pass --dataset (one of "
                           f"{', '.join(BUILTIN_DATASETS)} or folder:PATH)")
    return spec


def cmd_evaluate(args, out) -> None:
    from .checkpoints import load_checkpoint
    from .evaluation import evaluate

    check_evaluate_args(args)
    address = _cluster_address(args)  # --cluster, else $METAREP_RAY_ADDRESS; None: here
    device = _setup_torch(args, remote=address is not None)
    learner, meta = load_checkpoint(args.checkpoint, map_location="cpu" if address else device)
    spec = args.dataset or _dataset_of(meta, args.checkpoint)
    # The input shape is within the checkpoint bounds (load_checkpoint checked it).
    shape = tuple(learner.input_shape)
    image_size = args.image_size
    if image_size is None and len(shape) == 3:
        image_size = shape[-1]
    channels = shape[0] if len(shape) == 3 else 1
    data_seed = args.data_seed if args.data_seed is not None else (
        check_seed("the checkpoint's data_seed", meta.get("data_seed", 0))
        if spec == meta.get("dataset") else 0)
    dataset = _load_data(spec, seed=data_seed, image_size=image_size, channels=channels)
    if tuple(dataset.input_shape) != shape:
        raise MetaRepError(f"dataset {spec!r} gives inputs of shape {tuple(dataset.input_shape)} but "
                           f"the checkpoint's {meta['algorithm']} expects {shape}"
                           + (f"; pass --image-size {shape[-1]}" if len(shape) == 3 else ""))
    n_way = check_positive_int("n_way", args.n_way if args.n_way is not None
                               else meta.get("n_way", learner.n_way))
    k_shot = check_positive_int("k_shot", args.k_shot if args.k_shot is not None
                                else meta.get("k_shot", 1))
    if address is not None:
        from .cluster.evaluate import evaluate_on_cluster
        print(f"evaluating on the Ray cluster at {address} (one Ray task)", file=args.err)
        result = evaluate_on_cluster(learner, dataset, args.split, n_way=n_way, k_shot=k_shot,
                                     n_query=args.n_query, episodes=args.episodes, seed=args.seed,
                                     address=address, device=str(device))
    else:
        from tqdm import tqdm
        bar = tqdm(total=args.episodes, desc="evaluate", unit="episode", file=args.err,
                   disable=None, mininterval=0.5)
        try:
            result = evaluate(learner, dataset, args.split, n_way=n_way, k_shot=k_shot,
                              n_query=args.n_query, episodes=args.episodes, seed=args.seed,
                              callback=lambda done, total: bar.update(1))
        finally:
            bar.close()
    result.update(algorithm=meta["algorithm"], dataset=spec, checkpoint=str(args.checkpoint))
    if args.json:
        print(json.dumps(result), file=out)
    elif "accuracy" in result:
        print(f"{meta['algorithm']} on {spec} ({args.split}), {n_way}-way {k_shot}-shot: accuracy "
              f"{result['accuracy']:.2f}% ± {result['ci95']:.2f} ({result['episodes']} episodes)", file=out)
    else:
        print(f"{meta['algorithm']} on {spec} ({args.split}), {k_shot}-shot: MSE "
              f"{result['mse']:.4g} ± {result['ci95']:.2g} ({result['episodes']} episodes)", file=out)


def cmd_bench(args, out) -> None:
    try:
        from .bench import run
    except ImportError as err:
        raise MetaRepError(f"the benchmarks are not available in this installation ({err})") from None
    run(args.names or None, out=out, as_json=args.json)


COMMANDS = {"datasets": cmd_datasets, "algorithms": cmd_algorithms, "train": cmd_train,
            "evaluate": cmd_evaluate, "bench": cmd_bench}


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    """Run the CLI; returns the exit status (0, or 2 for a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parse_args(argv)
        args.argv = argv  # recorded in the checkpoint: the command that made it
        args.err = err    # where progress bars go
        COMMANDS[args.command](args, out)
    except MetaRepError as e:
        message = " ".join(str(e).split())  # one line, whatever the message held
        print(f"error: {message}", file=err)
        return 2
    except BrokenPipeError:  # `... | head`
        return 0
    return 0
