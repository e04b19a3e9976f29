"""Bad arguments raise ValueError naming the argument and the fix, before anything compiles."""

import numpy as np
import pytest

from kzoo.generate import DecodingAdapter, generate
from kzoo.generate.adapters import adapter_for
from tests.generate import helpers

BAD_OPTIONS = [
    (dict(strategy="nucleus"), r"unknown strategy='nucleus'; use one of 'greedy', 'sample'"),
    (dict(strategy="top_p", top_p=0.0), r"top_p must lie in \(0, 1\], got 0.0"),
    (dict(strategy="top_p", top_p=1.5), r"top_p must lie in \(0, 1\], got 1.5"),
    (dict(strategy="top_k", top_k=0), r"top_k must be an integer >= 1, got 0; top_k=1 is greedy"),
    (dict(strategy="top_k", top_k=1000), r"top_k=1000 exceeds the vocabulary size 61"),
    (dict(strategy="beam", num_beams=0), r"num_beams must be an integer >= 1, got 0"),
    (dict(num_beams=4), r"num_beams=4 only applies to strategy='beam'"),
    (dict(strategy="sample", temperature=0.0), r"temperature must be a number > 0, got 0.0"),
    (dict(temperature=-1), r"temperature must be a number > 0"),
    (dict(max_new_tokens=0), r"max_new_tokens must be a positive integer, got 0"),
    (dict(repetition_penalty=0), r"repetition_penalty must be a number > 0"),
    (dict(min_length=-1), r"min_length \(minimum new tokens before a stop token\) must be an integer >= 0"),
    (dict(early_stopping="sometimes"), r"early_stopping must be True, False or 'never'"),
    (dict(stop_token_ids=[61]), r"stop_token_ids must be token ids in \[0, 61\)"),
    (dict(pad_id=-1), r"pad_id must be a token id in \[0, 61\)"),
    (dict(seed=1.5), r"seed must be an int or None"),
]
BAD_PROMPTS = [
    ([[1, 2], []], r"prompt 1 is empty \(no real tokens\).*start an unconditional causal LM from its BOS"),
    ([], r"the prompt batch is empty; pass at least one prompt"),
    ({"token_ids": np.array([[1, 2]]), "padding_mask": np.array([[0, 0]])}, r"prompt 0 is empty"),
    ([[1, 99]], r"prompt 0 has ids outside \[0, 61\) \(min 1, max 99\)"),
    ("some text", r"got text prompts but no tokenizer; pass tokenizer="),
    (np.ones((2, 3, 4), "int32"), r"token ids must be 1-D \(one prompt\) or 2-D"),
]


def test_bad_options(gpt):
    for options, message in BAD_OPTIONS:  # one test: each case is cheap, a test's teardown is not
        with pytest.raises(ValueError, match=message):
            generate(gpt, [[1, 2, 3]], **options)


def test_bad_prompts(gpt):
    for prompts, message in BAD_PROMPTS:
        with pytest.raises(ValueError, match=message):
            generate(gpt, prompts)


def test_prompt_longer_than_the_context(gpt):
    with pytest.raises(
        ValueError,
        match=r"a prompt of 30 tokens plus max_new_tokens=8 exceeds the model's context of max_sequence_length=32 "
        r"learned positions; shorten the prompt to at most 24 tokens or lower max_new_tokens to 2",
    ):
        generate(gpt, [list(range(1, 31))], max_new_tokens=8)
    with pytest.raises(ValueError, match=r"lower max_new_tokens below 32"):
        generate(gpt, [[1]], max_new_tokens=40)


def test_seq2seq_limits_and_non_generative_models():
    model = helpers.tiny_seq2seq("bart")  # learned positions: 32
    with pytest.raises(ValueError, match=r"an encoder prompt of 40 tokens exceeds the model's max_sequence_length=32"):
        generate(model, [list(range(1, 41))])
    with pytest.raises(ValueError, match=r"max_new_tokens=32 plus the decoder start token exceeds"):
        generate(model, [[1, 2]], max_new_tokens=32)
    with pytest.raises(ValueError, match=r"GPTBackbone is not a generative kzoo model"):
        generate(helpers.tiny_gpt().backbone, [[1, 2]])


def test_models_supply_their_decoding_adapters():
    """kzoo.generate knows no model class: each task hands it a `DecodingAdapter` of its family."""
    for model, family in ((helpers.tiny_gpt(), "causal"), (helpers.tiny_seq2seq("bart"), "seq2seq")):
        adapter = adapter_for(model)
        assert isinstance(adapter, DecodingAdapter) and adapter.family == family and adapter.model is model
