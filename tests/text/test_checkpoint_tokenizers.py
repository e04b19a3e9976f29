"""Tokenizers of the newer checkpoint families: ids EQUAL the Hugging Face fast tokenizers' on 300 sentences.

RoBERTa (byte-level BPE, `<s> A </s></s> B </s>`), XLM-R (SentencePiece with fairseq ids), Qwen2- and Llama-3-style
`tokenizer.json` files (byte-level BPE with their split regexes) and Llama-2-style `tokenizer.model` files
(SentencePiece BPE with byte fallback). Every vocabulary is trained here, once per module, on text WITH runs of
spaces, tabs and newlines, so whitespace tokens exist and the lookahead-free split (kzoo.text.pretokenizers) is put
to the test. Nothing is downloaded.
"""

import json
import random

import pytest
import sentencepiece
import tensorflow as tf
import transformers

from kzoo import text
from kzoo.text import pretokenizers
from tests.text.sentences import FIXED, corpus_lines, sentences

pytestmark = pytest.mark.backend("tensorflow", reason="tokenizers are TensorFlow ops whatever the Keras backend")

SENTENCES = [s.replace("\x00", "") for s in sentences(300)]
ROBERTA_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _training_text():
    """corpus_lines (whitespace collapsed) plus sentences drawn with another seed, whitespace kept."""
    return corpus_lines(600) + sentences(400, seed=11)[len(FIXED):]


def _mismatches(ours, expected):
    return [(s, e, o) for s, e, o in zip(SENTENCES, expected, ours, strict=True) if e != o]


def _write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def roberta_files(tmp_path_factory):
    import tokenizers

    root = tmp_path_factory.mktemp("roberta")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(_training_text(), vocab_size=900, special_tokens=ROBERTA_SPECIAL, show_progress=False)
    vocab, merges = bpe.save_model(str(root))
    reference = transformers.RobertaTokenizerFast(vocab=vocab, merges=merges)
    assert reference.pad_token_id == 1 and reference.vocab_size > 500  # the files really were loaded
    reference.backend_tokenizer.save(str(root / "tokenizer.json"))
    config = _write_json(root / "tokenizer_config.json", {"tokenizer_class": "RobertaTokenizer"})
    return {"vocab.json": vocab, "merges.txt": merges, "tokenizer.json": str(root / "tokenizer.json"),
            "tokenizer_config.json": str(config), "reference": reference}


@pytest.fixture(scope="module")
def roberta(roberta_files):
    tokenizer = text.tokenizer_from_files({k: roberta_files[k] for k in ("vocab.json", "merges.txt")})
    assert type(tokenizer) is text.RobertaTokenizer  # no config, no tokenizer.json: told apart by <s>, </s>
    return tokenizer


def test_roberta_ids_equal_roberta_tokenizer_fast(roberta_files, roberta):
    reference = roberta_files["reference"]
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert _mismatches(roberta.tokenize(SENTENCES).to_list(), expected) == []
    whitespace = {roberta.token_to_id(t) for t in ("ĠĠ", "ĉ", "Ċ") if t in roberta.vocabulary}
    assert whitespace & {i for row in expected for i in row}  # the split of whitespace runs was exercised
    texts = roberta.detokenize(roberta.tokenize(SENTENCES)).numpy()
    assert [t.decode("utf-8") for t in texts] == SENTENCES


def test_roberta_encode_and_pairs_equal_reference(roberta_files, roberta):
    reference = roberta_files["reference"]
    assert roberta.special_token_ids == {"bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3, "mask": 4}
    ours = roberta.encode(SENTENCES, sequence_length=12)
    expected = reference(SENTENCES, max_length=12, truncation=True, padding="max_length")
    assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
    assert ours["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]
    first, second = SENTENCES[:150], SENTENCES[150:]
    for length in (7, 16, 40):
        ours = roberta.encode_pair(first, second, sequence_length=length)
        expected = reference(first, second, max_length=length, truncation="longest_first", padding="max_length")
        assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
        assert ours["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]
        assert not ours["segment_ids"].numpy().any()  # one segment, like RoBERTa's type vocabulary of 1


def test_roberta_picked_from_config_and_from_tokenizer_json(roberta_files, roberta):
    files = {k: roberta_files[k] for k in ("vocab.json", "merges.txt", "tokenizer_config.json")}
    assert type(text.tokenizer_from_files(files)) is text.RobertaTokenizer
    from_json = text.tokenizer_from_files({"tokenizer.json": roberta_files["tokenizer.json"]})
    assert type(from_json) is text.RobertaTokenizer and from_json.pretokenizer == "gpt2"
    # The same vocabulary, merges and special ids as from vocab.json + merges.txt: the same algorithm and ids.
    assert from_json.vocabulary == roberta.vocabulary and from_json.special_token_ids == roberta.special_token_ids
    assert from_json._bpe.merges == roberta._bpe.merges and from_json.normalization is None


def test_roberta_special_tokens_fill_the_bert_pipeline_roles(roberta_files, roberta):
    """The BERT recipes read special_token_ids["cls"/"sep"/"pad"/"mask"]: with RoBERTa's tokens there, the
    classification pipeline packs `<s> A </s>` rows padded with `<pad>`, as Hugging Face does."""
    from kzoo import data

    special = roberta.special_token_ids
    texts = SENTENCES[30:38]
    records = [{"text": t, "label": "x"} for t in texts]
    dataset = data.classification_dataset(records, roberta, data.LabelVocabulary(["x"]), sequence_length=14,
                                          cls_id=special["cls"], sep_id=special["sep"], pad_id=special["pad"])
    rows = [features["token_ids"].numpy().tolist() for features, _ in dataset]
    assert rows == roberta_files["reference"](texts, max_length=14, truncation=True, padding="max_length")["input_ids"]
    # Pairs: `<s> A </s></s> B </s>`, the longer text cut first, one segment (all ids 0), as Hugging Face packs them.
    pairs = [{"text": a, "pair": b, "label": "x"} for a, b in zip(texts, SENTENCES[40:48], strict=True)]
    dataset = data.classification_dataset(pairs, roberta, data.LabelVocabulary(["x"]), sequence_length=20,
                                          cls_id=special["cls"], sep_id=special["sep"], pad_id=special["pad"],
                                          text_pair_key="pair")
    features = [features for features, _ in dataset]
    want = roberta_files["reference"](texts, SENTENCES[40:48], max_length=20, truncation=True, padding="max_length")
    assert [row["token_ids"].numpy().tolist() for row in features] == want["input_ids"]
    assert not any(row["segment_ids"].numpy().any() for row in features)


def test_roberta_words_are_tokenized_with_their_leading_space(roberta_files, roberta):
    """Word-level pipelines (NER tags, SQuAD offsets, the exported tag / answer signatures) tokenize each word on
    its own; byte-level BPE then needs the word's leading space (`Ġword`), as Hugging Face's
    `add_prefix_space=True` gives split words, or the model would read every word as glued to the one before."""
    from kzoo import data

    special = roberta.special_token_ids
    sentences = [(text.split(), ["x"] * len(text.split())) for text in SENTENCES[50:56] if text.split()]
    dataset = data.token_classification_dataset(sentences, roberta, data.LabelVocabulary(["x"]), sequence_length=24,
                                                cls_id=special["cls"], sep_id=special["sep"], pad_id=special["pad"])
    rows = [features["token_ids"].numpy().tolist() for features, _, _ in dataset]
    reference = transformers.RobertaTokenizerFast(vocab=roberta_files["vocab.json"],
                                                  merges=roberta_files["merges.txt"], add_prefix_space=True)
    want = reference([words for words, _ in sentences], is_split_into_words=True, max_length=24, truncation=True,
                     padding="max_length")["input_ids"]
    assert rows == want


@pytest.fixture(scope="module")
def xlmr_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("xlmr")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(line.split()) for line in _training_text()) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "sentencepiece.bpe"), vocab_size=400, model_type="unigram",
        character_coverage=1.0, minloglevel=2,
    )
    model = root / "sentencepiece.bpe.model"
    reference = transformers.XLMRobertaTokenizerFast.from_pretrained(str(root))  # converts the local .model
    assert reference.pad_token_id == 1 and reference.mask_token_id == 401 and len(reference) == 402
    return {"sentencepiece.bpe.model": str(model), "reference": reference}


@pytest.fixture(scope="module")
def xlmr(xlmr_files):
    tokenizer = text.tokenizer_from_files({"sentencepiece.bpe.model": xlmr_files["sentencepiece.bpe.model"]})
    assert type(tokenizer) is text.XLMRobertaTokenizer
    return tokenizer


def test_xlmr_ids_equal_xlm_roberta_tokenizer_fast(xlmr_files, xlmr):
    reference = xlmr_files["reference"]
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert _mismatches(xlmr.tokenize(SENTENCES).to_list(), expected) == []
    assert xlmr.vocabulary_size == len(reference)
    assert [xlmr.id_to_token(i) for i in range(6)] == reference.convert_ids_to_tokens(list(range(6)))
    assert xlmr.id_to_token(xlmr.vocabulary_size - 1) == "<mask>" == reference.convert_ids_to_tokens(401)


def test_xlmr_encode_pairs_and_detokenize_equal_reference(xlmr_files, xlmr):
    reference = xlmr_files["reference"]
    assert xlmr.special_token_ids == {"bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3, "mask": 401}
    ours = xlmr.encode(SENTENCES, sequence_length=10)
    expected = reference(SENTENCES, max_length=10, truncation=True, padding="max_length")
    assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
    first, second = SENTENCES[:150], SENTENCES[150:]
    ours = xlmr.encode_pair(first, second, sequence_length=15)
    expected = reference(first, second, max_length=15, truncation="longest_first", padding="max_length")
    assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
    rows = ours["token_ids"].numpy().tolist()
    decoded = [t.decode("utf-8") for t in xlmr.detokenize(rows).numpy()]
    assert decoded == reference.batch_decode(rows, skip_special_tokens=True)


def _train_byte_level_json(root, name):
    """A Qwen2- ("qwen2") or Llama-3-style ("llama3") tokenizer.json + tokenizer_config.json, built like theirs."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    special = ["<|endoftext|>"] if name == "qwen2" else ["<|begin_of_text|>", "<|end_of_text|>"]
    tokenizer = Tokenizer(models.BPE(ignore_merges=name == "llama3"))
    if name == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pretokenizers.NAMES[name]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_text(), trainer)
    if name == "llama3":
        bos = special[0]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
        config = {"bos_token": bos, "eos_token": special[1]}
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None}
    folder = root / name
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", config)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **config)
    return {"tokenizer.json": str(folder / "tokenizer.json"),
            "tokenizer_config.json": str(folder / "tokenizer_config.json"), "reference": reference}


@pytest.fixture(scope="module")
def byte_level_json(tmp_path_factory):
    root = tmp_path_factory.mktemp("byte_level_json")
    return {name: _train_byte_level_json(root, name) for name in ("qwen2", "llama3")}


def _files(files):
    return {name: path for name, path in files.items() if name != "reference"}


def _kept(packed):
    """Each row's ids under its padding mask."""
    rows, counts = packed["token_ids"].numpy().tolist(), packed["padding_mask"].numpy().sum(axis=1)
    return [row[:n] for row, n in zip(rows, counts, strict=True)]


@pytest.fixture(scope="module")
def byte_level_tokenizers(byte_level_json):
    return {name: text.tokenizer_from_files(_files(files)) for name, files in byte_level_json.items()}


@pytest.mark.parametrize("name", ["qwen2", "llama3"])
def test_tokenizer_json_byte_level_ids_equal_reference(byte_level_json, byte_level_tokenizers, name):
    reference = byte_level_json[name]["reference"]
    tokenizer = byte_level_tokenizers[name]
    assert type(tokenizer) is text.BytePairTokenizer and tokenizer.pretokenizer == name
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert _mismatches(tokenizer.tokenize(SENTENCES).to_list(), expected) == []
    assert tokenizer.vocabulary_size == len(reference)
    assert _kept(tokenizer.encode(SENTENCES, sequence_length=9)) == reference(
        SENTENCES, max_length=9, truncation=True)["input_ids"]
    texts = tokenizer.detokenize(tokenizer.tokenize(SENTENCES)).numpy()
    assert [t.decode("utf-8") for t in texts] == [reference.decode(row) for row in expected]


def test_tokenizer_json_framing_and_special_tokens(byte_level_json, byte_level_tokenizers):
    qwen, llama = byte_level_tokenizers["qwen2"], byte_level_tokenizers["llama3"]
    assert qwen.start_ids == () and qwen.special_token_ids == {"eos": 0, "pad": 0}
    assert llama.start_ids == (0,) and llama.special_token_ids == {"bos": 0, "eos": 1}
    # Digits: Qwen2 splits single digits, Llama-3 groups of up to three.
    assert [len(t.tokenize(["1234567"]).to_list()[0]) for t in (qwen, llama)] == [7, 3]
    # Text spelling a special token stays text (kzoo's policy), as with Hugging Face's split_special_tokens=True.
    reference = byte_level_json["qwen2"]["reference"]
    ids = qwen.tokenize("a<|endoftext|>b").numpy().tolist()
    assert 0 not in ids and ids == reference("a<|endoftext|>b", split_special_tokens=True)["input_ids"]


@pytest.fixture(scope="module")
def llama2_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama2")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(line.replace("\n", " ") for line in _training_text()) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "tokenizer"), vocab_size=600, model_type="bpe",
        byte_fallback=True, split_digits=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        character_coverage=0.99, allow_whitespace_only_pieces=True, minloglevel=2,
    )
    model = str(root / "tokenizer.model")
    config = _write_json(root / "tokenizer_config.json", {"add_bos_token": True, "add_eos_token": False})
    reference = transformers.LlamaTokenizerFast.from_pretrained(str(root))  # converts the local tokenizer.model
    assert reference.bos_token_id == 1 and len(reference) == 600
    return {"tokenizer.model": model, "tokenizer_config.json": str(config), "reference": reference}


def test_llama2_sentencepiece_ids_equal_reference(llama2_files):
    reference = llama2_files["reference"]
    tokenizer = text.tokenizer_from_files({k: llama2_files[k] for k in ("tokenizer.model", "tokenizer_config.json")})
    assert type(tokenizer) is text.SentencePieceTokenizer and tokenizer.start_ids == (1,) and not tokenizer.end_ids
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    ours = tokenizer.tokenize(SENTENCES).to_list()
    assert _mismatches(ours, expected) == []
    assert any(reference.convert_ids_to_tokens(i).startswith("<0x") for row in ours for i in row)  # byte fallback
    expected = reference(SENTENCES, max_length=11, truncation=True)["input_ids"]
    assert _kept(tokenizer.encode(SENTENCES, sequence_length=11)) == expected


@pytest.fixture(scope="module")
def llama2_json(llama2_files, tmp_path_factory):
    """The Llama-2 vocabulary as tokenizer.json only: as transformers 5 writes it (Metaspace, prepend_scheme
    "first") and as Llama-2 checkpoints ship it (legacy: Prepend + Replace normalizer), with their references."""
    root = tmp_path_factory.mktemp("llama2_json")
    (root / "first").mkdir()
    (root / "legacy").mkdir()
    first = root / "first" / "tokenizer.json"
    llama2_files["reference"].backend_tokenizer.save(str(first))
    data = json.loads(first.read_text(encoding="utf-8"))
    assert data["pre_tokenizer"]["prepend_scheme"] == "first" and data["model"]["byte_fallback"]
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    data["pre_tokenizer"] = None
    legacy = _write_json(root / "legacy" / "tokenizer.json", data)
    return {
        "first": (str(first), llama2_files["reference"]),
        "legacy": (str(legacy), transformers.PreTrainedTokenizerFast(tokenizer_file=str(legacy))),
    }


@pytest.mark.parametrize("variant", ["first", "legacy"])
def test_llama2_tokenizer_json_ids_equal_reference(llama2_json, variant):
    path, reference = llama2_json[variant]
    tokenizer = text.tokenizer_from_files({"tokenizer.json": path})
    assert type(tokenizer).__name__ == "MetaspaceBPETokenizer" and tokenizer.start_ids == (1,)
    assert tokenizer.prefix_space == ("first" if variant == "first" else "always")
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    ours = tokenizer.tokenize(SENTENCES).to_list()
    assert _mismatches(ours, expected) == []
    assert _kept(tokenizer.encode(SENTENCES, sequence_length=11)) == reference(
        SENTENCES, max_length=11, truncation=True)["input_ids"]
    decoded = [t.decode("utf-8") for t in tokenizer.detokenize(ours).numpy()]
    assert decoded == [reference.decode(row, skip_special_tokens=True) for row in ours]


def test_files_errors_name_what_is_missing(tmp_path, roberta_files, byte_level_json):
    with pytest.raises(ValueError, match="hold vocab.json but not merges.txt"):
        text.tokenizer_from_files({"vocab.json": roberta_files["vocab.json"]})
    with pytest.raises(ValueError, match="No tokenizer vocabulary among the files"):
        text.tokenizer_from_files({"tokenizer_config.json": roberta_files["tokenizer_config.json"]})
    data = json.loads(open(byte_level_json["qwen2"]["tokenizer.json"], encoding="utf-8").read())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+(?=x)|\s+"
    bad = _write_json(tmp_path / "tokenizer.json", data)
    with pytest.raises(ValueError, match=r"cannot reproduce without lookahead") as error:
        text.tokenizer_from_files({"tokenizer.json": str(bad)})
    assert r"\\w+(?=x)" in str(error.value) and "\n" not in str(error.value)
    data["model"]["byte_fallback"] = True
    _write_json(tmp_path / "tokenizer.json", data)
    with pytest.raises(ValueError, match="SentencePiece-style BPE with normalizer .'NFC'. and pre-tokenizer"):
        text.tokenizer_from_files({"tokenizer.json": str(bad)})


def test_lookahead_free_split_equals_the_reference_regexes():
    """kzoo.text.pretokenizers on whitespace-heavy random text equals Hugging Face's Oniguruma split."""
    from tokenizers import Regex, pre_tokenizers

    rng = random.Random(3)
    alphabet = list("ab Z9' \t\n\r!.'sS") + ["\u00a0", "\u3000", "\u0085", "\u2028", "\x0b", "é", "日", "🙂", "١",
                                            "'LL", "६"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(400)]
    for pattern, (name, _, _) in pretokenizers.PATTERNS.items():
        reference = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        expected = [[word for word, _ in reference.pre_tokenize_str(t)] for t in texts]
        words = pretokenizers.split_words(tf.constant(texts), name).to_list()
        ours = [[w.decode("utf-8") for w in row] for row in words]
        assert [(t, e, o) for t, e, o in zip(texts, expected, ours, strict=True) if e != o] == [], name


@pytest.fixture(scope="module")
def marian_files(tmp_path_factory):
    """OPUS-MT-style files: two SentencePiece models and a vocab.json numbering the pieces of both."""
    root = tmp_path_factory.mktemp("marian")
    lines = [" ".join(line.split()) for line in _training_text()]
    models = {}
    for side, part in (("source", lines[::2]), ("target", lines[1::2])):
        corpus = root / f"{side}.txt"
        corpus.write_text("\n".join(part) + "\n", encoding="utf-8")
        sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / side), vocab_size=300,
                                                 character_coverage=1.0, minloglevel=2)
        (root / f"{side}.model").rename(root / f"{side}.spm")
        models[side] = sentencepiece.SentencePieceProcessor(model_file=str(root / f"{side}.spm"))
    pieces = ["</s>", "<unk>", ">>fra<<", ">>deu<<"]
    for model in models.values():
        pieces += [model.id_to_piece(i) for i in range(3, model.get_piece_size()) if model.id_to_piece(i) not in pieces]
    pieces = pieces[:-40] + ["<pad>"]  # some pieces of each model are left out: they become <unk>
    vocab = _write_json(root / "vocab.json", {piece: i for i, piece in enumerate(pieces)})
    files = {"source.spm": str(root / "source.spm"), "target.spm": str(root / "target.spm"), "vocab.json": str(vocab)}
    reference = transformers.MarianTokenizer(source_spm=files["source.spm"], target_spm=files["target.spm"],
                                             vocab=files["vocab.json"])
    assert reference.pad_token_id == len(pieces) - 1 and reference.eos_token_id == 0
    return {**files, "reference": reference}


@pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")  # none installed: no Moses normalization
def test_marian_ids_equal_marian_tokenizer(marian_files):
    reference = marian_files["reference"]
    tokenizer = text.tokenizer_from_files(_files(marian_files))
    assert type(tokenizer) is text.MarianTokenizer
    sources = [(">>fra<< " if i % 7 == 0 else "") + s for i, s in enumerate(SENTENCES)]
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in sources]
    ours = tokenizer.tokenize(sources).to_list()
    assert _mismatches(ours, expected) == []
    assert tokenizer.special_token_ids["unk"] in {i for row in ours for i in row}  # pieces outside vocab.json
    assert _kept(tokenizer.encode(sources, sequence_length=10)) == reference(
        sources, max_length=10, truncation=True)["input_ids"]
    targets = [reference(text_target=s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert tokenizer.target_tokenizer.tokenize(SENTENCES).to_list() == targets
    decoded = [t.decode("utf-8") for t in tokenizer.detokenize([row + [0] for row in targets[:100]]).numpy()]
    assert decoded == reference.batch_decode([row + [0] for row in targets[:100]], skip_special_tokens=True)


@pytest.fixture(scope="module")
def graph_tokenizers(xlmr, marian_files, llama2_json, byte_level_tokenizers, roberta):
    """The tokenizers with new graph code (the byte-level ones share GPT-2's graph, tested in tf.data elsewhere)."""
    return {
        "xlmr": xlmr,
        "marian": text.tokenizer_from_files(_files(marian_files)),
        "llama2_json": text.tokenizer_from_files({"tokenizer.json": llama2_json["first"][0]}),
    }


def test_new_tokenizers_run_in_tf_data(graph_tokenizers):
    texts = SENTENCES[:24]
    for name, tokenizer in graph_tokenizers.items():
        expected = tokenizer.tokenize(texts).to_list()
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts)).batch(5).map(tokenizer.tokenize)
        assert [row for batch in dataset for row in batch.to_list()] == expected, name


def _encode_endpoint(tokenizer):
    return tf.function(lambda strings: tokenizer.encode(strings, sequence_length=16),
                       input_signature=[tf.TensorSpec([None], tf.string)])


@pytest.mark.slow
def test_new_tokenizers_round_trip_a_saved_model(graph_tokenizers, tmp_path):
    """Two SentencePiece models in one SavedModel (XLM-R's, Marian's source and target) stay apart on reload."""
    module = tf.Module()
    tokenizers = graph_tokenizers
    for name, tokenizer in tokenizers.items():
        setattr(module, f"{name}_tokenizer", tokenizer)
        setattr(module, name, _encode_endpoint(tokenizer))
    texts = tf.constant(SENTENCES[:30])
    expected = {name: getattr(module, name)(texts)["token_ids"].numpy().tolist() for name in tokenizers}
    tf.saved_model.save(module, str(tmp_path / "tokenizers"))
    reloaded = tf.saved_model.load(str(tmp_path / "tokenizers"))
    assert {name: getattr(reloaded, name)(texts)["token_ids"].numpy().tolist() for name in expected} == expected


def test_roberta_answer_signature_maps_the_best_span_to_its_context_word(roberta):
    """The exported `answer` signature packs `<s> question </s></s> context </s>` in one segment and must still find
    where the context starts (from the packer's segments, before they are zeroed): a span-QA stand-in whose logits
    peak on one context word's piece must get that word back, not a neighbour."""
    import tensorflow as tf

    from kzoo.export.serving import ServingSettings, qa_signature

    def one_piece_words(words):  # used once, after the first word, spelled by one piece of the tiny vocabulary
        return [w for w in words[1:] if words.count(w) == 1 and len(roberta.tokenize([" " + w]).to_list()[0]) == 1]

    words = next(text.split() for text in SENTENCES if len(text.split()) >= 6 and one_piece_words(text.split()))
    target = one_piece_words(words)[-1]
    target_id = roberta.tokenize([" " + target]).to_list()[0][0]

    def span_model(packed, training=False):
        peak = tf.cast(tf.equal(packed["token_ids"], target_id), tf.float32) * 10.0
        return {"start_logits": peak, "end_logits": peak}

    answer = qa_signature(span_model, roberta, ServingSettings(sequence_length=40))[0].function
    result = answer(tf.constant(["what is it?"]), tf.constant([" ".join(words)]))
    assert result["answer"].numpy()[0].decode() == target
    assert result["answer_start"].numpy()[0] == words.index(target)
