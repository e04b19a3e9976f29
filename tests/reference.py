"""Independent NumPy implementations of the formulas kzoo.layers implements.

Written from the papers' equations with plain loops and float64 where that keeps them
obviously right; they share no code with kzoo.
"""

import math

import numpy as np

NEG = -1e9


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu}


def layer_norm(x, scale, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * scale + (0.0 if bias is None else bias)


def rms_norm(x, scale, epsilon):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + epsilon) * scale


def attention(q_in, kv_in, wq, wk, wv, wo, bq=None, bk=None, bv=None, bo=None, scale=None,
              mask=None, bias=None, rotate=None):
    """Per-head loop of softmax(scale * Q K^T + bias + mask) V, then the output projection.

    q_in (b, s, d), kv_in (b, t, e); wq (d, h, k); wo (h, k, o); mask (b, s, t) bool;
    bias (1 or b, h, s, t); rotate: function (x (s, k), positions) -> rotated x.
    Returns (outputs (b, s, o), probabilities (b, h, s, t)).
    """
    b, s, _ = q_in.shape
    t = kv_in.shape[1]
    h, k = wq.shape[1], wq.shape[2]
    scale = 1.0 / math.sqrt(k) if scale is None else scale
    out = np.zeros((b, s, wo.shape[-1]))
    probs = np.zeros((b, h, s, t))
    for bi in range(b):
        for hi in range(h):
            q = q_in[bi] @ wq[:, hi, :] + (0 if bq is None else bq[hi])
            key = kv_in[bi] @ wk[:, hi, :] + (0 if bk is None else bk[hi])
            v = kv_in[bi] @ wv[:, hi, :] + (0 if bv is None else bv[hi])
            if rotate is not None:
                q, key = rotate(q, np.arange(s)), rotate(key, np.arange(t))
            logits = scale * q @ key.T
            if bias is not None:
                logits = logits + bias[min(bi, bias.shape[0] - 1), hi]
            if mask is not None:
                logits = np.where(mask[bi], logits, NEG)
            p = softmax(logits)
            if mask is not None:  # a query with no visible key attends to nothing
                p = np.where(mask[bi], p, 0.0)
            probs[bi, hi] = p
            out[bi] += (p @ v) @ wo[hi]
    if bo is not None:
        out += bo
    return out, probs


def padding_and_causal_mask(padding, s, t, causal):
    """padding (b, t) of 0/1 -> bool (b, s, t)."""
    b = padding.shape[0]
    mask = np.ones((b, s, t), bool) & padding.astype(bool)[:, None, :]
    if causal:
        mask &= np.tril(np.ones((s, t), bool))[None]
    return mask


def sinusoidal(length, dim, start=0, base=10000.0):
    """PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d))."""
    pe = np.zeros((length, dim))
    for p in range(length):
        for i in range(dim // 2):
            angle = (p + start) / base ** (2 * i / dim)
            pe[p, 2 * i] = math.sin(angle)
            pe[p, 2 * i + 1] = math.cos(angle)
    return pe


def rotary(x, positions, base=10000.0, rotary_dim=None, interleaved=False):
    """RoPE via complex multiplication. x (s, k) -> (s, k)."""
    k = x.shape[-1]
    r = rotary_dim or k
    out = x.astype(np.float64).copy()
    for si, p in enumerate(positions):
        for i in range(r // 2):
            theta = p / base ** (2 * i / r)
            a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + r // 2)
            z = complex(x[si, a], x[si, b]) * complex(math.cos(theta), math.sin(theta))
            out[si, a], out[si, b] = z.real, z.imag
    return out


def t5_bucket(offset, bidirectional, num_buckets, max_distance):
    """T5's relative_position_bucket for one int offset (key - query)."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if offset > 0:
            bucket += num_buckets
        n = abs(offset)
    else:
        n = max(-offset, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(
        math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    )
    return bucket + min(large, num_buckets - 1)


def feed_forward(x, activation, w_up, b_up, w_down, b_down, w_gate=None, b_gate=None):
    act = ACTIVATIONS[activation]
    up = x @ w_up + (0 if b_up is None else b_up)
    if w_gate is not None:
        hidden = act(x @ w_gate + (0 if b_gate is None else b_gate)) * up
    else:
        hidden = act(up)
    return hidden @ w_down + (0 if b_down is None else b_down)
