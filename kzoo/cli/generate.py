"""`kzoo generate`: generate from a `kzoo train` run or a saved `.keras` model on the command line
(`kzoo.generate.generate`).

Examples:
    kzoo generate runs/gpt_pretrain --prompt "The" --max-new-tokens 20      # model.keras and tokenizer/ of a run
    kzoo generate gpt2.keras --tokenizer vocab.json merges.txt --prompt "Hello" --max-new-tokens 20
    kzoo generate t5.keras --tokenizer spiece.model --prompt "translate English to German: Hi" \
        --strategy beam --num-beams 4
    kzoo generate tiny.keras --ids "5 6 7" --ids "8 9" --strategy top_p --top-p 0.9 --seed 1 --json
"""

import argparse
import json
import os
import sys

from kzoo.cli.common import int_list, one_line, tokenizer_files
from kzoo.generate.options import STRATEGIES


def _early_stopping(text):
    value = {"true": True, "false": False, "never": "never"}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true, false or never, got {text!r}")
    return value


def register(commands):
    """Adds the `generate` subcommand to `commands` (from `ArgumentParser.add_subparsers`)."""
    parser = commands.add_parser(
        "generate",
        help="generate text or token ids with a saved GPTCausalLM or Seq2SeqLM (.keras)",
        description="Generate with a saved kzoo GPTCausalLM or Seq2SeqLM. Text prompts need --tokenizer; "
        "--ids gives token ids directly. Prints one result per prompt (new tokens only).",
    )
    parser.add_argument("model", help="a `kzoo train` run directory (its model.keras and tokenizer/) or a .keras "
                        "file (from `kzoo convert` or model.save)")
    prompts = parser.add_argument_group("prompts (one or more of)")
    prompts.add_argument("--prompt", action="append", default=[], help="a text prompt (repeatable)")
    prompts.add_argument("--prompts-file", help="a UTF-8 file with one text prompt per line")
    prompts.add_argument("--ids", action="append", type=int_list("token ids"), default=[],
                         help='a prompt as token ids, e.g. "5 6 7" (repeatable; ids in, ids out)')
    parser.add_argument("--tokenizer", nargs="+", metavar="FILE",
                        help="tokenizer files (vocab.json merges.txt | spiece.model | vocab.txt) or their directory "
                        "(default: the run's tokenizer/)")
    options = parser.add_argument_group("decoding")
    options.add_argument("--strategy", choices=STRATEGIES, default="greedy", help="default greedy")
    options.add_argument("--max-new-tokens", type=int, default=32, help="default 32")
    options.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    options.add_argument("--top-k", type=int, help="top_k sampling cut (default 50 for --strategy top_k)")
    options.add_argument("--top-p", type=float, help="nucleus mass (default 0.9 for --strategy top_p)")
    options.add_argument("--num-beams", type=int, default=1, help="beams for --strategy beam (default 1)")
    options.add_argument("--length-penalty", type=float, default=1.0, help="beam length penalty (default 1.0)")
    options.add_argument("--early-stopping", type=_early_stopping, default=False,
                         help="beam stopping rule: true, false (default) or never")
    options.add_argument("--repetition-penalty", type=float, default=1.0, help="default 1.0 (off)")
    options.add_argument("--stop-token-ids", type=int_list("token ids"),
                         help="ids that end a row, e.g. \"1\" or \"2,50256\" (default: the tokenizer's eos)")
    options.add_argument("--min-length", type=int, default=0, help="new tokens before a stop token (default 0)")
    options.add_argument("--seed", type=int, help="sampling seed (reproducible per backend)")
    options.add_argument("--pad-id", type=int, help="padding id (default: the tokenizer's, else 0)")
    options.add_argument("--decoder-start-id", type=int, help="seq2seq decoder start id (default: the pad id)")
    options.add_argument("--no-xla", action="store_true", help="TensorFlow: run the loop without XLA")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {prompt, output}")
    parser.set_defaults(run=run)
    return parser


def _load_prompts(args):
    texts = list(args.prompt)
    if args.prompts_file:
        try:
            with open(args.prompts_file, encoding="utf-8") as file:
                texts += [line.rstrip("\n") for line in file if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read --prompts-file {args.prompts_file}: {error}") from None
    if texts and args.ids:
        raise ValueError("pass text prompts (--prompt/--prompts-file) or --ids, not both.")
    if not texts and not args.ids:
        raise ValueError("no prompt given; pass --prompt TEXT, --prompts-file FILE or --ids \"5 6 7\".")
    return texts, args.ids


def run(args):
    """Handler of `kzoo generate`; returns the exit status."""
    try:
        texts, ids = _load_prompts(args)
        run_directory = os.path.isdir(args.model)
        if not run_directory and not os.path.isfile(args.model):
            raise FileNotFoundError(f"model {args.model!r} not found; pass a `kzoo train` run directory or the path "
                                    "of a .keras file.")
        if texts and not args.tokenizer and not run_directory:
            raise ValueError("text prompts need --tokenizer FILES (or pass token ids with --ids).")
        tokenizer = None
        if args.tokenizer:
            from kzoo.text import tokenizer_from_files

            tokenizer = tokenizer_from_files(tokenizer_files(args.tokenizer))

        from kzoo.generate import generate
        from kzoo.recipes.outputs import load_run

        # Checked before Keras sees it: no Lambda layers, foreign classes or unsafe members.
        model, run_tokenizer, _, _ = load_run(args.model)
        tokenizer = tokenizer or run_tokenizer
        if texts and tokenizer is None:
            raise ValueError(f"text prompts need --tokenizer FILES: {args.model} has no tokenizer/ folder (or "
                             "pass token ids with --ids).")
        outputs = generate(
            model,
            texts or ids,
            tokenizer=tokenizer if texts else None,
            strategy=args.strategy,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            num_beams=args.num_beams,
            length_penalty=args.length_penalty,
            early_stopping=args.early_stopping,
            repetition_penalty=args.repetition_penalty,
            stop_token_ids=args.stop_token_ids,
            min_length=args.min_length,
            seed=args.seed,
            pad_id=args.pad_id,
            decoder_start_id=args.decoder_start_id,
            jit_compile=not args.no_xla,
        )
    except (ValueError, OSError) as error:  # a bad input (model, prompt, option; RunLoadError too): fixable
        print(f"kzoo generate: {one_line(error)}", file=sys.stderr)
        return 2
    prompts = texts or [" ".join(map(str, row)) for row in ids]
    results = list(outputs) if texts else [_trim(row, args) for row in outputs.tolist()]
    if args.json:
        print(json.dumps([{"prompt": p, "output": r} for p, r in zip(prompts, results, strict=True)]))
    else:
        for result in results:
            print(result if texts else " ".join(map(str, result)))
    return 0


def _trim(row, args):
    """Drops the padding after a row's stop token (the stop token is kept)."""
    from kzoo.generate.inputs import cut_at_stop

    return [int(i) for i in cut_at_stop(row, tuple(args.stop_token_ids or ()))]
