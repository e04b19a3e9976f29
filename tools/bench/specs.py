"""Benchmark configurations (model sizes, batch, sequence) and the FLOP count per token.

FLOPs per token (training: forward + backward) = 6 * N + 12 * L * H * Q * T
(Kaplan et al. 2020 / PaLM appendix B / nanoGPT's `estimate_mfu`), with L layers, H
heads, Q head dim, T sequence length; the attention term counts the full T x T score
and context matmuls (no causal discount). Which N:

* GPT causal LM: N = non-embedding parameters (decoder blocks + final norm) + the
  output projection V * d. The projection reuses the token-embedding table (tied) but
  is a real matmul on every token, so it is counted; the token and position lookups
  are not.
* BERT MLM: N = encoder non-embedding parameters (blocks + embedding norm) +
  (P / T) * head parameters, where the head (dense d x d, norm, output projection
  V * d with its bias) runs only on the P masked positions of each sequence of T.
  The pooler and the NSP head (one position per sequence) are left out.

Tokens per step = batch * T (input tokens) for both.
"""

import dataclasses
import math

FORMULA = "FLOPs/token = 6*N + 12*L*H*Q*T (forward + backward)"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmarked configuration."""

    name: str
    family: str  # "gpt" (causal LM) or "bert" (masked LM)
    vocabulary_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    max_sequence_length: int
    batch_size: int
    sequence_length: int
    mask_predictions: int = 0  # BERT: masked positions per sequence (P)

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    @property
    def tokens_per_step(self):
        return self.batch_size * self.sequence_length

    def to_dict(self):
        return dataclasses.asdict(self)


def _gpt(name, vocabulary_size, layers, heads, hidden, batch, sequence, max_sequence_length=None):
    return ModelSpec(name, "gpt", vocabulary_size, layers, heads, hidden, 4 * hidden,
                     max_sequence_length or sequence, batch, sequence)


def _bert(name, vocabulary_size, layers, heads, hidden, batch, sequence, max_sequence_length=512):
    predictions = math.ceil(0.15 * sequence)  # 20 for 128, BERT's max_predictions_per_seq
    return ModelSpec(name, "bert", vocabulary_size, layers, heads, hidden, 4 * hidden,
                     max_sequence_length, batch, sequence, predictions)


# size set -> model family -> spec
SIZE_SETS = {
    "gpu": {
        "gpt": _gpt("gpt2_small", 50257, 12, 12, 768, batch=16, sequence=1024),
        "bert": _bert("bert_base", 30522, 12, 12, 768, batch=64, sequence=128),
    },
    "cpu": {
        # kzoo's gpt_tiny preset sizes (2 layers, 128 wide, 2048 tokens) at 8 x 128.
        "gpt": _gpt("gpt_tiny", 2048, 2, 4, 128, batch=8, sequence=128, max_sequence_length=256),
        # BERT-tiny (Turc et al.: L-2 H-128, 2 heads, uncased 30522 vocabulary) at 16 x 128.
        "bert": _bert("bert_tiny", 30522, 2, 2, 128, batch=16, sequence=128),
    },
    "quick": {
        "gpt": _gpt("gpt_test", 128, 2, 2, 32, batch=2, sequence=32, max_sequence_length=64),
        "bert": _bert("bert_test", 128, 2, 2, 32, batch=2, sequence=32, max_sequence_length=64),
    },
}

# size set -> (warm-up steps, timed steps)
DEFAULT_STEPS = {"gpu": (10, 50), "cpu": (5, 30), "quick": (2, 3)}


def parameter_counts(spec):
    """The parameter counts the FLOP formula uses (see the module docstring)."""
    d, f, v, layers = spec.hidden_dim, spec.intermediate_dim, spec.vocabulary_size, spec.num_layers
    attention = 4 * d * d + 4 * d  # q, k, v, output projections with biases
    mlp = 2 * d * f + f + d
    norms = 4 * d  # two LayerNorms (scale + bias)
    blocks = layers * (attention + mlp + norms)
    if spec.family == "gpt":
        non_embedding = blocks + 2 * d  # + final norm
        projection = v * d
        return {
            "non_embedding": non_embedding,
            "output_projection": projection,
            "N": non_embedding + projection,
            "N_description": "non-embedding params (blocks + final norm) + tied output projection V*d",
        }
    non_embedding = blocks + 2 * d  # + embedding norm
    head = d * d + d + 2 * d + v * d + v  # transform dense, norm, projection (tied) + bias
    fraction = spec.mask_predictions / spec.sequence_length
    return {
        "non_embedding": non_embedding,
        "mlm_head": head,
        "mlm_fraction": fraction,
        "N": non_embedding + fraction * head,
        "N_description": "encoder non-embedding params (blocks + embedding norm) + (P/T) * MLM head params "
                         "(dense d*d, norm, tied projection V*d + bias), P masked of T",
    }


def flops_per_token(spec):
    """Training FLOPs per input token: 6 N + 12 L H Q T."""
    n = parameter_counts(spec)["N"]
    attention = 12 * spec.num_layers * spec.num_heads * spec.head_dim * spec.sequence_length
    return 6 * n + attention


def describe(spec):
    """One line naming the config."""
    text = (f"{spec.name}: {spec.family.upper()} L={spec.num_layers} H={spec.num_heads} d={spec.hidden_dim} "
            f"ff={spec.intermediate_dim} V={spec.vocabulary_size}, batch {spec.batch_size} x T {spec.sequence_length}")
    if spec.family == "bert":
        text += f", P={spec.mask_predictions} masked positions"
    return text


def numpy_batch(spec, seed=0):
    """One random batch as NumPy arrays, the same for every peer.

    GPT: token_ids, padding_mask (all ones), targets (B, T), weights.
    BERT: token_ids, segment_ids (A for the first half, B for the second), padding_mask,
    mask_positions (P sorted distinct positions per row), mlm_targets (B, P), mlm_weights,
    nsp_labels (B,).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    b, t, v = spec.batch_size, spec.sequence_length, spec.vocabulary_size
    batch = {
        "token_ids": rng.integers(0, v, size=(b, t)).astype("int32"),
        "padding_mask": np.ones((b, t), "int32"),
    }
    if spec.family == "gpt":
        batch["targets"] = rng.integers(0, v, size=(b, t)).astype("int32")
        batch["weights"] = np.ones((b, t), "float32")
        return batch
    p = spec.mask_predictions
    batch["segment_ids"] = np.repeat((np.arange(t) >= t // 2)[None].astype("int32"), b, axis=0)
    batch["mask_positions"] = np.stack(
        [np.sort(rng.choice(np.arange(1, t), size=p, replace=False)) for _ in range(b)]).astype("int32")
    batch["mlm_targets"] = rng.integers(0, v, size=(b, p)).astype("int32")
    batch["mlm_weights"] = np.ones((b, p), "float32")
    batch["nsp_labels"] = rng.integers(0, 2, size=(b,)).astype("int32")
    return batch
