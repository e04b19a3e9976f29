"""`kzoo.models.layout`: the model-parallel LayoutMap shards every family's kernels and changes no number.

The sharded checks run this file as a script in one subprocess with two host devices
(`XLA_FLAGS` must be set before JAX starts), one tiny task model per family: its kernels
are split over the "model" mesh axis, and its outputs, two training steps' losses and the
trained weights equal those of the same model on one device (fp32, dropout 0).
"""

import json
import os
import re
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

from kzoo import models
from kzoo.models.layout import ShapeCheckedModelParallel, check_variable_layout, layout_map

pytestmark = pytest.mark.backend("jax", reason="model parallelism is keras.distribution's LayoutMap, JAX only in "
                                               "Keras 3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# fp32: a split matmul sums its partial products in another order (measured: at most 1.1e-7 apart, so
# logits near zero need the absolute term).
RTOL, ATOL = 1e-5, 1e-6
# Rank >= 2 variables the map leaves replicated on purpose (small); any other one must be split, so a new
# layer whose kernels escape the map fails here.
REPLICATED = r".*(position_embedding/embeddings|segment_embedding/embeddings|relative_position_bias/embeddings" \
             r"|(query|key|value)/bias|pooler/dense/kernel|masked_lm_head/transform/kernel)"
BATCH, LENGTH = 2, 8
FAMILIES = ("bert", "gpt", "seq2seq", "llama")


def _task(family):
    """A tiny task model of `family` without dropout and a batch `(x, y, sample_weight)` for it."""
    rng = np.random.default_rng(0)

    def ids(length=LENGTH):
        return rng.integers(1, 128, (BATCH, length)).astype("int32")

    mask = np.ones((BATCH, LENGTH), "int32")
    if family == "bert":
        model = models.BertPretrainer(models.from_preset("bert_test", dropout=0.0), next_sentence_prediction=False)
        x = {"token_ids": ids(), "segment_ids": np.zeros_like(mask), "padding_mask": mask,
             "mask_positions": np.tile(np.arange(3, dtype="int32"), (BATCH, 1))}
        return model, x, {"mlm_logits": ids(3)}
    if family in ("gpt", "llama"):  # llama_test: 4 query heads, 2 key/value heads, untied output
        return models.GPTCausalLM(models.from_preset(f"{family}_test", dropout=0.0)), \
            {"token_ids": ids(), "padding_mask": mask}, ids()
    backbone = models.from_preset("t5_test", dropout=0.0, tie_word_embeddings=False)  # untied: reverse_embeddings
    x = {"encoder_token_ids": ids(), "encoder_padding_mask": mask, "decoder_token_ids": ids(),
         "decoder_padding_mask": mask}
    return models.Seq2SeqLM(backbone), x, ids()


def _outputs_and_losses(model, x, y):
    """The outputs on `x`, then the losses of two SGD steps (the second one sees the first one's gradients)."""
    outputs = model.predict_on_batch(x)  # compiled: eager op-by-op calls on sharded arrays are slower
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    losses = [float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0]) for _ in range(2)]
    return keras.tree.flatten(outputs), losses


def _sharding_report(model, layouts):
    """`{path: [spec, shard shape]}` of the split variables and the rank >= 2 ones left replicated by mistake."""
    split, escaped = {}, []
    for variable in model.variables:
        if layouts[variable.path] is not None:
            value = variable.value
            split[variable.path] = [list(value.sharding.spec), [list(shard.data.shape)
                                                                for shard in value.addressable_shards]]
        elif len(variable.shape) >= 2 and not re.fullmatch(REPLICATED, variable.path):
            escaped.append(variable.path)
    return split, escaped


def _model_parallel_run():
    """Runs in the subprocess; returns the JSON-able results per family."""
    import jax

    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), keras.distribution.list_devices())
    layouts = models.Backbone.layout_map(mesh)
    distribution = ShapeCheckedModelParallel(layout_map=layouts, batch_dim_name="batch")
    results = {"devices": len(jax.devices())}
    for family in FAMILIES:
        keras.utils.set_random_seed(1)
        model, x, y = _task(family)
        weights = model.get_weights()
        outputs, losses = _outputs_and_losses(model, x, y)
        with distribution.scope():
            keras.utils.set_random_seed(1)
            sharded_model, _, _ = _task(family)
            sharded_model.set_weights(weights)
            split, escaped = _sharding_report(sharded_model, layouts)
            sharded_outputs, sharded_losses = _outputs_and_losses(sharded_model, x, y)
        trained_weights_error = max(float(np.max(np.abs(a - b)))
                                    for a, b in zip(model.get_weights(), sharded_model.get_weights(), strict=True))
        results[family] = {
            "split": split, "escaped": escaped, "losses": losses, "sharded_losses": sharded_losses,
            "trained_weights_error": trained_weights_error,
            "outputs": [a.tolist() for a in outputs], "sharded_outputs": [b.tolist() for b in sharded_outputs],
        }
    with distribution.scope():
        try:
            models.from_preset("gpt_test", num_heads=1)  # (32, 1, 32) query kernels: one head for two devices
        except ValueError as error:
            results["indivisible_error"] = str(error)
    return results


@pytest.fixture(scope="module")
def results():
    environment = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT,
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    process = subprocess.run([sys.executable, "-m", "tests.models.test_layout"], cwd=ROOT, env=environment,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the shared subprocess (about 30 s on two CPU cores) runs eight models
@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_are_split_over_the_model_axis(results, family):
    assert results["devices"] == 2
    split, escaped = results[family]["split"], results[family]["escaped"]
    assert escaped == []
    expected = {  # path suffix: (spec, shape of each of the two shards)
        "self_attention/query/kernel": (["None", "model", "None"], [32, 1, 16]),
        "self_attention/value/kernel": (["None", "model", "None"], [32, 1, 16]),
        "self_attention/output/kernel": (["model", "None", "None"], [1, 16, 32]),
        "feed_forward/up/kernel": (["None", "model"], [32, (128 if family == "bert" else 64) // 2]),
        "feed_forward/down/kernel": (["model", "None"], [(128 if family == "bert" else 64) // 2, 32]),
        "token_embedding/embeddings": (["None", "model"], [128, 16]),
    }
    if family == "seq2seq":
        expected["cross_attention/key/kernel"] = (["None", "model", "None"], [32, 1, 16])
        expected["token_embedding/reverse_embeddings"] = (["model", "None"], [16, 128])
    if family == "llama":  # 4 query heads of 8, 2 key/value heads (one per device), gated feed-forward of 48
        expected.update({
            "self_attention/query/kernel": (["None", "model", "None"], [32, 2, 8]),
            "self_attention/value/kernel": (["None", "model", "None"], [32, 1, 8]),
            "self_attention/output/kernel": (["model", "None", "None"], [2, 8, 32]),
            "feed_forward/up/kernel": (["None", "model"], [32, 24]),
            "feed_forward/gate/kernel": (["None", "model"], [32, 24]),
            "feed_forward/down/kernel": (["model", "None"], [24, 32]),
            "token_embedding/reverse_embeddings": (["model", "None"], [16, 128]),
        })
    for suffix, (spec, shard_shape) in expected.items():
        paths = [path for path in split if path.endswith(suffix)]
        assert paths, f"no split variable ends with {suffix}"
        for path in paths:
            assert [str(axis) for axis in split[path][0]] == spec, path
            assert split[path][1] == [shard_shape, shard_shape], path


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_split_model_computes_what_one_device_does(results, family):
    result = results[family]
    for outputs, sharded_outputs in zip(result["outputs"], result["sharded_outputs"], strict=True):
        np.testing.assert_allclose(sharded_outputs, outputs, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result["sharded_losses"], result["losses"], rtol=RTOL)
    assert result["trained_weights_error"] <= ATOL


@pytest.mark.slow
def test_an_uneven_split_names_the_variable_while_building(results):
    message = results["indivisible_error"]
    assert "decoder_block_0/self_attention/query/kernel" in message and "(32, 1, 32)" in message
    assert "'model' mesh axis of size 2" in message


def test_an_uneven_split_is_a_value_error_naming_variable_shape_and_axis():
    # No device is touched: the mesh names two devices it never places anything on.
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), ["cpu:0", "cpu:1"])
    distribution = ShapeCheckedModelParallel(layout_map=layout_map(mesh))
    kernel = types.SimpleNamespace(path="encoder_block_0/feed_forward/up/kernel", shape=(32, 63), _layout=None)
    with pytest.raises(ValueError, match=r"'encoder_block_0/feed_forward/up/kernel' of shape \(32, 63\) cannot be "
                                         r"split on its dimension of size 63 over the 'model' mesh axis of size 2"):
        distribution.get_variable_layout(kernel)
    even = distribution.get_variable_layout(types.SimpleNamespace(path=kernel.path, shape=(32, 64), _layout=None))
    assert tuple(even.axes) == (None, "model")
    with pytest.raises(ValueError, match="has shape \\(32, 64, 2\\) but its layout"):
        check_variable_layout(kernel.path, (32, 64, 2), even)
    with pytest.raises(ValueError, match=r"no 'tensor' axis .* axes are \['batch', 'model'\]"):
        layout_map(mesh, model_axis="tensor")


if __name__ == "__main__":
    print(json.dumps(_model_parallel_run()))
    sys.exit(0)
