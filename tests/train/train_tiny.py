"""A tiny kzoo training run, as a separate process: used by the strategy, resume and multi-worker tests.

    KERAS_BACKEND=tensorflow|jax python -m tests.train.train_tiny OUTPUT_DIR [--strategy S] [--logical-cpus N] ...

Trains a dropout-enabled tiny GPT on a generated corpus with `kzoo.train.Trainer`, then
writes the final trainable weights to `OUTPUT_DIR/weights-<task>.npz` (the task index
of a multi-worker or multi-host job, else 0). Logical CPUs (TensorFlow) and host devices
(JAX's XLA_FLAGS) must be configured before the backend starts, which is why this runs as
its own process; so must a multi-host JAX job (`--coordinator-address`).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--clip-norm", type=float, default=0.5)
    parser.add_argument("--log-every", type=int, default=1, help="also the steps per train-function call")
    parser.add_argument("--fused-loss", action="store_true", help="GPTCausalLM(fused_loss=True)")
    parser.add_argument("--decay", default="linear", help="constant: a shorter run is a prefix of a longer one")
    parser.add_argument("--model-parallel-size", type=int, default=0, help="JAX model_parallel")
    parser.add_argument("--coordinator-address", default="", help="JAX multi-host: host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=0)
    parser.add_argument("--process-id", type=int, default=-1)
    args = parser.parse_args()

    jax = os.environ.get("KERAS_BACKEND") == "jax"
    if jax and args.logical_cpus > 1:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.logical_cpus}"
    import tensorflow as tf

    if args.logical_cpus > 1 and not jax:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    tf.config.experimental.enable_op_determinism()
    import keras
    import numpy as np

    from kzoo import data, models
    from kzoo.train import TrainConfig, Trainer, build_optimizer
    from kzoo.train.checkpoint import to_numpy
    from kzoo.train.strategy import describe, resolve, task_index
    from tests.data.helpers import EOS, WhitespaceTokenizer, corpus

    devices = ",".join(f"/cpu:{i}" for i in range(args.logical_cpus)) if args.strategy == "mirrored" else ""
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=3e-3, warmup_steps=2,
                         decay=args.decay, log_every=args.log_every, eval_every=1000, checkpoint_every=args.checkpoint_every,
                         clip_norm=args.clip_norm, strategy=args.strategy, devices=devices,
                         model_parallel_size=args.model_parallel_size, coordinator_address=args.coordinator_address,
                         num_processes=args.num_processes, process_id=args.process_id,
                         output_dir=args.output_dir, verbose=0)
    strategy = resolve(config)  # first: a multi-host JAX job joins before JAX touches a device
    keras.utils.set_random_seed(0)
    texts = [" ".join(document) for document in corpus(num_documents=40)]
    dataset = data.causal_lm_dataset(texts, WhitespaceTokenizer(), sequence_length=16, eos_id=EOS,
                                     batch_size=config.batch_size, shuffle=True, seed=0)
    with strategy.scope():
        model = models.GPTCausalLM(models.from_preset("gpt_test", dropout=args.dropout), fused_loss=args.fused_loss,
                                   loss_chunk_size=48)
        model.compile(optimizer=build_optimizer(config, model.trainable_variables))
    result = Trainer(model, config, strategy, dataset).fit()
    task = task_index(strategy)
    weights = {f"w{i}": to_numpy(v.value) for i, v in enumerate(model.trainable_variables)}
    np.savez(os.path.join(args.output_dir, f"weights-{task}.npz"), **weights)
    result = {key: value for key, value in result.items() if key != "eval"}
    result["strategy"] = describe(strategy)
    if jax:  # how each variable is laid out over the devices
        result["shardings"] = {v.path: [list(part) if isinstance(part, tuple) else part
                                        for part in getattr(v.value.sharding, "spec", ())] for v in model.variables}
    with open(os.path.join(args.output_dir, f"result-{task}.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()
