"""kzoo greedy and beam search reproduce `transformers`' `generate` on imported checkpoints.

Random tiny GPT-2, T5, BART and Marian models are built with `transformers`
(tests/convert/hf_fixtures.py, seq2seq_fixtures.py), imported with `kzoo.convert.from_huggingface`, and
both libraries decode the same batch of prompts of different lengths (left-padded
for GPT-2, right-padded encoder inputs for T5/BART/Marian; Marian's decoder starts from
its pad id and adds its non-zero `final_logits_bias`) with the same settings. The
stop token is one that the free-running greedy output contains, so stopping, the
minimum length and beam hypotheses that end are exercised. Outputs are compared up
to and including each row's stop token (`transformers` fills beam outputs with
eos rather than pad when pad_id is 0).
"""

import numpy as np
import pytest
import torch

from kzoo.convert.huggingface import from_huggingface
from kzoo.generate import generate
from kzoo.generate.inputs import cut_at_stop
from tests.convert import hf_fixtures, seq2seq_fixtures

pytestmark = pytest.mark.slow

PROMPTS = [[5, 17, 33, 2, 9, 11], [7, 8], [100, 3, 4, 90]]
NEW_TOKENS = 8
BEAM_SETTINGS = {
    "gpt2": dict(num_beams=3, length_penalty=0.5, early_stopping=True, min_new_tokens=3),
    "t5": dict(num_beams=4, length_penalty=2.0, early_stopping="never", min_new_tokens=2),
    "bart": dict(num_beams=3, length_penalty=1.0, early_stopping=False, min_new_tokens=0),
    "marian": dict(num_beams=3, length_penalty=0.7, early_stopping=True, min_new_tokens=1),
}


def _padded(rows, pad, side):
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad)
    mask = np.zeros((len(rows), width), "int64")
    for index, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[index, span], mask[index, span] = row, 1
    return torch.tensor(ids), torch.tensor(mask)


def _hf_generate(reference, design, pad, **settings):
    ids, mask = _padded(PROMPTS, pad, "left" if design == "gpt2" else "right")
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=pad,
                                 max_new_tokens=NEW_TOKENS, **settings)
    return out[:, ids.shape[1]:].numpy() if design == "gpt2" else out[:, 1:].numpy()  # drop prompt / start


def _rows(tokens, stop):
    return [cut_at_stop(row, (stop,)).tolist() for row in np.asarray(tokens)]


# The decoding loop is backend-neutral keras.ops, and under JAX the T5 and BART decoders are
# checked against their plain forward pass in test_decoding; only GPT-2 runs under both
# backends, to keep the JAX run of CI short (building each imported model costs seconds there).
TF_ONLY = pytest.mark.backend("tensorflow", reason="the decoding loop is the same keras.ops under JAX, where the gpt2 "
                                                   "design runs it")


@pytest.mark.parametrize("design", ["gpt2", pytest.param("t5", marks=TF_ONLY), pytest.param("bart", marks=TF_ONLY),
                                    pytest.param("marian", marks=TF_ONLY)])
def test_greedy_and_beam_match_transformers(tmp_path, design):
    if design == "gpt2":
        directory, reference = hf_fixtures.make_gpt2(tmp_path)
        pad, start = 0, None
    elif design == "t5":
        directory, reference = hf_fixtures.make_t5(tmp_path)
        pad, start = 0, 0
    elif design == "bart":
        directory, reference = hf_fixtures.make_bart(tmp_path)
        pad, start = 1, 2
    else:
        directory, reference = seq2seq_fixtures.make_marian(tmp_path)
        pad = start = seq2seq_fixtures.MARIAN_PAD
    reference.generation_config.forced_eos_token_id = None  # BART/Marian force eos at max length; kzoo does not
    reference.generation_config.eos_token_id = None
    model = from_huggingface(directory).model
    free = _hf_generate(reference, design, pad)
    stop = int(free[1, 3])  # a token the greedy output emits
    kzoo_options = dict(pad_id=pad, max_new_tokens=NEW_TOKENS, stop_token_ids=[stop], jit_compile=False)
    if start is not None:
        kzoo_options["decoder_start_id"] = start

    want = _hf_generate(reference, design, pad, eos_token_id=stop, min_new_tokens=2)
    got = generate(model, PROMPTS, min_length=2, **kzoo_options)
    assert _rows(got, stop) == _rows(want, stop)
    assert any(stop in row for row in _rows(got, stop))  # some row stopped

    settings = dict(BEAM_SETTINGS[design])
    min_new = settings.pop("min_new_tokens")
    want = _hf_generate(reference, design, pad, eos_token_id=stop, min_new_tokens=min_new, **settings)
    got = generate(model, PROMPTS, strategy="beam", min_length=min_new, **settings, **kzoo_options)
    assert _rows(got, stop) == _rows(want, stop)
