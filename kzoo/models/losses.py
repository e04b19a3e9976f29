"""Chunked ("fused") cross-entropy over a vocabulary projection, without the logits.

A causal LM's loss is usually computed from logits `(b, s, V)`: for GPT-2 small at
16 x 1024 tokens that is 16384 x 50304 values, 1.6 GB in bfloat16 and 3.3 GB once
upcast to float32 for the softmax, written, read back, and matched by a gradient of
the same size. `projected_cross_entropy` instead walks the tokens in chunks of
`chunk_size` rows: each chunk's logits are formed, reduced to the loss, turned into
that chunk's gradients (`dh = dz @ W^T`, `dW += h^T @ dz` with
`dz = softmax(z) - onehot(y)`, weighted), and dropped. Only `(chunk_size, V)`
values live at once, and the backward pass only scales the stored `dh`, `dW` by the
incoming gradient of the (scalar) loss, so the projection's matmuls run the same three
times as in the unfused form (forward, two gradients) and no logits are recomputed.
The same idea as Liger-Kernel's fused linear cross-entropy, written with `keras.ops`
so that it runs under TensorFlow and JAX.
"""

from keras import ops


def projected_cross_entropy(hidden, kernel, targets, weights, vocabulary_size, chunk_size=1024):
    """Weighted-mean cross-entropy of `hidden @ kernel` against `targets`, in chunks.

    Args:
        hidden: float `(..., d)` hidden states, in the compute dtype (any logits scale
            already applied).
        kernel: float `(d, R)` projection with `R >= vocabulary_size` columns (columns
            past `vocabulary_size` are padding and never predicted).
        targets: int `(...)` target ids in `[0, vocabulary_size)`.
        weights: float `(...)` per-token weights (0 for padding), or None for all ones.
        vocabulary_size: int, the number of real columns of `kernel`.
        chunk_size: int, tokens per chunk; a chunk holds `chunk_size x R` float32
            logits (206 MB for 1024 x 50304).

    Returns:
        `(loss, accuracy, total_weight)`, float32 scalars: `loss` is
        `sum(w * CE) / sum(w)` (0 when every weight is 0, as Keras'
        `mean_with_sample_weight`), `accuracy` the weighted share of tokens whose
        target has the highest logit (ties count as hits), `total_weight` is `sum(w)`.
        Gradients flow to `hidden` and `kernel`.
    """
    if chunk_size < 1:
        raise ValueError(f"projected_cross_entropy: chunk_size must be >= 1, got {chunk_size}.")
    depth, rows = kernel.shape[0], kernel.shape[1]
    hidden = ops.reshape(hidden, (-1, depth))  # (n, d)
    targets = ops.reshape(ops.cast(targets, "int32"), (-1,))
    weights = ops.ones_like(targets, "float32") if weights is None else ops.reshape(
        ops.cast(weights, "float32"), (-1,))
    count = ops.shape(hidden)[0]
    padding = (chunk_size - count % chunk_size) % chunk_size
    # Padded rows get weight 0: they add nothing to the loss or the gradients.
    hidden = ops.pad(hidden, [[0, padding], [0, 0]])
    targets = ops.pad(targets, [[0, padding]])
    weights = ops.pad(weights, [[0, padding]])
    chunks = (count + padding) // chunk_size
    column_bias = None
    if rows != vocabulary_size:  # padded vocabulary: -inf on the extra columns
        column_bias = ops.where(ops.arange(rows) < vocabulary_size, 0.0, float("-inf"))

    @ops.custom_gradient
    def sums(hidden, kernel):
        """(2,) float32: sum(w * CE), sum(w * hit), with the gradients of the first one."""

        def chunk_step(index, carry):
            loss_sum, hit_sum, hidden_gradient, kernel_gradient = carry
            first = index * chunk_size
            h = ops.slice(hidden, [first, 0], [chunk_size, depth])  # (c, d)
            y = ops.slice(targets, [first], [chunk_size])  # (c,)
            w = ops.slice(weights, [first], [chunk_size])  # (c,)
            logits = ops.cast(ops.matmul(h, kernel), "float32")  # (c, d) @ (d, R) -> (c, R)
            if column_bias is not None:
                logits = logits + column_bias
            peak = ops.max(logits, axis=-1, keepdims=True)  # (c, 1)
            log_sum = ops.log(ops.sum(ops.exp(logits - peak), axis=-1, keepdims=True)) + peak  # (c, 1)
            target_logit = ops.take_along_axis(logits, y[:, None], axis=-1)  # (c, 1)
            loss_sum = loss_sum + ops.sum(w * (log_sum - target_logit)[:, 0])
            hit_sum = hit_sum + ops.sum(w * ops.cast(target_logit[:, 0] >= peak[:, 0], "float32"))
            # d(sum w * CE)/dz = w * (softmax(z) - onehot(y)), in the compute dtype for the matmuls.
            logits_gradient = (ops.exp(logits - log_sum) - ops.one_hot(y, rows, dtype="float32")) * w[:, None]
            logits_gradient = ops.cast(logits_gradient, h.dtype)  # (c, R)
            hidden_gradient = ops.slice_update(
                hidden_gradient, [first, 0], ops.matmul(logits_gradient, ops.transpose(kernel)))  # (c, R) @ (R, d)
            kernel_gradient = kernel_gradient + ops.cast(
                ops.matmul(ops.transpose(h), logits_gradient), "float32")  # (d, c) @ (c, R) -> (d, R)
            return loss_sum, hit_sum, hidden_gradient, kernel_gradient

        initial = (ops.zeros((), "float32"), ops.zeros((), "float32"), ops.zeros_like(hidden),
                   ops.zeros((depth, rows), "float32"))
        loss_sum, hit_sum, hidden_gradient, kernel_gradient = ops.fori_loop(0, chunks, chunk_step, initial)

        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            scale = upstream[0]  # only the loss sum has a gradient; the hit count is a step function
            return (ops.cast(scale, hidden_gradient.dtype) * hidden_gradient,
                    ops.cast(scale * kernel_gradient, kernel.dtype))

        return ops.stack([loss_sum, hit_sum]), gradient

    totals = sums(hidden, kernel)
    total_weight = ops.sum(weights)
    inverse = ops.where(total_weight > 0, 1.0 / ops.maximum(total_weight, 1e-30), 0.0)
    return totals[0] * inverse, ops.stop_gradient(totals[1]) * inverse, total_weight
