"""Choosing a `tf.distribute.Strategy` by name (under JAX: `kzoo.train.jax_distribution`).

`resolve(config)` picks by the Keras backend: the TensorFlow strategies below, or a
`JaxDistribution`; a strategy name or flag of the other backend is refused with the valid
choices named.

- `auto`: the `--train.devices` given, if any (`one_device` for one, `mirrored` for
  several); else TPU if a TPU is named (`--train.tpu`, `TPU_NAME`) or attached;
  multi-worker if `TF_CONFIG` lists several tasks; mirrored if more than one GPU; else
  `default`.
- `default`: TensorFlow's default strategy: no distribution, the first GPU if any.
- `one_device`: `OneDeviceStrategy` on `--train.devices` (default GPU 0, else the CPU).
- `mirrored`: synchronous data parallelism on the local GPUs (or `--train.devices`,
  e.g. two logical CPUs in tests).
- `multi_worker`: `MultiWorkerMirroredStrategy` across the workers in `TF_CONFIG`.
- `tpu`: `TPUStrategy` on the TPU the resolver finds.

A device named in `--train.devices` must exist on this machine (a missing GPU is an
error, never a silent fall-back to the CPU). Nothing here contacts a network unless a
TPU or `TF_CONFIG` asks for it.
"""

import dataclasses
import json
import os
import re

import keras
import tensorflow as tf

from kzoo.train import jax_distribution
from kzoo.train.config import ConfigError
from kzoo.train.jax_distribution import JaxDistribution


def _devices(spec):
    """The devices listed in `spec`; raises `ConfigError` for one this machine does not have."""
    chosen = [device.strip() for device in spec.split(",") if device.strip()]
    for device in chosen:
        try:
            parsed = tf.DeviceSpec.from_string(device)
        except ValueError:
            raise ConfigError(f"train.devices: {device!r} is not a device name; write e.g. /gpu:0.") from None
        kind = (parsed.device_type or "").upper()
        available = tf.config.list_logical_devices(kind) if kind else []
        if parsed.device_index is None or parsed.device_index >= len(available):
            have = ", ".join(d.name for d in tf.config.list_logical_devices()) or "none"
            raise ConfigError(f"train.devices: there is no device {device!r} on this machine (it has: {have}); "
                              "name one of those, or leave --train.devices empty.")
    return chosen


def _tf_config_tasks():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON; see the tf.distribute multi-worker guide.") from None
    return sum(len(addresses) for name, addresses in cluster.items() if name in ("chief", "worker"))


def _tpu_requested(tpu):
    return bool(tpu or os.environ.get("TPU_NAME") or tf.config.list_logical_devices("TPU"))


# TrainConfig fields only JAX reads.
_JAX_ONLY_FIELDS = ("model_parallel_size", "coordinator_address", "num_processes", "process_id")


def resolve(config):
    """The strategy (TensorFlow) or `JaxDistribution` (JAX) that `config` (a `TrainConfig`) names."""
    if keras.backend.backend() == "jax":
        return jax_distribution.resolve(config.strategy, config.devices, config.tpu, config.model_parallel_size,
                                        config.coordinator_address, config.num_processes, config.process_id)
    if config.strategy in ("data_parallel", "model_parallel"):
        raise ConfigError(f"train.strategy {config.strategy!r} is a JAX strategy; under KERAS_BACKEND=tensorflow "
                          "choose one of auto, default, one_device, mirrored, multi_worker, tpu (or rerun with "
                          "KERAS_BACKEND=jax).")
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    for name in _JAX_ONLY_FIELDS:
        if getattr(config, name) != defaults[name]:
            raise ConfigError(f"train.{name} is used under KERAS_BACKEND=jax only (TensorFlow's multi-worker jobs "
                              "read TF_CONFIG); remove it or rerun with KERAS_BACKEND=jax.")
    return resolve_strategy(config.strategy, config.devices, config.tpu)


def resolve_strategy(name="auto", devices="", tpu=""):
    """Returns the `tf.distribute.Strategy` called `name` (see the module docstring)."""
    if name == "auto":
        if _devices(devices):
            name = "one_device" if len(_devices(devices)) == 1 else "mirrored"
        elif _tpu_requested(tpu):
            name = "tpu"
        elif _tf_config_tasks() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        if len([device for device in devices.split(",") if device.strip()]) > 1:
            raise ConfigError(f"one_device takes exactly one device, got --train.devices={devices!r}.")
        chosen = _devices(devices) or ["/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"]
        return tf.distribute.OneDeviceStrategy(chosen[0])
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(_devices(devices) or None)
    if name == "multi_worker":
        if _tf_config_tasks() < 1:
            raise ConfigError("strategy multi_worker needs TF_CONFIG (cluster and task) in the environment of "
                              "every worker; see the tf.distribute multi-worker guide.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ConfigError(f"no TPU could be reached ({error}); pass --train.tpu=NAME_OR_ADDRESS on a TPU "
                              "host or choose another --train.strategy.") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"unknown strategy {name!r}; choose auto, default, one_device, mirrored, multi_worker or tpu.")


class WorkerLost(RuntimeError):
    """A peer of a multi-worker job died; the message says which (when TensorFlow names it) and how to resume."""


# What a surviving worker's collective ops raise when a peer dies: Unavailable ("Collective ops is aborted by:
# Socket closed", or the health check's "cluster check alive failed, /job:worker/replica:0/task:1 is down"),
# DeadlineExceeded or Cancelled while waiting for it, FailedPrecondition when it restarted, Aborted.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                  tf.errors.AbortedError, tf.errors.FailedPreconditionError)
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_NODE_PREFIX = re.compile(r"^\{\{[^}]*\}\}\s*")


def lost_peer(error, own_task):
    """`(who, reason)` when `error` is a collective op's failure caused by a lost peer, else None.

    Args:
        error: the exception a surviving worker's training step raised.
        own_task: `(task type, task index)` of this worker; the first other task the message names is the lost
            one (`who` is e.g. "worker 1 (/job:worker/replica:0/task:1)", or "a peer worker" when TensorFlow
            does not name it). `reason` is the first line of TensorFlow's message.
    """
    if not isinstance(error, _PEER_FAILURES):
        return None
    message = str(getattr(error, "message", None) or error)
    reason = _NODE_PREFIX.sub("", message).strip().splitlines()[0] if message.strip() else type(error).__name__
    for job, task in _TASK.findall(message):
        if (job, int(task)) != (own_task[0], int(own_task[1] or 0)):
            return f"{job} {task} (/job:{job}/replica:0/task:{task})", reason
    return "a peer worker", reason


def worker_count(strategy):
    """Number of workers (chief included) of a multi-worker strategy; 1 for any other strategy."""
    if isinstance(strategy, JaxDistribution):
        return strategy.process_count
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(name, [])) for name in ("chief", "worker")) or 1


def is_chief(strategy):
    """True on the worker that writes checkpoints and logs (the only one without multi-worker)."""
    if isinstance(strategy, JaxDistribution):  # process 0
        return strategy.is_chief
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and "chief" not in
                                            resolver.cluster_spec().as_dict())


def task_index(strategy):
    """This worker's index in a multi-worker (TF) or multi-host (JAX) job; 0 otherwise."""
    if isinstance(strategy, JaxDistribution):
        return strategy.process_index
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", 0) or 0


def describe(strategy):
    """A short description for logs: class name, replicas, devices."""
    if isinstance(strategy, JaxDistribution):
        return strategy.describe()
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ["default device"]
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) on {', '.join(devices)}"
