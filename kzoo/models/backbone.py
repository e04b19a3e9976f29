"""Base classes shared by every kzoo model: backbones and tasks.

A backbone maps named inputs (`token_ids`, `padding_mask`, ...) to hidden states; a
task adds a head, a loss and a default `compile()`. Both are functional Keras models
whose `get_config` holds the constructor arguments (not the graph), so a `.keras` file
rebuilds them through their constructors and weight ties survive a reload.

Both also count their parameters from a serialized config (`count_parameters`), without
building anything: `kzoo.saving` checks a `.keras` file's declared sizes against the
weights it holds before Keras builds the model.

A quantized model (`model.quantize("int8" | "int4" | "float8")`) records which layers are
quantized, and how, in its backbone's `dtype` (a `DTypePolicyMap` from layer paths to
policies, `kzoo.models.quantization`), so it reloads quantized; its count is then the number
of values the file stores (int8 kernels and scales, packed int4 kernels, float8 scales and
histories).
"""

import contextlib
import contextvars
import dataclasses
import inspect
import math
import re

import keras
import numpy as np

from kzoo.models import lora
from kzoo.models.layout import layout_map
from kzoo.models.quantization import quantization_adjustment, resolve_policy_maps, serialized_dtype_policy

# Keys Keras' own `get_config` adds beside a kzoo model's constructor arguments.
KERAS_CONFIG_KEYS = ("name", "trainable", "dtype")

# True inside `weights_to_be_overwritten`: backbones start their weights at zero instead of drawing them.
_WEIGHTS_OVERWRITTEN = contextvars.ContextVar("kzoo_weights_overwritten", default=False)
# The `_CreatedByFirstAssign` scope of the innermost active `weights_to_be_overwritten`, or None.
_DEFERRING = contextvars.ContextVar("kzoo_deferring_variables", default=None)


@contextlib.contextmanager
def weights_to_be_overwritten():
    """Variables of models built inside hold no value until their first assignment, which creates them.

    For checkpoint importers, which then assign every weight (and check that none was left unassigned). Filling
    each variable with initial values and then copying the checkpoint over them held, at the peak, the initial
    buffers, the checkpoint tensor and the backend's conversions of it: under TensorFlow 1.57x the float32 weight
    bytes of peak memory for a TinyLlama-sized import (tools/bench_import.py, the process baseline included),
    1.21x with variables created by their assignment. Inside the block the first `assign` (or `assign_weight`)
    of a variable creates it from the assigned value; under TensorFlow `assign_weight` makes one copy of a NumPy
    array the variable's own memory. Variables the block never assigns (seed-generator state, or a weight the
    converter forgot, which `kzoo.convert.hf_checkpoint.check_all_assigned` reports) get their initial value when
    the block ends: zeros for kernels and tables (`unless_overwritten`: drawing 1.1B random values only to
    overwrite them took 70% of the import's time), their own initializer otherwise. Reading a variable before
    its first assignment gives its initial value, computed anew on each read, and building functional models
    (symbolic calls) works as outside. Only the values at construction change; the backbone's config (its
    `initializer_range`) and every model built outside the block are as before.

    Inside another `keras.StatelessScope` (which defers variables itself and initializes them at its exit)
    only the zeros apply, and assignments follow that scope's rules.
    """
    token = _WEIGHTS_OVERWRITTEN.set(True)
    try:
        if _CreatedByFirstAssign.inside_another():
            yield
        else:
            with _CreatedByFirstAssign() as scope:
                deferring = _DEFERRING.set(scope)
                try:
                    yield
                finally:
                    _DEFERRING.reset(deferring)
    finally:
        _WEIGHTS_OVERWRITTEN.reset(token)


def assign_weight(variable, value):
    """Writes the NumPy array `value` into `variable` (same shape; cast to the variable's dtype).

    Inside `weights_to_be_overwritten` a variable not yet created is created from `value`. Under TensorFlow it
    is created from one 64-byte-aligned copy of `value` (which also lays out a transposed view and casts), handed
    to TensorFlow through DLPack so that the variable takes that copy's memory: `tf.convert_to_tensor` of a NumPy
    array holds two more copies at its peak, and the allocator kept some (a TinyLlama-sized import peaked at 1.29x
    the float32 weight bytes that way, at 1.21x this way); `value` itself is never shared with the variable.
    Elsewhere (and for dtypes DLPack cannot carry, such as bfloat16) it is `variable.assign(value)`, after laying
    out a non-contiguous `value` in tiles; under JAX the variable may then share a contiguous `value`'s memory
    (`jnp.asarray` takes an aligned NumPy array without a copy on CPU).
    """
    scope = _DEFERRING.get()
    if scope is not None and scope.create_from_array(variable, value):
        return
    dtype = keras.backend.standardize_dtype(variable.dtype)
    if not value.flags.c_contiguous:  # e.g. a transposed kernel: laid out here, faster than the backends do
        value = _copy_in_tiles(np.empty(value.shape, dtype), value)
    variable.assign(value.astype(dtype, copy=False))


# Side of the square tiles `_copy_in_tiles` copies (elements): 64 x 64 float32 tiles read and write whole cache
# lines and fit the L1 cache; a 5632 x 2048 transposition took 29 ms in tiles, 110 ms in one `np.copyto`.
_TILE = 64


def _copy_in_tiles(out, value):
    """Copies `value` into the C-contiguous `out` of the same shape (casting), in square tiles; returns `out`.

    For transposed views (`linear_to_kernel`, possibly with heads split or merged): NumPy copies them element by
    element along one array, striding across the other, which for a TinyLlama-sized import was a third of its
    time. The tiles are taken over a 2-D view of `value` that needs no copy (the first axes against the rest); a
    layout without one is copied by `np.copyto`.
    """
    for split in range(1, value.ndim):
        rows, columns = math.prod(value.shape[:split]), math.prod(value.shape[split:])
        try:
            source = value.reshape((rows, columns), copy=False)
        except ValueError:
            continue
        target = out.reshape(rows, columns)
        for row in range(0, rows, _TILE):
            for column in range(0, columns, _TILE):
                target[row:row + _TILE, column:column + _TILE] = source[row:row + _TILE, column:column + _TILE]
        return out
    np.copyto(out, value, casting="unsafe")
    return out


class _CreatedByFirstAssign(keras.StatelessScope):
    """A stateless scope in which a variable made inside is created by its first assignment, from the value.

    The only place kzoo uses Keras' private variable API; checked against Keras 3.15.1
    (`keras/src/backend/common/variables.py`, `stateless_scope.py`, `backend/{tensorflow,jax}/core.py`) and
    pinned by tests/convert/test_hf_checkpoint.py::test_variables_built_for_an_import_are_created_by_their_assign.
    Keras defers a variable made inside any stateless scope (it keeps `_initializer`, its `_value` stays None,
    and it joins the global "uninitialized_variables" list), and routes `Variable.assign` inside one to
    `scope.add_update((variable, value))` with `value` already a backend tensor of the variable's dtype and
    shape. Here `add_update` writes for real: `_initialize(value)` makes the backend variable from that tensor
    (as `_deferred_initialize` does from the initializer's), `_direct_assign` overwrites a variable that has a
    value. On exit the variables made inside that were never assigned are initialized, and all of them leave
    Keras' list (an initialized variable left there would make the next outermost stateless scope fail).
    """

    def __init__(self):
        super().__init__(initialize_variables=False)

    @staticmethod
    def inside_another():
        """Whether a stateless scope is active (Keras has no public test for it)."""
        from keras.src.backend.common.stateless_scope import in_stateless_scope

        return in_stateless_scope()

    def __enter__(self):
        from keras.src.backend.common import global_state

        self._pending = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
        self._first = len(self._pending)
        return super().__enter__()

    def add_update(self, update):
        variable, value = update
        if variable._value is None:
            variable._initialize(value)
            variable._initializer = None
        else:
            variable._direct_assign(value)

    def create_from_array(self, variable, value):
        """Under TensorFlow, creates the not yet created `variable` from an aligned copy of the NumPy `value`
        (see `assign_weight`); returns whether it did (False: another backend, a created variable, or a dtype
        or size DLPack cannot carry)."""
        if keras.backend.backend() != "tensorflow" or variable._value is not None:
            return False
        dtype = np.dtype(keras.backend.standardize_dtype(variable.dtype))
        if dtype.kind not in "fiu" or value.size == 0:
            return False
        import tensorflow as tf

        # TensorFlow aborts the process (a failed check, not an exception) on DLPack memory that is not 64-byte
        # aligned, so the copy is placed at a 64-byte boundary of a slightly larger buffer.
        buffer = np.empty(value.size * dtype.itemsize + 64, np.uint8)
        start = -buffer.ctypes.data % 64
        array = buffer[start:start + value.size * dtype.itemsize].view(dtype).reshape(value.shape)
        if value.flags.c_contiguous:
            np.copyto(array, value, casting="unsafe")
        else:
            _copy_in_tiles(array, value)
        variable._initialize(tf.experimental.dlpack.from_dlpack(array.__dlpack__()))
        variable._initializer = None
        return True

    def __exit__(self, *exc_info):
        super().__exit__(*exc_info)
        made_here = self._pending[self._first:]
        del self._pending[self._first:]
        if exc_info[0] is None:
            for variable in made_here:
                if variable._value is None:
                    variable._deferred_initialize()


def unless_overwritten(initializer):
    """`initializer` (what a backbone draws a kernel or table from), or zeros inside `weights_to_be_overwritten`."""
    return keras.initializers.Zeros() if _WEIGHTS_OVERWRITTEN.get() else initializer


def weights_initializer(initializer_range):
    """The initializer a backbone gives its kernels and embedding tables: truncated normal with standard deviation
    `initializer_range` (BERT, GPT-2, T5 and BART all draw so), or zeros inside `weights_to_be_overwritten`."""
    return unless_overwritten(keras.initializers.TruncatedNormal(stddev=initializer_range))


class Backbone(keras.Model):
    """A functional model whose config is its constructor arguments.

    Subclasses create their layers, then call `self._forward(inputs)` on
    `keras.Input`s to wire the graph, then `super().__init__(inputs, outputs)`.
    `_forward` is reused to compute attention scores on demand
    (`attention_scores`), so inspection costs nothing when unused.

    A subclass sets `config_class` (its family's `ModelConfig`) and validates its
    arguments first with `self.config_class.from_arguments(locals())`. Its
    constructor ends with a `# === Config ===` block that keeps every argument as a
    public attribute of the same name (`backbone.max_sequence_length`), as keras-hub's
    backbones do: code that needs a size reads that attribute, and `get_config`
    returns the attributes that `config_class`'s fields name.
    """

    config_class = None

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            # Keras' functional constructor drops `dtype`: set the backbone's own policy, which a task's head
            # takes and which holds the map of quantized layers (`serialized_dtype_policy`) on reload.
            self.dtype_policy = dtype

    @classmethod
    def family_config(cls, config):
        """The validated `config_class` of a serialized config (`get_config()`'s dict).

        Raises ValueError on a key that is not a constructor argument, or on an invalid value.
        """
        valid = [field.name for field in dataclasses.fields(cls.config_class)]
        _check_keys(cls, config, valid + list(KERAS_CONFIG_KEYS))
        return cls.config_class.from_arguments(config)

    @classmethod
    def count_parameters(cls, config):
        """The number of values the weights of the backbone that the serialized `config` builds hold (nothing is
        built): its parameter count, adjusted for the quantized layers its `dtype` map names."""
        family = cls.family_config(config)
        return family.parameter_count() + quantization_adjustment(
            cls.__name__, config.get("dtype"), lambda path: cls.projection_shape(family, path))

    @classmethod
    def projection_shape(cls, family, path):
        """`(inputs, units)` of the kernel at layer path `path` (as `layer.path` names it) in the backbone that
        the family config `family` builds, or None when it has no `Dense`/`EinsumDense` there.

        kzoo's projections sit at `{stack}_block_{i}/{self_attention|cross_attention}/{query|key|value|output}`,
        `{stack}_block_{i}/feed_forward/{up|gate|down}` and BERT's `pooler/dense`. A one-stack family accepts
        either stack name here; a name its layers do not have changes the count, so the file is refused anyway.
        """
        match = _BLOCK_PATH.fullmatch(path)
        if match is None:
            use_pooler = getattr(family, "use_pooler", False)
            return (family.hidden_dim, family.hidden_dim) if path == "pooler/dense" and use_pooler else None
        stack, index, sublayer, name = match.groups()
        two_stacks = hasattr(family, "num_encoder_layers")
        depth = getattr(family, f"num_{stack}_layers") if two_stacks else family.num_layers
        if int(index) >= depth or (sublayer == "cross_attention" and not (two_stacks and stack == "decoder")):
            return None
        d, f = family.hidden_dim, family.intermediate_dim
        if sublayer == "feed_forward":
            shapes = {"up": (d, f), "down": (f, d), **({"gate": (d, f)} if getattr(
                family, "gated_feed_forward", False) else {})}
        else:
            head_dim = getattr(family, "key_dim", None) or d // family.num_heads
            width = family.num_heads * head_dim
            key_value_width = (getattr(family, "num_key_value_heads", None) or family.num_heads) * head_dim  # GQA
            shapes = {"query": (d, width), "key": (d, key_value_width), "value": (d, key_value_width),
                      "output": (width, d)}
        return shapes.get(name)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialized_dtype_policy(self, self),
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(self.config_class)},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        cls.family_config(config)  # unknown keys and bad sizes: a ValueError naming them, before any layer is built
        if "dtype" in config and isinstance(config["dtype"], dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        backbone = cls(**config)
        # The backbone's own policy stays the map, so that a task's head built around it finds its entries.
        resolve_policy_maps(backbone._flatten_layers(include_self=False))
        return backbone

    @classmethod
    def layout_map(cls, device_mesh, model_axis="model"):
        """The `keras.distribution.LayoutMap` that splits this backbone's attention, feed-forward and
        token-embedding kernels over the `model_axis` of `device_mesh` for
        `keras.distribution.ModelParallel` (see `kzoo.models.layout` for what is split how and why).
        Every family shares kzoo's layers and so this map; a family with other weights overrides it.

        Args:
            device_mesh: a `keras.distribution.DeviceMesh`, e.g. shape `(1, n)` with axes
                `("batch", "model")`; set the distribution before building the model.
            model_axis: str, the mesh axis the kernels are split over.
        """
        return layout_map(device_mesh, model_axis)

    def attention_scores(self, inputs):
        """Runs the backbone on `inputs` (a dict like `self.input`) and returns the
        attention probabilities: a dict of lists with one `(b, h, s, t)` array per layer.
        """
        inputs = {name: keras.ops.convert_to_tensor(value) for name, value in inputs.items()}
        return self._forward(inputs, return_attention_scores=True)["attention_scores"]

    def enable_lora(self, rank, alpha=None, targets=("query", "value")):
        """Low-rank adapters on the `targets` projections of every block, everything else frozen
        (`kzoo.models.lora.enable_lora`): afterwards only the adapters (and a task's head) train.

        Args:
            rank: int, the adapters' rank. alpha: float, their scale is `alpha / rank` (default: `rank`).
            targets: attention "query", "key", "value", "output" and feed-forward "up", "gate", "down".
        """
        return lora.enable_lora(self, rank, alpha, targets)

    def count_params_by_layer(self):
        """`{layer name: parameter count}` for the top-level layers (for reports)."""
        return {layer.name: layer.count_params() for layer in self.layers if layer.weights}


class Task(keras.Model):
    """A backbone plus a head; `get_config` nests the serialized backbone.

    `compile()` with no arguments uses AdamW at `default_learning_rate` and the
    task's `default_loss()` / `default_metrics()`; anything passed replaces them.
    """

    default_learning_rate = 5e-5

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(self.default_learning_rate, weight_decay=0.01)
        if loss == "auto":
            loss = self.default_loss()
        if metrics == "auto":
            # As weighted metrics: Keras' plain `metrics` ignore sample weights, so they would also score
            # padded MLM slots and the sub-tokens a tagging task weights 0.
            metrics = None
            kwargs.setdefault("weighted_metrics", self.default_metrics())
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def default_loss(self):
        # The mean over weighted positions: the kzoo.data pipelines pass target masks as sample weights, and
        # Keras' default reduction would divide by every position, padding included.
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def _store_config(self, backbone, **arguments):
        """Keeps `backbone` and each other constructor argument as a public attribute of the same name
        (`classifier.num_classes`); `get_config` returns them."""
        self.backbone = backbone
        for name, value in arguments.items():
            setattr(self, name, value)
        self._config_names = tuple(arguments)

    def get_config(self):
        backbone = keras.layers.serialize(self.backbone)
        if any(layer.quantization_mode is not None for layer in self._flatten_layers(include_self=False)):
            # The head's layers take the backbone's dtype policy, so the backbone's map of quantized layers covers
            # them too: the whole model reloads quantized as it was saved.
            backbone["config"]["dtype"] = serialized_dtype_policy(self, self.backbone)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": backbone,
            **{name: getattr(self, name) for name in self._config_names},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        _check_keys(cls, config, cls._argument_names())
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        task = cls(**config)
        resolve_policy_maps(task._flatten_layers())
        return task

    @classmethod
    def _argument_names(cls):
        """The keys a serialized config may hold: the constructor's named arguments and Keras' own."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        names = [p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD]
        return names + list(KERAS_CONFIG_KEYS)

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        """Parameters the task adds to its backbone, given the backbone's `ModelConfig` and the
        task's serialized arguments (overridden by tasks with a head)."""
        return 0

    @classmethod
    def head_projection_shapes(cls, backbone_config, arguments):
        """`{layer path: (inputs, units)}` of the `Dense` kernels the task's head adds (`model.quantize` reaches
        them too), given the backbone's `ModelConfig` and the task's serialized arguments (overridden by tasks
        with such a head)."""
        return {}

    @classmethod
    def count_parameters(cls, config):
        """The number of values the weights of the task model that the serialized `config` builds hold (nothing
        is built): its parameter count, adjusted for the quantized layers its backbone's `dtype` map names.

        Raises ValueError on an unknown key, a backbone that is not a kzoo backbone, or an invalid size.
        """
        _check_keys(cls, config, cls._argument_names())
        entry = config.get("backbone")
        backbone_class = registered_class(entry)
        if backbone_class is None or not issubclass(backbone_class, Backbone) or not isinstance(
                entry.get("config"), dict):
            raise ValueError(f"{cls.__name__}: `backbone` must be a serialized kzoo backbone, got "
                             f"{_describe(entry)}.")
        backbone_config = backbone_class.family_config(entry["config"])
        heads = cls.head_projection_shapes(backbone_config, config)

        def shape(path):
            return heads.get(path) or backbone_class.projection_shape(backbone_config, path)

        adjustment = quantization_adjustment(cls.__name__, entry["config"].get("dtype"), shape)
        return backbone_config.parameter_count() + cls.head_parameter_count(backbone_config, config) + adjustment


def backbone_of(model):
    """The backbone of a task (`model.backbone`), or `model` itself when it is a backbone; code that takes
    either reads sizes from it (`backbone_of(model).vocabulary_size`)."""
    return model if isinstance(model, Backbone) else model.backbone


def position_limit(model):
    """The longest sequence a model's (a task's or a backbone's) positions allow, or None (rotary/relative
    positions extend to any length)."""
    backbone = backbone_of(model)
    if getattr(backbone, "position_embedding", "learned") in ("rotary", "relative"):  # BERT's are learned
        return None
    return backbone.max_sequence_length


def registered_class(entry):
    """The kzoo class a serialized object (`{"class_name", "registered_name", "config"}`) names, or None."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("registered_name") or entry.get("class_name")
    if not isinstance(name, str) or not name.startswith("kzoo>"):
        return None
    return keras.saving.get_registered_object(name)


def count_serialized_parameters(entry):
    """The parameter count of a serialized kzoo backbone or task model, computed from its config without
    building it; None when `entry` is not a kzoo model. Raises ValueError when its config is invalid."""
    model_class = registered_class(entry)
    if model_class is None or not issubclass(model_class, (Backbone, Task)):
        return None
    if not isinstance(entry.get("config"), dict):
        raise ValueError(f"{model_class.__name__}: its serialized `config` is not an object.")
    return model_class.count_parameters(entry["config"])


# A projection inside a kzoo block, e.g. `decoder_block_3/cross_attention/value`, `encoder_block_0/feed_forward/up`.
_BLOCK_PATH = re.compile(r"(encoder|decoder)_block_(\d+)/(self_attention|cross_attention|feed_forward)/(\w+)")


def _check_keys(cls, config, valid):
    unknown = sorted(str(key) for key in set(config) - set(valid))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; valid keys are {sorted(valid)}.")


def _describe(entry):
    if isinstance(entry, dict):
        return repr(entry.get("registered_name") or entry.get("class_name"))
    return type(entry).__name__
