"""Choosing how a JAX training run is spread over devices and hosts (`--train.strategy` under JAX).

- `auto`: `data_parallel` over every device when there are several (all hosts' devices in a
  multi-host job), else `one_device`.
- `one_device`: no distribution; the first accelerator (or `--train.devices`, e.g. `/gpu:1`).
- `data_parallel`: `keras.distribution.DataParallel`: weights replicated, each global batch
  split over the devices along its first axis; XLA sums the gradients, so one step computes
  the same update as on one device.
- `model_parallel`: `keras.distribution.ModelParallel` on a `("batch", "model")` mesh whose
  model axis has `--train.model_parallel_size` devices (0: all of them); the backbones'
  `layout_map` shards the attention, feed-forward and embedding kernels over that axis, so a
  model too big for one device's memory fits, and the batch is split over the other axis.
  One host's devices only, for now: process 0 alone saves, and a weight split across hosts
  would have to be gathered by every process.

Several hosts (one process each) join through `jax.distributed`: `--train.coordinator_address`
(host:port of process 0), `--train.num_processes` and `--train.process_id`, or Keras' variables
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID`. It must happen before JAX touches a device, so `resolve`
is the first thing a run does. Process 0 writes the checkpoints and logs.

TensorFlow's strategy names (`default`, `mirrored`, `multi_worker`, `tpu`) are refused here
with the JAX choices named, as the JAX names are under TensorFlow (`kzoo.train.strategy`).
"""

import contextlib
import os

import keras

from kzoo.train.config import ConfigError

JAX_STRATEGIES = ("auto", "one_device", "data_parallel", "model_parallel")
_ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


class JaxDistribution:
    """How a JAX run is placed: the strategy's name, the Keras distribution (None for one device), the devices.

    Attributes:
        name: "one_device", "data_parallel" or "model_parallel".
        distribution: the `keras.distribution.Distribution`, or None.
        devices: the `jax.Device`s the run uses (every host's, in a multi-host job).
        num_replicas_in_sync: how many ways each global batch is split (1 on one device).
    """

    def __init__(self, name, distribution, devices, batch_shards):
        self.name = name
        self.distribution = distribution
        self.devices = list(devices)
        self.num_replicas_in_sync = batch_shards

    def scope(self):
        """Variables created inside get the distribution's layouts (replicated, or sharded per the layout map)."""
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()

    @property
    def is_chief(self):
        return self.process_index == 0

    @property
    def process_index(self):
        import jax

        return jax.process_index()

    @property
    def process_count(self):
        import jax

        return jax.process_count()

    def describe(self):
        import jax

        hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
        kinds = sorted({device.platform.upper() for device in self.devices})
        return (f"JAX {self.name} on {len(self.devices)} {'/'.join(kinds)} device(s){hosts}, batch split "
                f"{self.num_replicas_in_sync} way(s)")


def joins_hosts(coordinator_address=""):
    """True when a coordinator is named (the flag, or KERAS_DISTRIBUTION_JOB_ADDRESSES): the run is one process of
    a multi-host job, whose processes share the output folder."""
    return bool(coordinator_address or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"))


def initialize_hosts(coordinator_address="", num_processes=0, process_id=-1):
    """Joins a multi-host job through `jax.distributed` when flags or Keras' variables ask for one; else nothing.

    Returns True when this process is part of a multi-host job."""
    environment = {name: os.environ.get(name, "") for name in _ENVIRONMENT}
    if not joins_hosts(coordinator_address):
        if num_processes > 1 or process_id >= 0:
            raise ConfigError("train.num_processes / train.process_id need train.coordinator_address (host:port of "
                              "process 0), or KERAS_DISTRIBUTION_JOB_ADDRESSES in the environment.")
        return False
    addresses = coordinator_address or environment["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    count = num_processes or _integer_variable("KERAS_DISTRIBUTION_NUM_PROCESSES", environment)
    index = process_id if process_id >= 0 else _integer_variable("KERAS_DISTRIBUTION_PROCESS_ID", environment,
                                                                 missing=-1)
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"a multi-host JAX job needs its process count and this process's id in [0, count): got "
                          f"num_processes={count or 'unset'}, process_id={index if index >= 0 else 'unset'}; pass "
                          "--train.num_processes and --train.process_id (or KERAS_DISTRIBUTION_NUM_PROCESSES and "
                          "KERAS_DISTRIBUTION_PROCESS_ID).")
    import jax

    if jax.distributed.is_initialized():
        return True
    try:
        keras.distribution.initialize(addresses, count, index)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(f"could not join the JAX job at {addresses} as process {index} of {count} ({error}); "
                          "check that process 0 runs and the address is reachable.") from None
    return True


def _integer_variable(name, environment, missing=0):
    value = environment[name]
    if not value:
        return missing
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer.") from None


def _chosen_devices(spec):
    """The local `jax.Device`s listed in `spec` (e.g. "/gpu:0,/gpu:1"); raises `ConfigError` for one not here."""
    import jax

    chosen = []
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        kind, _, index = name.lower().rsplit("/", 1)[-1].removeprefix("device:").partition(":")
        try:
            available = jax.local_devices(backend=kind)
        except RuntimeError:
            available = []
        if not index.isdigit() or int(index) >= len(available):
            have = ", ".join(f"/{d.platform}:{d.id}" for d in jax.local_devices()) or "none"
            raise ConfigError(f"train.devices: there is no device {name!r} on this machine (JAX has: {have}); name "
                              "one of those, or leave --train.devices empty.")
        chosen.append(available[int(index)])
    return chosen


def resolve(name="auto", devices="", tpu="", model_parallel_size=0, coordinator_address="", num_processes=0,
            process_id=-1):
    """Returns the `JaxDistribution` called `name` (see the module docstring); joins the hosts first if asked."""
    if name not in JAX_STRATEGIES:
        raise ConfigError(f"train.strategy {name!r} is a TensorFlow strategy; under KERAS_BACKEND=jax choose one of "
                          f"{', '.join(JAX_STRATEGIES)} (or rerun with KERAS_BACKEND=tensorflow).")
    if tpu:
        raise ConfigError("train.tpu names a TPU for TensorFlow's resolver; under JAX a TPU VM's chips are found "
                          "by JAX itself: remove --train.tpu.")
    multi_host = initialize_hosts(coordinator_address, num_processes, process_id)
    import jax

    chosen = _chosen_devices(devices)
    if chosen and multi_host:
        raise ConfigError("train.devices picks devices of this host; a multi-host job uses every device of every "
                          "host: remove --train.devices.")
    every = chosen or jax.devices()
    if name == "auto":
        name = "data_parallel" if len(every) > 1 else "one_device"
    if name == "one_device":
        if len(chosen) > 1 or multi_host:
            raise ConfigError("one_device takes exactly one device of one host; choose data_parallel or "
                              "model_parallel for several.")
        return JaxDistribution("one_device", None, every[:1], 1)
    keras_names = [f"{device.platform}:{device.id}" for device in every]
    if name == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=keras_names)
        return JaxDistribution(name, distribution, every, len(every))
    if multi_host:
        # A weight split over several hosts' devices can only be read back by all processes together, while
        # only process 0 saves checkpoints and model.keras.
        raise ConfigError("model_parallel splits weights over one host's devices in this version; across hosts "
                          "use --train.strategy=data_parallel (or auto).")
    model_size = model_parallel_size or len(every)
    if len(every) % model_size:
        raise ConfigError(f"train.model_parallel_size {model_size} does not divide the {len(every)} devices; choose "
                          f"a divisor of {len(every)}.")
    from kzoo.models.layout import ShapeCheckedModelParallel, layout_map

    mesh = keras.distribution.DeviceMesh((len(every) // model_size, model_size), ["batch", "model"], keras_names)
    distribution = ShapeCheckedModelParallel(layout_map=layout_map(mesh), batch_dim_name="batch")
    return JaxDistribution(name, distribution, every, len(every) // model_size)
