"""kzoo token ids EQUAL the reference tokenizers' ids on the same vocabulary files (no tolerance: exact lists).

References: transformers.BertTokenizerFast (uncased and cased), transformers.GPT2TokenizerFast, and
sentencepiece.SentencePieceProcessor. All vocabularies are trained in tests/text/conftest.py.
"""

import pytest
import sentencepiece
import transformers

from tests.text.sentences import FIXED, KNOWN_DIFFERENCES, sentences

SENTENCES = sentences(300)


def _mismatches(ours, reference_ids):
    return [(s, r, o) for s, r, o in zip(SENTENCES, reference_ids, ours, strict=True) if r != o]


@pytest.fixture(scope="module")
def hf_bert(vocab_files):
    def build(name, lowercase):
        # transformers 5 reads the vocabulary from `vocab=` (a `vocab_file=` keyword is silently ignored).
        reference = transformers.BertTokenizerFast(vocab=str(vocab_files[name]), do_lower_case=lowercase)
        assert reference.vocab_size > 100  # the file really was loaded
        return reference

    return {"uncased": build("uncased", True), "cased": build("cased", False)}


@pytest.fixture(scope="module")
def hf_gpt2(vocab_files):
    reference = transformers.GPT2TokenizerFast(vocab=str(vocab_files["vocab_json"]), merges=str(vocab_files["merges"]))
    assert reference.vocab_size > 300
    return reference


@pytest.fixture(scope="module")
def sp_t5(vocab_files):
    return sentencepiece.SentencePieceProcessor(model_file=str(vocab_files["spiece"]))


@pytest.mark.parametrize("casing", ["uncased", "cased"])
def test_wordpiece_ids_equal_bert_tokenizer_fast(casing, hf_bert, bert_uncased, bert_cased):
    reference = hf_bert[casing]
    tokenizer = bert_uncased if casing == "uncased" else bert_cased
    ours = tokenizer.tokenize(SENTENCES).to_list()
    expected = [reference(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert _mismatches(ours, expected) == []
    # The parity is on real pieces: the edge cases' characters are in the vocabulary, so [UNK] is rare.
    flat = [i for row in ours for i in row]
    assert flat.count(tokenizer.special_token_ids["unk"]) < 0.02 * len(flat)


def test_wordpiece_detokenize_equals_bert_decode(hf_bert, bert_uncased):
    ids = bert_uncased.tokenize(SENTENCES).to_list()
    ours = [t.decode("utf-8") for t in bert_uncased.detokenize(ids).numpy()]
    expected = [hf_bert["uncased"].decode(row, clean_up_tokenization_spaces=False) for row in ids]
    assert ours == expected


def test_bpe_ids_equal_gpt2_tokenizer_fast(hf_gpt2, gpt2):
    ours = gpt2.tokenize(SENTENCES).to_list()
    expected = [hf_gpt2(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    assert _mismatches(ours, expected) == []


def test_bpe_detokenize_round_trips_exactly(gpt2):
    # Byte-level BPE is lossless: every sentence comes back byte for byte.
    texts = gpt2.detokenize(gpt2.tokenize(SENTENCES)).numpy()
    assert [t.decode("utf-8") for t in texts] == SENTENCES


def test_sentencepiece_ids_equal_sentencepiece_processor(sp_t5, t5):
    ours = t5.tokenize(SENTENCES).to_list()
    assert _mismatches(ours, sp_t5.encode(SENTENCES)) == []


def test_sentencepiece_detokenize_equals_processor_decode(sp_t5, t5):
    ids = t5.tokenize(SENTENCES).to_list()
    assert [t.decode("utf-8") for t in t5.detokenize(ids).numpy()] == sp_t5.decode(ids)


def test_bert_encode_equals_reference_padding_and_truncation(hf_bert, bert_uncased):
    # sequence_length 12 truncates most sentences and pads the short ones; both tokenizers cut at the end.
    ours = bert_uncased.encode(SENTENCES, sequence_length=12)
    expected = hf_bert["uncased"](SENTENCES, max_length=12, truncation=True, padding="max_length")
    assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
    assert ours["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]


@pytest.mark.parametrize("sequence_length", [5, 8, 16, 33])
def test_bert_encode_pair_equals_reference_longest_first(hf_bert, bert_uncased, sequence_length):
    first, second = SENTENCES[:150], SENTENCES[150:]
    ours = bert_uncased.encode_pair(first, second, sequence_length=sequence_length)
    expected = hf_bert["uncased"](
        first, second, max_length=sequence_length, truncation="longest_first", padding="max_length"
    )
    assert ours["token_ids"].numpy().tolist() == expected["input_ids"]
    assert ours["segment_ids"].numpy().tolist() == expected["token_type_ids"]
    assert ours["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]


def test_sentences_cover_the_edge_cases():
    joined = "".join(SENTENCES)
    assert len(SENTENCES) == 300 and SENTENCES[: len(FIXED)] == FIXED
    for piece in ["café", "Ångström", "日本語", "中文", "🙂", "\t", "\n", "  ", "https://", "'", "\u00a0", ""]:
        assert piece in joined
    assert "" in SENTENCES and any(len(s) > 100 for s in SENTENCES)


def test_known_difference_bpe_drops_nul_characters(hf_gpt2, gpt2):
    """GPT-2 encodes U+0000 as the byte token "Ā"; kzoo removes it. Reason: tensorflow-text's regex_split, which
    keras-hub's BPE pre-split uses, silently drops everything after a NUL in its chunk ("a\\x00b" -> "a"), so
    kzoo removes the NULs and keeps the rest of the text. The ids equal GPT-2's on the text without NULs."""
    for sentence in KNOWN_DIFFERENCES["bpe_nul"]:
        ours = gpt2.tokenize(sentence).numpy().tolist()
        assert ours != hf_gpt2(sentence)["input_ids"]
        assert ours == hf_gpt2(sentence.replace("\x00", ""))["input_ids"]


def test_wordpiece_drops_nul_like_bert(hf_bert, bert_uncased):
    sentences_with_nul = ["\x00nul", "a\x00b", "x \x00 y"]
    expected = [hf_bert["uncased"](s, add_special_tokens=False)["input_ids"] for s in sentences_with_nul]
    assert bert_uncased.tokenize(sentences_with_nul).to_list() == expected


def test_known_difference_special_token_text_stays_text(hf_bert, hf_gpt2, bert_uncased, gpt2):
    """Hugging Face matches special-token strings typed in the text ("[SEP]", "<|endoftext|>") and emits the
    special id; kzoo tokenizes them as plain text (by design: user text cannot inject control tokens). With
    `split_special_tokens=True` Hugging Face does the same as kzoo."""
    bert_text, gpt2_text = "a [SEP] b", "a<|endoftext|>b"
    assert hf_bert["uncased"](bert_text, add_special_tokens=False)["input_ids"] == [
        bert_uncased.token_to_id("a"),
        bert_uncased.special_token_ids["sep"],
        bert_uncased.token_to_id("b"),
    ]
    assert bert_uncased.special_token_ids["sep"] not in bert_uncased.tokenize(bert_text).numpy().tolist()
    assert gpt2.special_token_ids["eos"] in hf_gpt2(gpt2_text)["input_ids"]
    assert gpt2.special_token_ids["eos"] not in gpt2.tokenize(gpt2_text).numpy().tolist()
    split = {"split_special_tokens": True, "add_special_tokens": False}
    assert bert_uncased.tokenize(bert_text).numpy().tolist() == hf_bert["uncased"](bert_text, **split)["input_ids"]
    assert gpt2.tokenize(gpt2_text).numpy().tolist() == hf_gpt2(gpt2_text, **split)["input_ids"]


def test_bpe_words_up_to_the_length_limit_equal_gpt2(hf_gpt2, gpt2):
    """Pre-split words of up to MAX_WORD_BYTES bytes (a leading space included) get exactly GPT-2's ids, however
    many of them a text holds."""
    from kzoo.text.bpe import MAX_WORD_BYTES

    limit = MAX_WORD_BYTES - 1  # room for the space GPT-2's pre-split keeps in front of a word
    words = ["a" * limit, "x" + "ab" * ((limit - 1) // 2), "é" * (limit // 2), "日本" * (limit // 6)]
    texts = [" ".join(words), "a" * MAX_WORD_BYTES + "!", words[2] + " " + words[3]]
    assert gpt2.tokenize(texts).to_list() == [hf_gpt2(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_known_difference_bpe_merges_longer_words_in_pieces(hf_gpt2, gpt2):
    """A word longer than MAX_WORD_BYTES is merged in pieces of that many bytes (the cost stays linear in its
    length): its ids are GPT-2's ids of each piece, in order, and detokenize gives the word back."""
    from kzoo.text.bpe import MAX_WORD_BYTES

    word = "ab" * MAX_WORD_BYTES + "c"
    spaced = " " + word  # GPT-2's pre-split word: 2.5 pieces
    pieces = [spaced[i : i + MAX_WORD_BYTES] for i in range(0, len(spaced), MAX_WORD_BYTES)]
    expected = [i for piece in pieces for i in hf_gpt2(piece, add_special_tokens=False)["input_ids"]]
    ours = gpt2.tokenize(["x " + word + " y"]).to_list()[0]
    x, y = (hf_gpt2(t, add_special_tokens=False)["input_ids"] for t in ("x", " y"))
    assert ours == x + expected + y
    assert gpt2.detokenize([ours]).numpy().tolist() == [("x " + word + " y").encode()]
