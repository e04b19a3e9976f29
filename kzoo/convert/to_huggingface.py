"""Export of kzoo models to local Hugging Face checkpoint directories: the inverse of `from_huggingface`.

`to_huggingface(model_or_path, out_dir)` writes, for BERT/RoBERTa/XLM-R, GPT-2, Llama/Qwen2/Mistral and
T5/BART/mBART/Marian models, `config.json` (the architecture, `model_type`, the sizes, the
tokenizer's special token ids, float32) and `model.safetensors` (every weight under the name and in the layout
transformers uses: `nn.Linear` weights `(out, in)`, attention heads merged, tied weights stored once, as
`save_pretrained` writes them), and copies the tokenizer files. `transformers.AutoModel*.from_pretrained(out_dir)`
then loads the model, and `from_huggingface(out_dir)` gives back the same kzoo model; a checkpoint imported with
`from_huggingface` and exported again has exactly the tensors of the original file.

The per-family writers (`to_hf_bert`, `to_hf_gpt`, `to_hf_seq2seq`) pick the architecture from the backbone's
options and refuse, with one line naming the option, a model no transformers architecture represents: a file that
transformers would load wrongly is never written.
"""

import dataclasses
import importlib
import json
import os
import shutil

from kzoo.convert._to_hf import ExportRefused

# kzoo model class -> the exporter module under kzoo.convert. Checked in order with isinstance.
EXPORTERS = (
    ("BertBackbone", "to_hf_bert"), ("BertPretrainer", "to_hf_bert"), ("BertClassifier", "to_hf_bert"),
    ("BertTokenClassifier", "to_hf_bert"), ("BertSpanQA", "to_hf_bert"),
    ("GPTBackbone", "to_hf_gpt"), ("GPTCausalLM", "to_hf_gpt"),
    ("Seq2SeqBackbone", "to_hf_seq2seq"), ("Seq2SeqLM", "to_hf_seq2seq"),
)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
XLM_R_VOCABULARY = "sentencepiece.bpe.model"
LABELS_FILE = "labels.json"  # kzoo's class names beside a run's tokenizer: written into config.json, not copied


@dataclasses.dataclass
class ExportedCheckpoint:
    """What `to_huggingface` returns.

    Attributes:
        directory: the absolute output folder.
        architecture: the transformers class to load it with, e.g. "GPT2LMHeadModel".
        model_type: `config.json`'s model_type, e.g. "gpt2".
        num_tensors: tensors in `model.safetensors`.
        num_parameters: values in them.
        tokenizer_files: basenames of the tokenizer files copied.
        notes: what the file leaves out (e.g. a task head with no transformers equivalent), one sentence each.
    """

    directory: str
    architecture: str
    model_type: str
    num_tensors: int
    num_parameters: int
    tokenizer_files: list
    notes: list


def to_huggingface(model, out_dir, tokenizer_files=None, labels=None, special_token_ids=None):
    """Writes a kzoo model as a Hugging Face checkpoint directory.

    A `kzoo train` run or a `.keras` file: load it with `kzoo.recipes.outputs.load_run` (which finds the run's
    tokenizer files and labels) and pass its parts, as `kzoo convert --to huggingface RUN_OR_KERAS OUT_DIR` does.

    Args:
        model: a kzoo model: a backbone or a task (BERT/RoBERTa, GPT-2/Llama-style, T5/BART/Marian).
        out_dir: the folder to write (created if missing; its `config.json`, `model.safetensors` and tokenizer
            files are replaced).
        tokenizer_files: the tokenizer files to copy: a folder, or a dict basename -> path, or a list of paths
            (none by default).
        labels: class names in id order for a classifier's `id2label`.
        special_token_ids: kind ("pad", "bos", "eos") -> id, over the tokenizer's `special_token_ids` (for a model
            exported without its tokenizer). Ids neither gives are written as null (Marian needs its pad id).

    Returns:
        `ExportedCheckpoint`.

    Raises:
        ValueError: the model (or one of its options) has no Hugging Face equivalent, the source cannot be loaded,
            the tokenizer does not fit the model, or `out_dir` is a file; one line naming what to fix.
        OSError: `out_dir` cannot be written.
    """
    if isinstance(model, (str, os.PathLike)):
        raise ValueError(f"to_huggingface takes a kzoo model, got the path {os.fspath(model)!r}: load a run or .keras "
                         "file with kzoo.recipes.outputs.load_run, or use `kzoo convert --to huggingface`.")
    files = _tokenizer_files(tokenizer_files)
    tokenizer = _tokenizer(files)
    model = _plain(model)
    export = _exporter(model).export(model)
    if export.model_type == "roberta" and XLM_R_VOCABULARY in files:
        # XLM-RoBERTa is RoBERTa with a SentencePiece vocabulary: same tensors, its own model_type and classes.
        export.model_type, export.architecture = "xlm-roberta", "XLM" + export.architecture
    special = dict(tokenizer.special_token_ids) if tokenizer is not None else {}
    special.update(special_token_ids or {})
    config = _config(export, model, tokenizer, special, labels)
    directory = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{directory} is a file; pass a folder to write the Hugging Face checkpoint into.")
    os.makedirs(directory, exist_ok=True)
    _write_weights(export.tensors, os.path.join(directory, WEIGHTS_FILE))
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    copied = []
    for basename, path in sorted(files.items()):
        if basename in (CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE):
            continue  # never let a stray file replace what was just written
        target = os.path.join(directory, basename)
        if os.path.abspath(path) != target:
            shutil.copyfile(path, target)
        copied.append(basename)
    return ExportedCheckpoint(
        directory, export.architecture, export.model_type, len(export.tensors),
        sum(int(tensor.size) for tensor in export.tensors.values()), copied, list(export.notes),
    )


def _tokenizer_files(given):
    if given is None:
        return {}
    if isinstance(given, (str, os.PathLike)):
        folder = os.fspath(given)
        if not os.path.isdir(folder):
            raise ValueError(f"tokenizer folder {folder} is not a directory.")
        given = [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
        given = [path for path in given if os.path.isfile(path)]
    if not isinstance(given, dict):
        given = {os.path.basename(os.fspath(path)): os.fspath(path) for path in given}
    for basename, path in given.items():
        if not os.path.isfile(path):
            raise ValueError(f"tokenizer file {path} ({basename}) does not exist.")
    return {os.path.basename(name): os.fspath(path) for name, path in given.items()}


def _tokenizer(files):
    """The kzoo tokenizer the files describe (for its special ids), or None without files."""
    files = {name: path for name, path in files.items() if name != LABELS_FILE}
    if not files:
        return None
    from kzoo.text import tokenizer_from_files

    return tokenizer_from_files(files)


def _plain(model):
    """The model with LoRA adapters merged into its kernels; a quantized model is refused."""
    from kzoo.models.lora import merged_copy

    quantized = [layer.name for layer in model._flatten_layers() if getattr(layer, "quantization_mode", None)]
    if quantized:
        raise ExportRefused(f"{type(model).__name__} is quantized (layer {quantized[0]!r}); export the float model "
                            "it was quantized from.")
    return merged_copy(model)


def _exporter(model):
    import kzoo.models

    for class_name, module in EXPORTERS:
        if isinstance(model, getattr(kzoo.models, class_name)):
            return importlib.import_module(f"kzoo.convert.{module}")
    raise ExportRefused(
        f"{type(model).__name__} is not a kzoo model that has a Hugging Face form (exportable: "
        f"{', '.join(name for name, _ in EXPORTERS)})."
    )


def _config(export, model, tokenizer, special, labels):
    """`config.json`: the family's fields, the special ids, labels, the architecture and float32."""
    from kzoo.models.backbone import backbone_of

    config = dict(export.config)
    vocabulary = backbone_of(model).vocabulary_size
    if tokenizer is not None and tokenizer.vocabulary_size > vocabulary:
        raise ValueError(f"the tokenizer has {tokenizer.vocabulary_size} tokens but the model's vocabulary_size is "
                         f"{vocabulary}: pass the tokenizer the model was trained with.")
    for kind, key in export.special_tokens.items():
        if kind not in special:
            if kind in export.required_tokens:
                raise ValueError(f"{export.architecture} needs the {kind} id ({key}): pass the model's tokenizer "
                                 f"files, or special_token_ids={{'{kind}': ...}}.")
            config.setdefault(key, None)  # not transformers' defaults (e.g. GPT-2's 50256), which may not exist
            continue
        token_id = int(special[kind])
        if not 0 <= token_id < vocabulary:
            raise ValueError(f"the {kind} id {token_id} is outside the model's vocabulary of {vocabulary}.")
        if config.get(key) not in (None, token_id):  # RoBERTa's pad id is fixed by its positions
            raise ValueError(f"the tokenizer's {kind} id {token_id} differs from the {config[key]} that "
                             f"{export.architecture} needs ({key}).")
        config[key] = token_id
    if export.decoder_start is not None:
        config["decoder_start_token_id"] = config[export.decoder_start]
    num_labels = config.get("num_labels")
    if num_labels is not None:
        if labels is not None and len(labels) != num_labels:
            raise ValueError(f"{len(labels)} labels given for a head with {num_labels} classes.")
        names = list(labels) if labels is not None else [f"LABEL_{index}" for index in range(num_labels)]
        config["id2label"] = {str(index): str(name) for index, name in enumerate(names)}
        config["label2id"] = {str(name): index for index, name in enumerate(names)}
        del config["num_labels"]
    config.update(architectures=[export.architecture], model_type=export.model_type, dtype="float32",
                  torch_dtype="float32")
    return config


def _write_weights(tensors, path):
    try:
        import safetensors.numpy
    except ImportError as error:
        raise ImportError("Writing Hugging Face checkpoints needs the `safetensors` package: pip install "
                          "safetensors") from error
    partial = path + ".partial"
    safetensors.numpy.save_file(dict(tensors), partial, metadata={"format": "pt"})
    os.replace(partial, path)  # a kill while writing keeps the previous file
