"""Running the heavy work (training, long evaluations) on a Ray cluster (issue 14).

Public API (stable: the app, the CLI and the Compare/evaluation code build on it):

:mod:`metarep_core.cluster.connect`
    ``ENV_VAR`` (``"METAREP_RAY_ADDRESS"``), ``ClusterUnavailable`` (a MetaRepError),
    ``ray_address(environ=None) -> str | None``, ``parse_address(address) -> (scheme, host,
    port)``, ``check_reachable(address, timeout_s=CONNECT_TIMEOUT_S)``,
    ``connect(address=None, timeout_s=CONNECT_TIMEOUT_S) -> str`` (the address connected
    to), ``connected_address() -> str | None``, ``describe_error(exc) -> str``.
:mod:`metarep_core.cluster.runner`
    ``TrainingRunner`` (the Ray actor's class), ``RemoteTraining(learner, dataset,
    trainer_args, *, device="cpu", meta=None, num_cpus=1)`` (the driver's handle:
    ``drive(callback=None, stop_event=None, poll_s=0.5, on_start=None) -> dict``, or
    step by step ``start()``, ``ready(timeout)``, ``poll() -> list[dict]``,
    ``finished()``, ``stop()``, ``close()``, ``pid()``; attributes ``best`` (checkpoint
    bytes of the best weights fetched so far), ``best_step``, ``checkpoint`` (what was
    sent)), ``WorkerLost`` (RuntimeError, readable message), ``dataset_payload(dataset)``
    / ``dataset_from_payload(payload)`` (a dataset made portable to a node: built-ins by
    name, others as a compact copy), ``train_result(dict) -> TrainResult``.
    Import it as ``metarep_core.cluster.runner`` (it is not re-exported here, so
    ``import metarep_core.cluster`` stays light).

Ray itself is imported only when a cluster is used: a server without one never pays
for the import.
"""
from .connect import (CONNECT_TIMEOUT_S, ENV_VAR, ClusterUnavailable, check_reachable, connect,
                      connected_address, describe_error, parse_address, ray_address)

__all__ = ["CONNECT_TIMEOUT_S", "ENV_VAR", "ClusterUnavailable", "check_reachable", "connect",
           "connected_address", "describe_error", "parse_address", "ray_address"]
