"""The training loop under both backends: strategies agree, resume is exact, divergence is caught, TensorBoard
gets its data.

The strategy, resume and multi-worker checks run `tests/train/train_tiny.py` in separate
processes under the backend of this test session (logical CPUs, JAX's host devices and
TF_CONFIG must be set before the backend starts; the lost-worker test must kill a real process). Killed runs that
resume: tests/train/test_kill_test.py.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.train import TrainConfig, Trainer, TrainingDiverged, build_optimizer, resolve_strategy
from kzoo.train.strategy import resolve

tensorflow_only = pytest.mark.backend("tensorflow", reason="tf.distribute's strategies and their errors")
jax_only = pytest.mark.backend("jax", reason="keras.distribution and JAX processes; TensorFlow runs "
                                              "tf.distribute's counterparts")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(output_dir, *args, env=None, backend=None):
    command = [sys.executable, "-m", "tests.train.train_tiny", str(output_dir), *args]
    environment = {**os.environ, "KERAS_BACKEND": backend or keras.backend.backend(), "PYTHONPATH": ROOT,
                   **(env or {})}
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _run(output_dir, *args, env=None, backend=None):
    process = _start(output_dir, *args, env=env, backend=backend)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def _weights(output_dir, task=0):
    with np.load(os.path.join(output_dir, f"weights-{task}.npz")) as state:
        return [state[f"w{i}"] for i in range(len(state.files))]


def _train_losses(output_dir):
    with open(os.path.join(output_dir, "history.jsonl")) as file:
        records = [json.loads(line) for line in file]
    return {record["step"]: record["train"]["loss"] for record in records if "train" in record}


def _assert_same_training(reference, other, rtol):
    """`other`'s run logged the losses of `reference`'s at every step (within rtol) and ended with its weights."""
    expected, losses = _train_losses(reference), _train_losses(other)
    assert sorted(losses) == sorted(expected)
    np.testing.assert_allclose([losses[s] for s in sorted(expected)], [expected[s] for s in sorted(expected)],
                               rtol=rtol)
    for a, b in zip(_weights(reference), _weights(other), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@tensorflow_only
@pytest.mark.slow
def test_mirrored_on_two_devices_matches_one_device_plain_and_with_the_fused_loss_in_four_step_calls(tmp_path):
    """MirroredStrategy follows the one-device run. Then with the fused loss (which divides by the replicas as
    Keras' losses do) and the multi-step graph loop: per-call losses and final weights still follow the plain
    one-step-per-call run."""
    common = ["--logical-cpus=2", "--dropout=0", "--steps=8"]
    _run(tmp_path / "one", "--strategy=default", *common)
    _run(tmp_path / "two", "--strategy=mirrored", *common)
    assert sorted(_train_losses(tmp_path / "one")) == list(range(1, 9))
    _assert_same_training(tmp_path / "one", tmp_path / "two", rtol=2e-6)

    _run(tmp_path / "fused", "--strategy=mirrored", "--fused-loss", "--log-every=4", *common)
    one, fused = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "fused")
    assert sorted(fused) == [4, 8]  # logged per 4-step call: the mean of the call's losses
    for step in (4, 8):
        np.testing.assert_allclose(fused[step], np.mean([one[s] for s in range(step - 3, step + 1)]), rtol=2e-5)
    for a, b in zip(_weights(tmp_path / "one"), _weights(tmp_path / "fused"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


# A SIGKILLed run resuming exactly (bit-identical to the uninterrupted run): tests/train/test_kill_test.py, under
# both backends, kills a train_tiny run at a step and during a checkpoint write (tools/kill_test.py).


def _result(output_dir, task=0):
    with open(os.path.join(output_dir, f"result-{task}.json")) as file:
        return json.load(file)


@jax_only
@pytest.mark.slow
def test_data_and_model_parallel_on_two_devices_match_one_device(tmp_path):
    common = ["--logical-cpus=2", "--dropout=0", "--steps=8"]
    _run(tmp_path / "one", "--strategy=one_device", *common)
    _run(tmp_path / "data", "--strategy=data_parallel", *common)
    _run(tmp_path / "model", "--strategy=model_parallel", *common)
    assert sorted(_train_losses(tmp_path / "one")) == list(range(1, 9))
    for run in ("data", "model"):
        _assert_same_training(tmp_path / "one", tmp_path / run, rtol=1e-5)
    assert "data_parallel on 2 CPU device(s), batch split 2 way(s)" in _result(tmp_path / "data")["strategy"]
    assert set(map(str, _result(tmp_path / "data")["shardings"].values())) <= {"[]", "[None]", "[None, None]",
                                                                                  "[None, None, None]"}
    shardings = _result(tmp_path / "model")["shardings"]  # the weights really are split over the 2 devices
    assert shardings["decoder_block_0/self_attention/query/kernel"] == [None, "model", None]
    assert shardings["decoder_block_0/feed_forward/down/kernel"] == ["model", None]
    assert shardings["token_embedding/embeddings"] == [None, "model"]


@jax_only
@pytest.mark.slow
def test_two_jax_processes_train_alike_and_only_process_0_writes(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    common = ["--dropout=0", "--steps=6", "--checkpoint-every=3"]
    processes = [  # process 0 joins through the flags, process 1 through Keras' environment variables
        _start(tmp_path, *common, f"--coordinator-address={address}", "--num-processes=2", "--process-id=0"),
        _start(tmp_path, *common, env={"KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                                       "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}),
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    for a, b in zip(_weights(tmp_path, 0), _weights(tmp_path, 1), strict=True):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "history.jsonl") as file:
        steps = [json.loads(line)["step"] for line in file if '"train"' in line]
    assert steps == list(range(1, 7))  # each step logged once: by process 0 alone
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step-000000003", "step-000000006"]
    assert "on 2 hosts" in _result(tmp_path, 0)["strategy"]


@jax_only
@pytest.mark.slow
def test_a_run_resumes_under_the_other_backend_on_the_same_loss_curve(tmp_path):
    """TF checkpoint -> JAX resume and JAX -> TF: the resumed steps follow the uninterrupted run of the backend that
    started (dropout 0)."""
    common = ["--dropout=0", "--checkpoint-every=4", "--steps=8"]
    for first, second in (("tensorflow", "jax"), ("jax", "tensorflow")):
        straight = tmp_path / f"{first}-straight"
        _run(straight, *common, backend=first)
        # A run of `first` stopped after its step-4 checkpoint: the straight run's folder without the step-8 one
        # (the resume drops the history past step 4).
        switched = tmp_path / f"{first}-then-{second}"
        shutil.copytree(straight, switched)
        shutil.rmtree(switched / "checkpoints" / "step-000000008")
        _run(switched, *common, backend=second)
        result = _result(switched)
        assert (result["resumed_from"], result["steps_this_run"]) == (4, 4)
        expected, resumed = _train_losses(straight), _train_losses(switched)
        assert sorted(resumed) == list(range(1, 9))
        np.testing.assert_allclose([resumed[s] for s in range(5, 9)], [expected[s] for s in range(5, 9)], rtol=1e-5)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_workers(tmp_path, *arguments, count=2):
    """Starts `count` MultiWorkerMirroredStrategy workers on localhost ports, training into `tmp_path`."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(count)]
    processes = []
    for index in range(count):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_start(tmp_path, "--strategy=multi_worker", "--dropout=0", *arguments,
                                env={"TF_CONFIG": json.dumps(config)}))
    return processes


@tensorflow_only
@pytest.mark.slow
def test_multi_worker_on_localhost_trains_and_workers_agree(tmp_path):
    processes = _start_workers(tmp_path, "--steps=8")
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    for a, b in zip(_weights(tmp_path, 0), _weights(tmp_path, 1), strict=True):
        np.testing.assert_array_equal(a, b)
    losses = _train_losses(tmp_path)  # written by the chief (worker 0) only
    assert sorted(losses) == list(range(1, 9)) and losses[8] < losses[1]
    assert os.path.isdir(tmp_path / "checkpoints" / "step-000000008")


@tensorflow_only
@pytest.mark.slow
def test_multi_worker_survivor_names_the_lost_worker_and_how_to_resume(tmp_path):
    processes = _start_workers(tmp_path, "--steps=100000", "--checkpoint-every=2")
    history = tmp_path / "history.jsonl"
    deadline = time.time() + 240
    while not (history.exists() and len(history.read_text().splitlines()) > 4) and time.time() < deadline:
        assert all(process.poll() is None for process in processes), processes[0].stdout.read()[-3000:]
        time.sleep(0.1)
    processes[1].send_signal(signal.SIGKILL)
    processes[1].wait()
    output, _ = processes[0].communicate(timeout=240)
    assert processes[0].returncode != 0
    message = output.strip().splitlines()[-1]
    assert message.startswith("kzoo.train.strategy.WorkerLost: lost worker 1 (/job:worker/replica:0/task:1) after "
                              "step "), output[-3000:]
    assert "Rerun all 2 workers with the same command and TF_CONFIG: they resume from the newest checkpoint (step" \
        in message


# --- in-process checks on a tiny regression model ------------------------------------------------


def _regression_data(poison_batch=None, batches=8, batch_size=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batches * batch_size, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    if poison_batch is not None:
        x[poison_batch * batch_size] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def _trainer(tmp_path, precision="float32", poison_batch=None, run_config=None, **overrides):
    keras.mixed_precision.set_dtype_policy(precision)
    settings = dict(steps=8, batch_size=4, learning_rate=1e-2, warmup_steps=0, log_every=1, eval_every=100,
                    checkpoint_every=2, precision=precision, output_dir=str(tmp_path), verbose=0)
    config = TrainConfig(**{**settings, **overrides})
    strategy = resolve(config)
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=build_optimizer(config, model.trainable_variables), loss="mse")
    return Trainer(model, config, strategy, _regression_data(poison_batch), run_config=run_config)


def test_nan_in_float32_stops_and_leaves_the_last_checkpoint_untouched(tmp_path):
    trainer = _trainer(tmp_path, poison_batch=4)  # the fifth step sees a NaN input
    with pytest.raises(TrainingDiverged, match=r"at step 5 is not finite.*last good checkpoint \(step 4\)"):
        trainer.fit()
    assert trainer.checkpoints.steps() == [2, 4]
    meta = json.load(open(os.path.join(trainer.checkpoints.path(4), "meta.json")))
    restored = trainer.checkpoints.restore(4)
    assert restored["sha256"] == meta["sha256"]
    assert all(np.isfinite(keras.ops.convert_to_numpy(v.value)).all() for v in trainer.model.variables)


def test_nan_under_mixed_float16_lowers_the_loss_scale_and_training_goes_on(tmp_path):
    trainer = _trainer(tmp_path, precision="mixed_float16", poison_batch=4)
    scale_before = float(trainer.optimizer.dynamic_scale.numpy())
    result = trainer.fit()
    assert result["steps"] == 8
    assert 5 in result["skipped_steps"]  # the poisoned batch: update skipped, scale halved
    assert float(trainer.optimizer.dynamic_scale.numpy()) < scale_before
    assert all(np.isfinite(keras.ops.convert_to_numpy(v.value)).all() for v in trainer.model.variables)


def test_resume_drops_history_past_the_checkpoint_and_a_torn_last_line(tmp_path):
    _trainer(tmp_path, steps=4).fit()  # checkpoints at steps 2 and 4
    history = tmp_path / "history.jsonl"
    with open(history, "a", encoding="utf-8") as file:  # a run that logged step 5, then died mid-append
        file.write(json.dumps({"step": 5, "train": {"loss": 1.0}}) + "\n" + '{"step": 6, "tra')
    result = _trainer(tmp_path, steps=8).fit()
    assert result["resumed_from"] == 4
    steps = [json.loads(line)["step"] for line in history.read_text(encoding="utf-8").splitlines()
             if "train" in json.loads(line)]
    assert steps == list(range(1, 9))  # step 5 logged once (by the resumed run), the torn line gone
    assert not os.path.exists(f"{history}.partial")


def test_steps_follow_a_numpy_adamw_with_global_norm_clipping(tmp_path):
    """Two steps of a linear model against an independent numpy AdamW: the logged norm is the global gradient's,
    the update uses it clipped to clip_norm, weight decay spares the bias (the same under both backends)."""
    config = TrainConfig(steps=2, batch_size=4, learning_rate=0.1, warmup_steps=0, decay="constant", clip_norm=0.5,
                         weight_decay=0.01, log_every=1, eval_every=100, checkpoint_every=100,
                         output_dir=str(tmp_path), verbose=0)
    strategy = resolve(config)
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=build_optimizer(config, model.trainable_variables), loss="mse")
    kernel, bias = (keras.ops.convert_to_numpy(v.value).astype(np.float64) for v in model.trainable_variables)
    batches = [(x.numpy(), y.numpy()) for x, y in _regression_data()][:2]
    moments = [[np.zeros_like(kernel), np.zeros_like(bias)] for _ in range(2)]
    norms = []
    for step, (x, y) in enumerate(batches, start=1):
        error = x @ kernel + bias - y
        gradients = [2 * x.T @ error / len(x), 2 * error.sum(axis=0) / len(x)]
        norm = np.sqrt(sum(np.sum(g ** 2) for g in gradients))
        norms.append(norm)
        gradients = [g * 0.5 / max(norm, 0.5) for g in gradients]
        kernel = kernel - kernel * 0.01 * 0.1  # decoupled weight decay on the matrix only
        rate = 0.1 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        updated = []
        for index, (value, gradient) in enumerate(zip((kernel, bias), gradients)):
            first, second = moments[0][index], moments[1][index]
            moments[0][index] = first = 0.9 * first + 0.1 * gradient
            moments[1][index] = second = 0.999 * second + 0.001 * gradient ** 2
            updated.append(value - rate * first / (np.sqrt(second) + 1e-6))
        kernel, bias = updated
    Trainer(model, config, strategy, _regression_data()).fit()
    with open(tmp_path / "history.jsonl") as file:
        logged = [json.loads(line)["train"]["gradient_norm"] for line in file if '"train"' in line]
    assert norms[0] > 0.5 and norms[1] > 0.5  # both steps are clipped
    np.testing.assert_allclose(logged, norms, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.trainable_variables[0].value), kernel, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.trainable_variables[1].value), bias, atol=1e-5)


class WithUnusedLayer(keras.Model):
    """A regression model holding a layer its output never uses (like BERT's pooler under a tagging head)."""

    def __init__(self):
        super().__init__()
        self.used = keras.layers.Dense(1)
        self.unused = keras.layers.Dense(2)

    def build(self, input_shape):
        self.used.build(input_shape)
        self.unused.build(input_shape)

    def call(self, x):
        return self.used(x)


def test_a_variable_the_loss_does_not_reach_is_not_updated_or_decayed(tmp_path):
    config = TrainConfig(steps=2, batch_size=4, weight_decay=0.1, log_every=1, eval_every=100, checkpoint_every=100,
                         output_dir=str(tmp_path), verbose=0)
    strategy = resolve(config)
    with strategy.scope():
        model = WithUnusedLayer()
        model.build((None, 3))
        model.compile(optimizer=build_optimizer(config, model.trainable_variables), loss="mse")
    before = [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]
    Trainer(model, config, strategy, _regression_data()).fit()
    after = [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]
    unused = {id(v) for v in model.unused.trainable_variables}
    for variable, old, new in zip(model.trainable_variables, before, after, strict=True):
        assert np.array_equal(old, new) == (id(variable) in unused), variable.path


def test_gradient_accumulation_updates_every_k_steps(tmp_path):
    trainer = _trainer(tmp_path, gradient_accumulation_steps=2, steps=3, checkpoint_every=100)
    trainer.fit()
    assert int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)) == 1  # 3 micro-steps: one update, one pending


def _event_tags(logdir):
    tags = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(os.path.basename(os.path.dirname(path)), set()).add(value.tag)
    return tags


def test_tensorboard_receives_scalars_text_image_and_hparams(tmp_path):
    from kzoo import data, models
    from kzoo.recipes import perplexity
    from kzoo.train.summaries import Summaries
    from tests.data.helpers import EOS, WhitespaceTokenizer, corpus

    texts = [" ".join(document) for document in corpus(num_documents=12)]
    dataset = data.causal_lm_dataset(texts, WhitespaceTokenizer(), sequence_length=8, eos_id=EOS, batch_size=4)
    config = TrainConfig(steps=2, batch_size=4, log_every=1, eval_every=2, eval_steps=2, output_dir=str(tmp_path),
                         verbose=0)
    model = models.GPTCausalLM(models.from_preset("gpt_test"))
    model.compile(optimizer=build_optimizer(config, model.trainable_variables))
    example = next(iter(dataset.unbatch().batch(1)))[0]
    samples = lambda model, results: {"samples": "w1 w2 -> w3"}  # noqa: E731
    trainer = Trainer(model, config, resolve(config), dataset, dataset,
                      evaluators=[perplexity, samples], attention_example=example)
    trainer.summaries.config({"train": {"steps": 2, "precision": "float32"}}, "train:\n  steps: 2\n")
    trainer.fit()
    trainer.summaries.flush()
    tags = _event_tags(str(tmp_path / "logs"))
    assert {"loss", "learning_rate", "gradient_norm", "tokens_per_second", "examples_per_second", "accuracy",
            "config", "_hparams_/session_start_info"} <= tags["train"]
    assert {"loss", "accuracy", "perplexity", "samples", "attention/self_attention_layer_0",
            "attention/self_attention_layer_1"} <= tags["eval"]
    assert isinstance(trainer.summaries, Summaries)


@tensorflow_only  # JAX always compiles the step with XLA
def test_xla_compiled_step_trains(tmp_path):
    trainer = _trainer(tmp_path, xla=True, steps=3, checkpoint_every=100)
    result = trainer.fit()
    assert result["steps"] == 3 and np.isfinite(result["last_loss"])


def test_mixed_bfloat16_trains_with_float32_variables(tmp_path):
    trainer = _trainer(tmp_path, precision="mixed_bfloat16", steps=3, checkpoint_every=100)
    result = trainer.fit()
    assert np.isfinite(result["last_loss"])
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    assert trainer.model.layers[0].compute_dtype == "bfloat16"


@tensorflow_only
def test_strategy_errors_say_what_to_do(monkeypatch):
    from kzoo.train import ConfigError

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="multi_worker needs TF_CONFIG"):
        resolve_strategy("multi_worker")
    with pytest.raises(ConfigError, match="one_device takes exactly one device"):
        resolve_strategy("one_device", devices="/cpu:0,/cpu:1")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        resolve_strategy("auto")
    monkeypatch.delenv("TF_CONFIG")
    assert resolve_strategy("auto").num_replicas_in_sync == 1


@jax_only
def test_jax_strategy_errors_name_the_valid_choices(monkeypatch):
    from kzoo.train import ConfigError

    for name in ("default", "mirrored", "multi_worker", "tpu"):
        with pytest.raises(ConfigError, match=f"'{name}' is a TensorFlow strategy; under KERAS_BACKEND=jax choose "
                                              "one of auto, one_device, data_parallel, model_parallel"):
            resolve(TrainConfig(strategy=name))
    with pytest.raises(ConfigError, match=r"no device '/gpu:3' on this machine \(JAX has: /cpu:0\)"):
        resolve(TrainConfig(devices="/gpu:3"))
    with pytest.raises(ConfigError, match="model_parallel_size 2 does not divide the 1 devices"):
        resolve(TrainConfig(strategy="model_parallel", model_parallel_size=2))
    with pytest.raises(ConfigError, match="train.tpu names a TPU for TensorFlow's resolver"):
        resolve(TrainConfig(tpu="local"))
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    with pytest.raises(ConfigError, match="need train.coordinator_address"):
        resolve(TrainConfig(num_processes=2, process_id=0))
    with pytest.raises(ConfigError, match=r"process_id=unset"):
        resolve(TrainConfig(coordinator_address="127.0.0.1:1234", num_processes=2))
    assert resolve(TrainConfig()).describe() == "JAX one_device on 1 CPU device(s), batch split 1 way(s)"
    from kzoo.train import jax_distribution

    monkeypatch.setattr(jax_distribution, "initialize_hosts", lambda *arguments: True)  # as if in a 2-host job
    with pytest.raises(ConfigError, match="model_parallel splits weights over one host's devices"):
        resolve(TrainConfig(strategy="model_parallel"))


@tensorflow_only
def test_jax_strategies_and_flags_under_tensorflow_name_the_valid_choices():
    from kzoo.train import ConfigError

    for name in ("data_parallel", "model_parallel"):
        with pytest.raises(ConfigError, match=f"'{name}' is a JAX strategy; under KERAS_BACKEND=tensorflow choose "
                                              "one of auto, default, one_device, mirrored, multi_worker, tpu"):
            resolve(TrainConfig(strategy=name))
    with pytest.raises(ConfigError, match="train.coordinator_address is used under KERAS_BACKEND=jax only"):
        resolve(TrainConfig(coordinator_address="127.0.0.1:1234"))


# --- several steps per call of the train function (one host sync per call) ---------------------------


def test_calls_end_at_log_eval_checkpoint_and_profile_boundaries(tmp_path):
    trainer = _trainer(tmp_path, steps=23, log_every=10, eval_every=7, checkpoint_every=100, profile_steps="3,5")
    step, calls = 0, []
    profile = trainer.config.profile_range()
    while step < 23:
        count = trainer._steps_in_next_call(step, profile)
        calls.append(count)
        step += count
    # ends: 2 (profile starts before step 3), 5 (profile stops), 7 (eval), 10 (log), 14, 20, 21, 23 (last)
    assert calls == [2, 3, 2, 3, 4, 6, 1, 2]
    trainer.config.steps_per_execution = 1
    assert trainer._steps_in_next_call(0, None) == 1


def test_several_steps_per_call_train_exactly_as_one_step_per_call(tmp_path):
    results, weights, histories = {}, {}, {}
    for per_call in (1, 0):  # 0: up to the next boundary (here 4 steps per call)
        directory = tmp_path / f"per-call-{per_call}"
        keras.utils.set_random_seed(0)  # the same initial weights
        trainer = _trainer(directory, steps=8, log_every=4, checkpoint_every=4, steps_per_execution=per_call)
        results[per_call] = trainer.fit()
        weights[per_call] = [keras.ops.convert_to_numpy(v.value) for v in trainer.model.trainable_variables]
        with open(directory / "history.jsonl") as file:
            histories[per_call] = [json.loads(line)["train"] for line in file if '"train"' in line]
    assert results[0]["steps"] == results[1]["steps"] == 8
    for a, b in zip(weights[1], weights[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert [h["loss"] for h in histories[0]] == [h["loss"] for h in histories[1]]
    assert [h["gradient_norm"] for h in histories[0]] == [h["gradient_norm"] for h in histories[1]]
    assert [h["learning_rate"] for h in histories[0]] == [h["learning_rate"] for h in histories[1]]


def test_nan_inside_a_several_step_call_names_its_step_and_saves_nothing_after_it(tmp_path):
    # Calls run steps 1-4 and 5-8; the sixth step sees a NaN input, steps 7 and 8 run on NaN weights.
    trainer = _trainer(tmp_path, poison_batch=5, log_every=8, checkpoint_every=4)
    with pytest.raises(TrainingDiverged, match=r"at step 6 is not finite.*last good checkpoint \(step 4\)"):
        trainer.fit()
    assert trainer.checkpoints.steps() == [4]
    trainer.checkpoints.restore(4)
    assert all(np.isfinite(keras.ops.convert_to_numpy(v.value)).all() for v in trainer.model.variables)


@jax_only
@pytest.mark.parametrize("log_every", [1, 3])
def test_the_jax_train_function_compiles_once_per_run(tmp_path, log_every):
    """Calls of 1 and of several steps (8 steps in calls of 3, 3 and 2), metrics reset after every log and an
    evaluation in between all reuse one compiled step."""
    trainer = _trainer(tmp_path, steps=8, log_every=log_every, eval_every=4, checkpoint_every=4)
    trainer.eval_dataset = _regression_data(batches=2)
    trainer.fit()
    assert trainer.backend_steps.train_traces == 1


def test_steps_per_execution_must_not_be_negative():
    from kzoo.train import ConfigError

    with pytest.raises(ConfigError, match="train.steps_per_execution must be >= 0"):
        TrainConfig(steps_per_execution=-1).validate()


# --- the run folder: nothing destroyed before a step succeeds, one clear error per fault ------------


def _history_lines(tmp_path):
    return (tmp_path / "history.jsonl").read_text(encoding="utf-8")


def test_checkpoints_being_a_file_is_an_error_before_training_and_keeps_the_history(tmp_path):
    from kzoo.train import RunFolderError

    old = json.dumps({"step": 1, "train": {"loss": 2.0}}) + "\n"
    (tmp_path / "history.jsonl").write_text(old, encoding="utf-8")
    (tmp_path / "checkpoints").write_text("a file in the way")
    trainer = _trainer(tmp_path)
    with pytest.raises(RunFolderError, match=r"checkpoints is a file, not a checkpoint folder: move it away"):
        trainer.fit()
    assert _history_lines(tmp_path) == old
    assert int(trainer.optimizer.iterations.numpy()) == 0  # not a step was run


@pytest.mark.parametrize("line, number", [("[1, 2]", 2), ('"text"', 2), ('{"train": {}}', 2), ("{torn", 2)])
def test_a_history_line_that_is_not_a_record_is_an_error_naming_it(tmp_path, line, number):
    from kzoo.train import RunFolderError

    text = json.dumps({"step": 1, "train": {"loss": 2.0}}) + "\n" + line + "\n" + json.dumps({"step": 2}) + "\n"
    (tmp_path / "history.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(RunFolderError, match=rf"history.jsonl line {number} is not a history record.*repair or "
                                             "delete that line"):
        _trainer(tmp_path).fit()
    assert _history_lines(tmp_path) == text


def test_history_is_kept_until_this_run_logs_a_step(tmp_path):
    old = "".join(json.dumps({"step": step, "train": {"loss": 1.0}}) + "\n" for step in (1, 2, 3))
    (tmp_path / "history.jsonl").write_text(old, encoding="utf-8")  # a run killed before its first checkpoint
    with pytest.raises(TrainingDiverged):
        _trainer(tmp_path, poison_batch=0).fit()  # diverges at step 1: nothing logged
    assert _history_lines(tmp_path) == old
    _trainer(tmp_path, steps=2).fit()
    assert [json.loads(line)["step"] for line in _history_lines(tmp_path).splitlines()] == [1, 2, 2]


def test_an_output_folder_that_cannot_be_written_is_one_error(tmp_path):
    from kzoo.train import RunFolderError

    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match=r"cannot write to the output folder .*file/run \(.*\): make it a "
                                             "writable folder, or choose another --train.output_dir"):
        _trainer(tmp_path / "file" / "run")
    (tmp_path / "logs").write_text("")
    with pytest.raises(RunFolderError, match=r"logs is a file, not a folder"):
        _trainer(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root, whom permission bits do not stop, so no folder here is read-only "
                           "(test_an_output_folder_that_cannot_be_written_is_one_error covers the same error)")
def test_a_read_only_output_folder_is_one_error(tmp_path):
    from kzoo.train import RunFolderError

    trainer = _trainer(tmp_path, steps=2)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(RunFolderError, match="cannot write to the output folder"):
            trainer.fit()
    finally:
        os.chmod(tmp_path, 0o755)


def test_resume_never_must_and_a_changed_config(tmp_path):
    from kzoo.train import ConfigError

    run = {"data": {"train_files": "a.txt"}}
    with pytest.raises(ConfigError, match="--train.resume=must, but there is no checkpoint"):
        _trainer(tmp_path, resume="must", steps=4).fit()
    _trainer(tmp_path, steps=4, run_config=run).fit()
    with pytest.raises(ConfigError, match="--train.resume=never, but .* already holds checkpoints"):
        _trainer(tmp_path, resume="never", steps=6, run_config=run).fit()
    with pytest.raises(ConfigError, match=r"data.train_files was 'a.txt', now 'b.txt'"):
        _trainer(tmp_path, steps=6, run_config={"data": {"train_files": "b.txt"}}).fit()
    result = _trainer(tmp_path, steps=6, run_config=run, resume="must").fit()  # a longer run resumes
    assert (result["resumed_from"], result["steps"]) == (4, 6)
    meta = json.load(open(os.path.join(tmp_path, "checkpoints", "step-000000006", "meta.json")))
    assert meta["config"] == run


@tensorflow_only
def test_a_device_that_does_not_exist_is_an_error_not_the_cpu():
    from kzoo.train import ConfigError

    with pytest.raises(ConfigError, match=r"train.devices: there is no device '/gpu:7' on this machine"):
        resolve_strategy("one_device", devices="/gpu:7")
    with pytest.raises(ConfigError, match=r"no device '/gpu:7'"):
        resolve_strategy("auto", devices="/cpu:0,/gpu:7")
    with pytest.raises(ConfigError, match=r"no device '/cpu:5'"):
        resolve_strategy("mirrored", devices="/cpu:0,/cpu:5")
    chosen = resolve_strategy("auto", devices="/cpu:0")  # auto uses the devices it is given
    assert isinstance(chosen, tf.distribute.OneDeviceStrategy)


# What the surviving worker of a two-worker job raised when its peer was SIGKILLed (TF 2.x, CPU, localhost).
_SOCKET_CLOSED = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/device:"
    "CPU:0}} Collective ops is aborted by: Socket closed\nAdditional GRPC error information from remote target "
    "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from "
    "peer  {grpc_status:14, grpc_message:\"Socket closed\"}\nThe error could be from a previous operation. Restart "
    "your program to reset. [Op:CollectiveReduceV2] name: ")


@tensorflow_only
def test_a_lost_peer_is_named_from_the_collective_error():
    from kzoo.train.strategy import lost_peer

    error = tf.errors.UnavailableError(None, None, _SOCKET_CLOSED)
    assert lost_peer(error, ("worker", 0)) == ("worker 1 (/job:worker/replica:0/task:1)",
                                               "Collective ops is aborted by: Socket closed")
    health = tf.errors.UnavailableError(None, None, "cluster check alive failed, /job:worker/replica:0/task:0 is down")
    assert lost_peer(health, ("worker", 1))[0] == "worker 0 (/job:worker/replica:0/task:0)"
    assert lost_peer(tf.errors.DeadlineExceededError(None, None, "timed out"), ("worker", 0)) == (
        "a peer worker", "timed out")
    assert lost_peer(tf.errors.InvalidArgumentError(None, None, "shapes"), ("worker", 0)) is None
    assert lost_peer(ValueError("x"), ("worker", 0)) is None


def test_a_second_process_training_into_the_same_folder_is_refused(tmp_path):
    from kzoo.train import RunFolderError

    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
                               "print('held', flush=True); time.sleep(120)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=r"another process is training in .*; wait for it"):
            _trainer(tmp_path, steps=2).fit()
        assert not os.path.exists(tmp_path / "checkpoints")
    finally:
        holder.kill()
        holder.wait()
    assert _trainer(tmp_path, steps=2).fit()["steps"] == 2  # the lock dies with its process
