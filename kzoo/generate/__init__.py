"""kzoo.generate: text generation for `GPTCausalLM` and `Seq2SeqLM`, compiled, with a KV cache.

## Generation

`generate(model, inputs, **options)` (also `model.generate(inputs, **options)`)
continues each prompt of a `GPTCausalLM`, or decodes from each prompt of a
`Seq2SeqLM`, in one compiled loop with a KV cache.

```python
from kzoo import models
from kzoo.generate import generate

model = models.GPTCausalLM(models.from_preset("gpt_test", dropout=0.0))
ids = generate(model, [[5, 6, 7], [8, 9]], max_new_tokens=16)                # int32 (2, n): new tokens
ids = model.generate([[5, 6, 7]], strategy="top_p", top_p=0.9, seed=1)        # the same, as a method
text = model.generate(["Hello"], tokenizer=tokenizer, strategy="beam", num_beams=4)  # list of str
```

| option | default | meaning |
|---|---|---|
| `strategy` | `"greedy"` | `"greedy"`, `"sample"` (whole distribution), `"top_k"`, `"top_p"`, `"beam"` |
| `max_new_tokens` | 32 | new tokens per prompt at most |
| `temperature` | 1.0 | divides the logits before sampling (sampling strategies only) |
| `top_k` | 50 for `"top_k"` | sample among the k likeliest; with `"top_p"`, an optional cut first |
| `top_p` | 0.9 for `"top_p"` | sample from the smallest set of likeliest tokens whose probability reaches p |
| `num_beams` | 1 | beams per prompt (`"beam"`) |
| `length_penalty` | 1.0 | beam hypotheses score `sum log p / new_tokens ** length_penalty` |
| `early_stopping` | False | beam stopping rule: True, False or "never" (as in `transformers`) |
| `repetition_penalty` | 1.0 | > 1 discourages tokens already in the prompt or output (CTRL) |
| `stop_token_ids` | tokenizer's eos, else none | a row ends after emitting one of them |
| `min_length` | 0 | new tokens before a stop token may be emitted |
| `seed` | None | sampling seed: same seed, same backend -> same tokens |
| `pad_id` | tokenizer's pad, else 0 | fills rows after they stop; pads prompts |
| `decoder_start_id` | `pad_id` | first decoder token of a `Seq2SeqLM` (T5: 0; BART checkpoints: 2) |
| `use_cache` | True | False recomputes the whole prefix each step (a slow reference) |
| `jit_compile` | True | XLA under TensorFlow (JAX always uses `jax.jit`) |

Inputs and outputs. Prompts are text (with `tokenizer=`, a `kzoo.text` tokenizer),
ragged id lists (or a `tf.RaggedTensor`), a 2-D id array with `padding_mask=`
(padding on either side), a dict like the model's inputs, or one 1-D id list. The
result holds the NEW tokens only: an int32 array `(b, n)`, `n` the longest output,
each row padded with `pad_id` after its stop token (which is kept); `(n,)` for one
1-D prompt. With a tokenizer it is the new text (list of str, or one str), cut
before the stop token. Text prompts of a causal LM get the tokenizer's prefix
(e.g. BOS) but no end token; seq2seq prompts get its full packing (T5: `</s>`).

Batches of different lengths. Causal prompts are LEFT-padded to a common length:
one prefill pass over the batch fills the KV cache and all rows then advance one
token per step together. Padded slots are masked out of attention and learned
position embeddings count positions from each row's first real token, so a padded
row gives the tokens it would give alone (rotary attention depends only on position
offsets, which padding does not change). Seq2seq prompts are right-padded for the
encoder; the decoder starts from `decoder_start_id`.

Compilation. Prefill plus a `while_loop` of one-token steps is one compiled
function: a `tf.function` with XLA under TensorFlow (`jit_compile=False`: graph mode
without XLA), `jax.jit` under JAX (weights passed as arguments, not baked in). No
Python runs per token. Compiled functions are cached on the model per (batch size,
prompt length, options): repeated calls with the same shapes do not retrace; a new
prompt length compiles once more (pad prompts to a few fixed lengths to bound this).

Beam search reorders the KV cache rows to follow the surviving beams each step and
follows `transformers`' scoring: log-softmax, processors applied to the
log-probabilities, finished hypotheses scored `sum log p / new_tokens **
length_penalty`, `early_stopping` as there. On imported GPT-2, T5 and BART
checkpoints, kzoo's greedy and beam outputs equal `transformers`' `generate` with the
same settings (tests/generate/test_hf_parity.py).

Command line:

```bash
kzoo generate gpt2.keras --tokenizer vocab.json merges.txt --prompt "Hello" --max-new-tokens 20
kzoo generate t5.keras --tokenizer spiece.model --prompt "translate English to German: Hi" \\
    --strategy beam --num-beams 4
kzoo generate tiny.keras --ids "5 6 7" --ids "8 9" --strategy top_p --top-p 0.9 --seed 1 --json
```

`tools/bench_generate.py` measures greedy tokens/s against keras-hub and
`transformers` (`--quick` for a seconds-long check).

Limits and choices:
  * Context: with learned positions, the longest prompt plus `max_new_tokens` must
    fit `max_sequence_length` (ValueError otherwise, saying what to shorten).
  * `repetition_penalty` counts the real prompt tokens (not left padding, which
    `transformers` counts) and, for seq2seq, the decoder start token (as
    `transformers` does).
  * Sampling is reproducible per backend: TensorFlow and JAX draw different numbers
    from one seed.
  * Full-distribution and top-k sampling use the keras-hub samplers (with a stateless
    per-step seed); greedy is an argmax of the raw scores; top-p is kzoo's own
    (keras-hub's `TopPSampler` keeps one token past the minimal nucleus at ties);
    beam search is kzoo's own, to match `transformers`.
  * Errors: an empty prompt, a prompt too long for the context, `top_p` outside
    (0, 1], `top_k < 1`, `num_beams < 1` (or > 1 without `strategy="beam"`), an
    unknown strategy, `temperature <= 0` and other bad values raise `ValueError`
    naming the argument and the fix, before anything is compiled.

Modules: `api` (`generate`), `options` (argument checks), `inputs` (prompt packing,
result unpacking), `adapters` (the `DecodingAdapter` a model supplies through its
`decoding_adapter()`: prefill, step and beam reorder; each family's lives beside its
model, in `kzoo/models/*/decoding.py`, so kzoo.generate imports no model code), `processors`
(repetition penalty, minimum length), `sampling` (token choice), `beam` (beam
search), `loop` (the while loop), `compile` (tf.function / jax.jit and the cache).
The `kzoo generate` command is `kzoo.cli.generate`.
"""

from kzoo.generate.options import STRATEGIES, GenerationOptions

__all__ = ["STRATEGIES", "DecodingAdapter", "GenerationOptions", "generate"]


def __getattr__(name):
    # `generate` and `DecodingAdapter` are imported on first use, so that `kzoo --help` and
    # the `kzoo generate` parser load neither Keras nor keras-hub.
    if name == "generate":
        from kzoo.generate.api import generate

        return generate
    if name == "DecodingAdapter":
        from kzoo.generate.adapters import DecodingAdapter

        return DecodingAdapter
    raise AttributeError(f"module 'kzoo.generate' has no attribute {name!r}")
