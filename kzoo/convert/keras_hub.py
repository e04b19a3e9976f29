"""Import of local keras-hub presets (BERT and GPT-2) into kzoo models.

`from_keras_hub(directory)` reads a keras-hub preset directory (as written by
`Backbone.save_to_preset`: `config.json`, `model.weights.h5`, `tokenizer.json`,
`assets/tokenizer/...`), loads the keras-hub backbone with keras-hub itself, builds
the matching kzoo model and copies every weight by walking keras-hub's layers. A
keras-hub weight that is not copied, copied twice, or a kzoo weight left unfilled
is an error listing the names; nothing is skipped silently.

`convert_backbone(backbone)` does the same for a keras-hub backbone already in
memory.

Layouts (d model width, h heads, k head dim, f feed-forward width, V vocabulary,
L max sequence length) are the same on both sides, so weights are copied as they
are: attention query/key/value kernels `(d, h, k)` with biases `(h, k)`, the
attention output kernel `(h, k, d)` with bias `(d,)`, dense kernels `(in, out)`,
layer norm gamma/beta `(d,)` -> scale/bias, embeddings `(V, d)`, positions
`(L, d)`.

Nothing is downloaded: `directory` must be a local folder, and keras-hub is only
asked to read it (it dispatches on the `registered_name` of `config.json`).
"""

import os

import keras
import numpy as np

from kzoo.convert.hf_checkpoint import assign, directory_listing, read_config_json
from kzoo.convert.huggingface import ImportedModel
from kzoo.layers.feed_forward import ACTIVATIONS
from kzoo.models import BertBackbone, GPTBackbone, GPTCausalLM

# keras-hub backbone class name -> kzoo family.
SUPPORTED = {"BertBackbone": "bert", "GPT2Backbone": "gpt"}
FAMILIES = tuple(sorted(set(SUPPORTED.values())))

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.weights.h5", "model.weights.json")  # single file, or the index of sharded weights
ASSETS_DIR = "assets"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocabulary.txt",
    "vocabulary.json",
    "merges.txt",
    "vocabulary.spm",
)


def from_keras_hub(directory, family=None, dtype=None):
    """Builds a kzoo model from a local keras-hub preset directory.

    Args:
        directory: a folder written by keras-hub's `save_to_preset` (str or
            path-like), holding `config.json` (with "class_name", "config" and
            "registered_name") and `model.weights.h5` (or sharded weights).
            Supported backbones: `BertBackbone` and `GPT2Backbone`.
        family: optional "bert" or "gpt"; a preset of another family then raises
            instead of loading.
        dtype: dtype policy of the built kzoo model (e.g. "mixed_bfloat16"); None
            uses the global policy. The keras-hub model is always read in float32.

    Returns:
        `ImportedModel` with `model` a `BertBackbone` (BERT; inputs `token_ids`,
        `segment_ids`, `padding_mask` `(b, s)`, outputs `sequence_output`
        `(b, s, d)` and `pooled_output` `(b, d)`) or a `GPTCausalLM` (GPT-2; inputs
        `token_ids`, `padding_mask` `(b, s)`, logits `(b, s, V)` from the LM head
        tied to the token embedding), `family`, `hf_config` (the keras-hub backbone
        config: the "config" object of `config.json`) and `tokenizer_files`
        (basename -> path of the tokenizer files in the directory and its
        `assets/` folders, e.g. `tokenizer.json`, `vocabulary.txt`,
        `vocabulary.json`, `merges.txt`).

    Raises:
        ValueError: the directory is missing or not a keras-hub preset; the
            backbone class is not supported; it is not of `family`; the preset is
            quantized; a weight could not be mapped (the message lists the names).
        ImportError: keras-hub is not installed.
    """
    directory = _check_directory(directory)
    preset_config = _read_preset_config(directory)
    class_name = preset_config["class_name"]
    if class_name not in SUPPORTED:
        raise ValueError(
            f"{directory}: keras-hub preset of class {class_name!r} is not supported; kzoo imports "
            f"{sorted(SUPPORTED)} presets."
        )
    found = SUPPORTED[class_name]
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not importable from keras-hub; choose one of {list(FAMILIES)} or None.")
    if family is not None and family != found:
        raise ValueError(
            f"{directory} holds a {class_name!r} preset ({found} family), not a {family!r} model; "
            f"pass family={found!r} or choose the right preset."
        )
    _check_weights_present(directory)
    _check_not_quantized(directory, preset_config["config"])
    keras_hub = _import_keras_hub()
    try:
        source = keras_hub.models.Backbone.from_preset(directory, dtype="float32")
    except Exception as e:
        raise ValueError(f"keras-hub could not load the preset {directory!r}: {e}") from e
    model = convert_backbone(source, dtype=dtype)
    return ImportedModel(model, found, preset_config["config"], _tokenizer_files(directory))


def convert_backbone(backbone, dtype=None):
    """Converts an in-memory keras-hub backbone into the matching kzoo model.

    Every keras-hub weight is copied exactly once and every kzoo weight is filled
    exactly once; anything else raises.

    Args:
        backbone: a built `keras_hub.models.BertBackbone` or
            `keras_hub.models.GPT2Backbone` (float weights, not quantized).
        dtype: dtype policy of the built kzoo model; None uses the global policy.

    Returns:
        A kzoo `BertBackbone` for BERT, a `GPTCausalLM` (wrapping a `GPTBackbone`)
        for GPT-2.

    Raises:
        ValueError: unsupported class, a layer layout kzoo does not represent, or a
            weight that was not mapped (listing the names).
    """
    keras_hub = _import_keras_hub()
    not_float = [w.path for w in getattr(backbone, "weights", []) if "float" not in str(w.dtype)]
    if not_float:
        raise ValueError(
            f"keras-hub backbone {backbone.name!r} has non-float (quantized) weights, e.g. {not_float[:5]}; kzoo "
            "imports float models only. Convert the float model and quantize the kzoo model afterwards."
        )
    if isinstance(backbone, keras_hub.models.BertBackbone):
        return _convert_bert(backbone, dtype)
    if isinstance(backbone, keras_hub.models.GPT2Backbone):
        return _convert_gpt2(backbone, dtype)
    raise ValueError(
        f"keras-hub backbone of class {type(backbone).__name__!r} is not supported; kzoo imports {sorted(SUPPORTED)}."
    )


# === Reading the preset directory ===


def _check_directory(path):
    directory = os.path.abspath(os.fspath(path))
    if not os.path.exists(directory):
        raise ValueError(
            f"keras-hub preset directory {directory!r} does not exist. Pass the path of a local directory "
            "written by `save_to_preset` (config.json, model.weights.h5, ...); nothing is downloaded, so "
            "preset names such as 'bert_base_en' are not accepted."
        )
    if not os.path.isdir(directory):
        raise ValueError(
            f"keras-hub preset path {directory!r} is a file, not a directory. Pass the directory that holds "
            "config.json and model.weights.h5."
        )
    return directory


def _read_preset_config(directory):
    config = read_config_json(directory, "keras-hub preset", "the config.json written by `save_to_preset`")
    if "model_type" in config:
        raise ValueError(
            f"{directory!r} is a Hugging Face checkpoint (its config.json has 'model_type'), not a keras-hub "
            "preset; import it with `kzoo.convert.from_huggingface`."
        )
    keys = ("class_name", "config", "registered_name")
    if not all(key in config for key in keys) or not isinstance(config["config"], dict):
        raise ValueError(
            f"{directory!r} is not a keras-hub preset: its config.json has keys {sorted(config)}, but a preset's "
            f"config.json (written by `save_to_preset`) has {list(keys)}, with 'config' an object. Save the "
            "model with `backbone.save_to_preset(directory)`."
        )
    return config


def _check_weights_present(directory):
    if not any(os.path.isfile(os.path.join(directory, name)) for name in WEIGHT_FILES):
        raise ValueError(
            f"No weights in keras-hub preset directory {directory!r}: expected {' or '.join(WEIGHT_FILES)} "
            f"(files there: {directory_listing(directory)}). Save the model with `backbone.save_to_preset(directory)`."
        )


def _check_not_quantized(directory, backbone_config):
    policy = backbone_config.get("dtype")
    name = None
    if isinstance(policy, str):
        name = policy
    elif isinstance(policy, dict):
        if policy.get("class_name") != "DTypePolicy":  # e.g. a DTypePolicyMap or a QuantizedDTypePolicy
            name = policy.get("class_name")
        else:
            name = (policy.get("config") or {}).get("name")
    if name is None:
        return
    try:
        quantized = keras.dtype_policies.get(name).quantization_mode is not None
    except (ValueError, TypeError):  # not a plain policy name: a policy map or an unknown policy
        quantized = True
    if quantized:
        raise ValueError(
            f"{directory!r} holds a quantized keras-hub preset (dtype {name!r}); kzoo imports float presets "
            "only. Import the float preset and quantize the kzoo model afterwards."
        )


def _tokenizer_files(directory):
    """Basename -> path of tokenizer files: the directory first, then `assets/` (sorted walk)."""
    found = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            found[name] = path
    for root, folders, files in os.walk(os.path.join(directory, ASSETS_DIR)):
        folders.sort()
        for name in sorted(files):
            if name in TOKENIZER_FILES and name not in found:
                found[name] = os.path.join(root, name)
    return found


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError("Importing keras-hub presets needs the `keras-hub` package: pip install keras-hub") from e
    return keras_hub


# === Weight bookkeeping ===


class _WeightCopier:
    """Copies keras-hub variables into kzoo variables and checks that the mapping is complete.

    Each keras-hub variable may be copied once and each kzoo variable filled once;
    `finish` then fails unless every weight of both models took part.
    """

    def __init__(self, source, target):
        """Args: the keras-hub backbone `source` and the kzoo backbone `target`."""
        self.source = source
        self.target = target
        self._copied = {}  # id(keras-hub variable) -> its path
        self._filled = {}  # id(kzoo variable) -> the keras-hub path copied into it

    def copy(self, source_variable, target_variable):
        """Assigns `source_variable` (shape-checked, cast to the kzoo dtype) to `target_variable`."""
        name = source_variable.path
        if id(source_variable) in self._copied:
            raise ValueError(f"keras-hub weight {name!r} was mapped twice (converter bug).")
        if id(target_variable) in self._filled:
            raise ValueError(
                f"kzoo weight {target_variable.path!r} was filled twice, from {self._filled[id(target_variable)]!r} "
                f"and {name!r} (converter bug)."
            )
        assign(target_variable, keras.ops.convert_to_numpy(source_variable), name)
        self._copied[id(source_variable)] = name
        self._filled[id(target_variable)] = name

    @property
    def count(self):
        """Number of weights copied so far."""
        return len(self._copied)

    def finish(self):
        """Checks that every keras-hub weight was copied and every kzoo weight filled.

        Returns:
            The number of copied weights (`== len(source.weights)`).

        Raises:
            ValueError: listing the unmapped weights of either side with their shapes.
        """
        source_weights = self.source.weights
        unused = [w for w in source_weights if id(w) not in self._copied]
        unfilled = [w for w in self.target.weights if id(w) not in self._filled]
        problems = []
        if unused:
            problems.append(
                f"{len(unused)} of {len(source_weights)} keras-hub weights were not mapped:\n"
                + "\n".join(f"  {w.path} {list(w.shape)}" for w in unused)
            )
        if unfilled:
            problems.append(
                f"{len(unfilled)} of {len(self.target.weights)} kzoo weights received no value:\n"
                + "\n".join(f"  {w.path} {list(w.shape)}" for w in unfilled)
            )
        if not problems and self.count != len(source_weights):
            problems.append(f"mapped {self.count} weights, but the keras-hub model has {len(source_weights)}.")
        if problems:
            raise ValueError(
                f"Incomplete conversion of keras-hub {type(self.source).__name__!r} (the converter does not match "
                "this model): " + "\n".join(problems)
            )
        return self.count


def _sublayer(layer, attribute):
    """`layer.<attribute>`, or a ValueError saying the keras-hub layout is unknown."""
    value = getattr(layer, attribute, None)
    if value is None:
        raise ValueError(
            f"keras-hub layer {layer.name!r} ({type(layer).__name__}) has no {attribute!r}; this keras-hub "
            "version lays out its layers differently from the one kzoo's converter knows (keras-hub 0.32)."
        )
    return value


def _copy_layer_norm(weights, source, target):
    """keras `LayerNormalization` gamma/beta `(d,)` -> kzoo `LayerNorm` scale/bias."""
    if not (source.center and source.scale) or getattr(source, "rms_scaling", False):
        raise ValueError(f"keras-hub layer norm {source.name!r} is not a plain LayerNorm with gamma and beta.")
    weights.copy(source.gamma, target.scale)
    weights.copy(source.beta, target.bias)


def _copy_dense(weights, source, target):
    """keras `Dense` kernel `(in, out)` and bias `(out,)` -> a kzoo Keras `Dense`."""
    weights.copy(source.kernel, target.kernel)
    if source.use_bias:
        weights.copy(source.bias, target.bias)


def _copy_attention(weights, source, target):
    """keras `MultiHeadAttention` (query/key/value `EinsumDense` kernels `(d, h, k)`,
    biases `(h, k)`; output kernel `(h, k, d)`, bias `(d,)`) -> kzoo `MultiHeadAttention`."""
    if getattr(source, "_use_gate", False):
        raise ValueError(f"keras-hub attention {source.name!r} is gated, which kzoo does not implement.")
    for attribute, role in (
        ("_query_dense", "query"),
        ("_key_dense", "key"),
        ("_value_dense", "value"),
        ("_output_dense", "output"),
    ):
        dense, projection = _sublayer(source, attribute), getattr(target, f"{role}_dense")
        weights.copy(dense.kernel, projection.kernel)
        if dense.bias is not None:
            weights.copy(dense.bias, projection.bias)


def _copy_feed_forward(weights, layer, feed_forward):
    _copy_dense(weights, _sublayer(layer, "_feedforward_intermediate_dense"), feed_forward.up_dense)
    _copy_dense(weights, _sublayer(layer, "_feedforward_output_dense"), feed_forward.down_dense)


def _activation(layers):
    """The kzoo name of the feed-forward activation shared by keras-hub transformer `layers`.

    Identified numerically (keras-hub passes plain functions, e.g. its
    `gelu_approximate`), so exact and tanh-approximated GELU cannot be confused.
    """
    probe = np.linspace(-5.0, 5.0, 101, dtype="float32")
    names = set()
    for layer in layers:
        function = _sublayer(layer, "_feedforward_intermediate_dense").activation
        got = keras.ops.convert_to_numpy(function(keras.ops.convert_to_tensor(probe)))
        matches = [
            name
            for name, candidate in ACTIVATIONS.items()
            if np.allclose(got, keras.ops.convert_to_numpy(candidate(keras.ops.convert_to_tensor(probe))), atol=1e-6)
        ]
        if len(matches) != 1:
            raise ValueError(
                f"keras-hub layer {layer.name!r}: feed-forward activation {getattr(function, '__name__', function)!r} "
                f"matches none of kzoo's activations {sorted(ACTIVATIONS)}."
            )
        names.add(matches[0])
    if len(names) != 1:
        raise ValueError(f"keras-hub layers use different activations {sorted(names)}; kzoo uses one per model.")
    return names.pop()


def _norm_epsilon(norms):
    """The epsilon shared by keras `LayerNormalization` layers `norms`."""
    epsilons = {float(norm.epsilon) for norm in norms}
    if len(epsilons) != 1:
        raise ValueError(f"keras-hub layer norms use different epsilons {sorted(epsilons)}; kzoo uses one per model.")
    return epsilons.pop()


def _check_norm_order(layers, normalize_first):
    for layer in layers:
        if bool(getattr(layer, "normalize_first", False)) != normalize_first:
            order = "pre-norm" if normalize_first else "post-norm"
            raise ValueError(f"keras-hub layer {layer.name!r} is not {order} as kzoo's model of this family is.")


def _check_tied_embedding(embedding):
    if getattr(embedding, "reverse_embeddings", None) is not None or not getattr(embedding, "tie_weights", True):
        raise ValueError(
            f"keras-hub token embedding {embedding.name!r} has an untied output projection; kzoo ties the LM head "
            "to the token embedding, so this model cannot be represented."
        )
    if getattr(embedding, "logit_soft_cap", None):
        raise ValueError(f"keras-hub token embedding {embedding.name!r} soft-caps logits, which kzoo does not do.")


def _block_norms(layers):
    return [
        norm
        for layer in layers
        for norm in (_sublayer(layer, "_self_attention_layer_norm"), _sublayer(layer, "_feedforward_layer_norm"))
    ]


# === Per-family converters ===


def _convert_bert(source, dtype):
    """keras-hub `BertBackbone` -> kzoo `BertBackbone` (post-norm encoder, pooler)."""
    layers = source.transformer_layers
    _check_norm_order(layers, normalize_first=False)
    _check_tied_embedding(source.token_embedding)
    target = BertBackbone(
        vocabulary_size=source.vocabulary_size,
        num_layers=source.num_layers,
        num_heads=source.num_heads,
        hidden_dim=source.hidden_dim,
        intermediate_dim=source.intermediate_dim,
        max_sequence_length=source.max_sequence_length,
        num_segments=source.num_segments,
        dropout=source.dropout,
        attention_dropout=source.dropout,  # keras-hub uses one rate for both
        activation=_activation(layers),
        norm_epsilon=_norm_epsilon([source.embeddings_layer_norm, *_block_norms(layers)]),
        dtype=dtype,
    )
    weights = _WeightCopier(source, target)
    weights.copy(source.token_embedding.embeddings, target.token_embedding.embeddings)
    weights.copy(source.position_embedding.position_embeddings, target.position_embedding_layer.position_embeddings)
    weights.copy(source.segment_embedding.embeddings, target.segment_embedding.embeddings)
    _copy_layer_norm(weights, source.embeddings_layer_norm, target.embeddings_norm)
    for layer, block in zip(layers, target.encoder_blocks, strict=True):
        _copy_attention(weights, _sublayer(layer, "_self_attention_layer"), block.self_attention)
        _copy_layer_norm(weights, _sublayer(layer, "_self_attention_layer_norm"), block.self_attention_norm)
        _copy_feed_forward(weights, layer, block.feed_forward)
        _copy_layer_norm(weights, _sublayer(layer, "_feedforward_layer_norm"), block.feed_forward_norm)
    _copy_dense(weights, source.pooled_dense, target.pooler.dense)
    weights.finish()
    return target


def _convert_gpt2(source, dtype):
    """keras-hub `GPT2Backbone` -> kzoo `GPTCausalLM` (pre-norm decoder, tied LM head)."""
    layers = source.transformer_layers
    _check_norm_order(layers, normalize_first=True)
    _check_tied_embedding(source.token_embedding)
    for layer in layers:
        if getattr(layer, "_cross_attention_layer", None) is not None:
            raise ValueError(f"keras-hub layer {layer.name!r} has cross attention, which GPT-2 does not.")
    backbone = GPTBackbone(
        vocabulary_size=source.vocabulary_size,
        num_layers=source.num_layers,
        num_heads=source.num_heads,
        hidden_dim=source.hidden_dim,
        intermediate_dim=source.intermediate_dim,
        max_sequence_length=source.max_sequence_length,
        position_embedding="learned",
        dropout=source.dropout,
        activation=_activation(layers),
        norm_epsilon=_norm_epsilon([*_block_norms(layers), source.layer_norm]),
        dtype=dtype,
    )
    weights = _WeightCopier(source, backbone)
    weights.copy(source.token_embedding.embeddings, backbone.token_embedding.embeddings)
    weights.copy(source.position_embedding.position_embeddings, backbone.position_embedding_layer.position_embeddings)
    for layer, block in zip(layers, backbone.decoder_blocks, strict=True):
        _copy_attention(weights, _sublayer(layer, "_self_attention_layer"), block.self_attention)
        _copy_layer_norm(weights, _sublayer(layer, "_self_attention_layer_norm"), block.self_attention_norm)
        _copy_feed_forward(weights, layer, block.feed_forward)
        _copy_layer_norm(weights, _sublayer(layer, "_feedforward_layer_norm"), block.feed_forward_norm)
    _copy_layer_norm(weights, source.layer_norm, backbone.final_norm)
    weights.finish()
    return GPTCausalLM(backbone)
