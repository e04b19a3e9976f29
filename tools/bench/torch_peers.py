"""The PyTorch peers: Hugging Face `transformers` and the nanoGPT-style model.

Both train with the same step: `zero_grad`, forward + cross-entropy (under bf16
autocast on GPUs), `backward`, `clip_grad_norm_(1.0)` (which measures the global norm),
`torch.optim.AdamW` (lr 1e-4, betas 0.9/0.999, eps 1e-6, weight decay 0.01 on matrices
only, fused on CUDA), then `float(loss)`, `float(norm)` (waits for the step).

* transformers GPT-2: `GPT2LMHeadModel` (SDPA attention), logits over all positions,
  cross-entropy computed here against the same targets as the other peers (no
  attention mask: every position is a real token).
* transformers BERT: `BertForMaskedLM`. Its own forward projects every position onto
  the vocabulary; here `model.bert` runs, the P masked positions are gathered and
  `model.cls` projects only those, as kzoo (`mask_positions`) and keras-hub do.
* nanoGPT (GPT only): `tools/bench/nanogpt.py`, optionally under `torch.compile`
  (transformers runs eagerly).
"""

import time

LEARNING_RATE = 1e-4


def _setup(device):
    import torch

    torch.manual_seed(0)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device gpu: torch.cuda.is_available() is False (a CPU-only PyTorch build, or no "
                               "CUDA driver). Install a CUDA build of PyTorch.")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch


def _groups(model):
    parameters = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": 0.01},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]


def _make_step(torch, model, loss_fn, device):
    optimizer = torch.optim.AdamW(_groups(model), lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-6,
                                  fused=device == "cuda")
    parameters = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    model.train()

    def step(sync):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if not sync:
            return None
        float(norm)
        return float(loss)

    return step


def _tensors(torch, batch, device):
    return {name: torch.from_numpy(value).to(device=device, dtype=torch.float32 if value.dtype.kind == "f"
                                                else torch.long) for name, value in batch.items()}


def build_transformers(spec, batch, device, dropout, compile_model=False):
    torch = _setup(device)
    import transformers
    from torch.nn import functional as F

    data = _tensors(torch, batch, device)
    if spec.family == "gpt":
        config = transformers.GPT2Config(
            vocab_size=spec.vocabulary_size, n_positions=spec.max_sequence_length, n_embd=spec.hidden_dim,
            n_layer=spec.num_layers, n_head=spec.num_heads, n_inner=spec.intermediate_dim,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, attn_implementation="sdpa",
        )
        model = transformers.GPT2LMHeadModel(config).to(device)

        def loss_fn():
            logits = forward(input_ids=data["token_ids"]).logits
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), data["targets"].view(-1))
    else:
        config = transformers.BertConfig(
            vocab_size=spec.vocabulary_size, hidden_size=spec.hidden_dim, num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_dim,
            max_position_embeddings=spec.max_sequence_length, type_vocab_size=2, hidden_act="gelu",
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, attn_implementation="sdpa",
        )
        model = transformers.BertForMaskedLM(config).to(device)
        positions = data["mask_positions"][:, :, None].expand(-1, -1, spec.hidden_dim)

        def loss_fn():
            hidden = model.bert(input_ids=data["token_ids"], attention_mask=data["padding_mask"],
                                token_type_ids=data["segment_ids"]).last_hidden_state
            logits = model.cls(torch.gather(hidden, 1, positions))
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), data["mlm_targets"].view(-1))

    forward = model  # eager, as transformers' Trainer runs by default
    info = {"parameters": sum(p.numel() for p in model.parameters()),
            "attention": getattr(model.config, "_attn_implementation", "?"), "step": "torch eager"}
    return _runner(_make_step(torch, model, loss_fn, device)), info


def build_nanogpt(spec, batch, device, dropout, compile_model, vocabulary_multiple=1):
    if spec.family != "gpt":
        raise NotImplementedError("the nanoGPT peer is a GPT (causal LM) only")
    torch = _setup(device)
    from tools.bench.nanogpt import GPT

    data = _tensors(torch, batch, device)
    rows = -(-spec.vocabulary_size // vocabulary_multiple) * vocabulary_multiple  # nanoGPT's 50304
    model = GPT(rows, spec.num_layers, spec.num_heads, spec.hidden_dim, spec.intermediate_dim,
                spec.max_sequence_length, dropout).to(device)
    forward = torch.compile(model) if compile_model else model

    def loss_fn():
        return forward(data["token_ids"], data["targets"])

    info = {"parameters": sum(p.numel() for p in model.parameters()), "attention": "sdpa (is_causal=True)",
            "step": "torch eager" + (" + torch.compile" if compile_model else ""), "vocabulary_rows": rows}
    return _runner(_make_step(torch, model, loss_fn, device)), info


def _runner(step):
    def run(warmup, timed, sync_every=1):
        from tools.bench.timing import time_steps

        started = time.perf_counter()
        result = time_steps(step, warmup, timed, sync_every)
        result["run_s"] = time.perf_counter() - started
        return result

    return run


def device_name(device):
    if device != "cuda":
        return None
    import torch

    return torch.cuda.get_device_name(0)
