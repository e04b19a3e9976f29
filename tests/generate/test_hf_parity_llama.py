"""kzoo greedy and beam search reproduce `transformers`' `generate` on imported Llama-family checkpoints.

Set up as tests/generate/test_hf_parity.py does for GPT-2: left-padded prompts of different lengths, the stop
token one that the free-running greedy output emits, rows compared up to their stop token. The designs
(tests/convert/llama_fixtures.py) are the Llama decoder with grouped-query attention and an untied head under
each `rope_scaling` kind (dynamic NTK with an 8-token context, which prompts of 6 plus 8 new tokens pass, so its
frequencies change during decoding while the cache keeps the keys rotated before), and Mistral, whose 4-key
sliding window the cache must apply as well.

Under TensorFlow the decoding loop runs eagerly here (`tf.config.run_functions_eagerly`): the same keras.ops
code, without the seconds of tracing per model and strategy that five models would cost CI. The traced loop is
checked against the plain forward pass in test_decoding, against transformers for GPT-2 in test_hf_parity, and
traced for a Llama-style model by the exports in tests/export/test_llama_export.py.
"""

import pytest
import torch

from kzoo.convert.huggingface import from_huggingface
from tests.convert import llama_fixtures
from tests.generate.test_hf_parity import _padded, _rows
from tests.harness import tensorflow_functions_run_eagerly

pytestmark = pytest.mark.slow

PROMPTS = [[5, 17, 33, 2, 9, 11], [7, 8], [80, 3, 4, 60]]
NEW_TOKENS = 8
BEAM = dict(num_beams=3, length_penalty=0.5, early_stopping=True)
# Under JAX only the dynamic design runs (the one whose decoding differs most from a plain forward pass).
TF_ONLY = pytest.mark.backend("tensorflow", reason="the decoding loop is the same keras.ops under JAX, where the "
                                                   "llama_dynamic design runs it")
DESIGNS = [pytest.param(name, marks=() if name == "llama_dynamic" else TF_ONLY)
           for name in ("llama_linear", "llama_dynamic", "llama_llama3", "llama_yarn", "mistral")]


@pytest.fixture
def eager_decoding():
    """Runs `kzoo.generate`'s compiled loop eagerly inside the test under TensorFlow (under JAX, jit is the
    quicker way)."""
    with tensorflow_functions_run_eagerly():
        yield


def _hf_generate(reference, pad, **settings):
    ids, mask = _padded(PROMPTS, pad, "left")
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=pad,
                                 max_new_tokens=NEW_TOKENS, **settings)
    return out[:, ids.shape[1]:].numpy()


@pytest.mark.parametrize("design", DESIGNS)
def test_greedy_and_beam_match_transformers(tmp_path, design, eager_decoding):
    directory, reference, _ = llama_fixtures.make(design, tmp_path)
    reference.generation_config.eos_token_id = None
    reference.generation_config.bos_token_id = None
    model = from_huggingface(directory).model
    pad = 0
    free = _hf_generate(reference, pad)
    assert len(set(free.ravel().tolist())) > 3  # varied tokens
    stop = int(free[1, 3])  # a token the greedy output emits
    options = dict(pad_id=pad, max_new_tokens=NEW_TOKENS, stop_token_ids=[stop], jit_compile=False)

    want = _hf_generate(reference, pad, eos_token_id=stop, min_new_tokens=2)
    got = model.generate(PROMPTS, min_length=2, **options)
    assert _rows(got, stop) == _rows(want, stop)
    assert any(stop in row for row in _rows(got, stop))  # some row stopped

    want = _hf_generate(reference, pad, eos_token_id=stop, min_new_tokens=3, **BEAM)
    got = model.generate(PROMPTS, strategy="beam", min_length=3, **BEAM, **options)
    assert _rows(got, stop) == _rows(want, stop)
