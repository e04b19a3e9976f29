"""Choosing a `tf.distribute.Strategy` by name.

- `auto`: TPU if a TPU is named (`--train.tpu`, `TPU_NAME`) or attached; multi-worker if
  `TF_CONFIG` lists several tasks; mirrored if more than one GPU; else `default`.
- `default`: TensorFlow's default strategy: no distribution, the first GPU if any.
- `one_device`: `OneDeviceStrategy` on `--train.devices` (default GPU 0, else the CPU).
- `mirrored`: synchronous data parallelism on the local GPUs (or `--train.devices`,
  e.g. two logical CPUs in tests).
- `multi_worker`: `MultiWorkerMirroredStrategy` across the workers in `TF_CONFIG`.
- `tpu`: `TPUStrategy` on the TPU the resolver finds.

Nothing here contacts a network unless a TPU or `TF_CONFIG` asks for it.
"""

import json
import os

import tensorflow as tf

from kzoo.train.config import ConfigError


def _devices(spec):
    return [device.strip() for device in spec.split(",") if device.strip()]


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


def resolve_strategy(name="auto", devices="", tpu=""):
    """Returns the `tf.distribute.Strategy` called `name` (see the module docstring)."""
    if name == "auto":
        if _tpu_requested(tpu):
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
        chosen = _devices(devices) or ["/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"]
        if len(chosen) != 1:
            raise ConfigError(f"one_device takes exactly one device, got --train.devices={devices!r}.")
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


def is_chief(strategy):
    """True on the worker that writes checkpoints and logs (the only one without multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and "chief" not in
                                            resolver.cluster_spec().as_dict())


def describe(strategy):
    """A short description for logs: class name, replicas, devices."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ["default device"]
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) on {', '.join(devices)}"
