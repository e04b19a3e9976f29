"""A recipe's tokenizer: the user's vocabulary files, or one trained on the training texts and cached in the run
directory's `vocab/` folder (one subfolder per kind, size and corpus, so a run folder reused with other data never picks
up an old vocabulary)."""

import hashlib
import os
import shutil

from kzoo.run_directory import RunDirectory
from kzoo.train.config import ConfigError


def prepare_tokenizer(kind, texts, vocabulary_size, workdir, tokenizer_dir=""):
    """A tokenizer from `tokenizer_dir` (user files), else one trained on `texts` (cached in `<workdir>/vocab`).

    Args:
        kind: "wordpiece" (BERT) or "sentencepiece" (GPT, T5; BPE pieces for GPT, unigram for T5
            is chosen by `kind="sentencepiece_unigram"`).
        texts: training strings for the vocabulary (used only when training one), of any length (a
            line too long for the sentencepiece trainer is given to it in pieces cut at spaces).
        vocabulary_size: size of a trained vocabulary.
        tokenizer_dir: a folder with `vocab.txt`, `spiece.model` or `vocab.json` + `merges.txt`
            (e.g. an imported checkpoint's); empty to train one.

    Returns:
        `(tokenizer, {basename: path})`.
    """
    from kzoo.text import tokenizer_from_files, train_sentencepiece, train_wordpiece

    if tokenizer_dir:
        if not os.path.isdir(tokenizer_dir):
            raise ConfigError(f"data.tokenizer_dir {tokenizer_dir!r} is not a directory.")
        files = {name: os.path.join(tokenizer_dir, name) for name in os.listdir(tokenizer_dir)}
        return tokenizer_from_files(files), files
    corpus = "\n".join(text.replace("\n", " ") for text in texts) + "\n"
    # A new kind, size or training text trains anew, in its own folder: a run folder reused with other data never
    # picks up the old vocabulary, and the old one (which older checkpoints need) is kept.
    digest = hashlib.sha256(corpus.encode("utf-8")).hexdigest()[:12]
    folder = os.path.join(RunDirectory(workdir).vocabularies, f"{kind}-{vocabulary_size}-{digest}")
    target = "vocab.txt" if kind == "wordpiece" else "spiece.model"
    path = os.path.join(folder, target)
    if not os.path.exists(path):
        # Trained in a temporary folder renamed into place when complete: a kill mid-training leaves no
        # half-written vocabulary that a later run would trust.
        staging = f"{folder}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        corpus_file = os.path.join(staging, "corpus.txt")
        with open(corpus_file, "w", encoding="utf-8") as file:
            file.write(corpus)
        if kind == "wordpiece":
            train_wordpiece([corpus_file], vocabulary_size, staging)
        else:
            model_type = "unigram" if kind == "sentencepiece_unigram" else "bpe"
            train_sentencepiece([corpus_file], vocabulary_size, staging, model_type=model_type)
        os.remove(corpus_file)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (no vocabulary file) left by older versions
        os.replace(staging, folder)
    files = {target: path}
    return tokenizer_from_files(files), files
