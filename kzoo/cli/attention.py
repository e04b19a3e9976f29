"""`kzoo attention`: draw a model's attention for a text: one PNG heatmap per layer and one HTML page to explore it.

Examples:
    kzoo attention runs/gpt_pretrain --text "Return a new list of the items" --output attention/
    kzoo attention runs/bert_classify --text "the soup was not good" --layers 0,-1 --heads 0 --output maps/
    kzoo attention path/to/hf_bert --text "The cat sat." --pair "It was tired." --output maps/   # via kzoo.convert
    kzoo attention runs/seq2seq_translate --text "the red house" --output maps/   # cross-attention on its own output
"""

import argparse
import os
import sys

from kzoo.cli.common import int_list, one_line, positive_int, tokenizer_files

PAGE_NAME = "attention.html"


def _window(text):
    start, sep, stop = text.partition(":")
    try:
        window = (int(start), int(stop))
    except ValueError:
        window = None
    if not sep or window is None or not 0 <= window[0] < window[1]:
        raise argparse.ArgumentTypeError(f"expected START:STOP token positions with 0 <= START < STOP, got {text!r}")
    return window


def register(commands):
    """Adds the `attention` subcommand to `commands` (from `ArgumentParser.add_subparsers`)."""
    parser = commands.add_parser(
        "attention",
        help="draw a model's attention for a text (PNG heatmaps and an interactive HTML page)",
        description="Runs a model on one text and writes, per layer, a heatmap PNG (rows: query tokens, columns: "
        "key tokens, one panel per head, masked cells grey and hatched) and one self-contained HTML page where "
        "hovering a token shows what it attends to, per head or averaged over heads.",
        epilog="Sources: a `kzoo train` run directory, a .keras file (with --tokenizer), or a Hugging Face "
        "checkpoint / keras-hub preset directory (imported through kzoo.convert, its tokenizer beside it).",
    )
    parser.add_argument("model", help="a run directory, a .keras file, or a checkpoint directory (config.json)")
    parser.add_argument("--text", required=True, help="the text (seq2seq: the source)")
    parser.add_argument("--pair", help="BERT: the second segment of a sentence pair")
    parser.add_argument("--target", help="seq2seq: the decoder's text (default: the model's own greedy output)")
    parser.add_argument("--tokenizer", nargs="+", metavar="FILE",
                        help="tokenizer files or their directory (default: the run's tokenizer/ or the checkpoint's)")
    parser.add_argument("--layers", type=int_list("layer indices (e.g. 0,-1)"),
                        help="layers to draw, e.g. 0,11 or -1 (default: all)")
    parser.add_argument("--heads", type=int_list("head indices (e.g. 0,3)"),
                        help="heads to draw, e.g. 0,3 (default: all)")
    parser.add_argument("--window", type=_window, metavar="START:STOP",
                        help="only token positions START..STOP-1 (queries; and keys, for self-attention)")
    parser.add_argument("--max-labels", type=positive_int, default=40,
                        help="the most token labels per heatmap axis; longer sequences label every n-th (default 40)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=32,
                        help="seq2seq without --target: the longest output to write (default 32)")
    parser.add_argument("--output", required=True, help="the folder for the PNGs and attention.html")
    parser.set_defaults(run=run)
    return parser


def run(args):
    """Handler of `kzoo attention`; returns the exit status."""
    try:
        maps = _maps(args)
        written = _write(maps, args)
    except (ValueError, OSError) as error:  # a bad input (source, text, option; RunLoadError too): fixable
        print(f"kzoo attention: {one_line(error)}", file=sys.stderr)
        return 2
    pngs = [path for path in written if path.endswith(".png")]
    heatmaps = f"{len(pngs)} heatmap{'s' if len(pngs) != 1 else ''}"
    heads = maps[0].probabilities.shape[0]
    print(f"kzoo attention: {heatmaps} ({heads} head{'s' if heads != 1 else ''} each) in {args.output}\n"
          f"  page: {written[-1]} (open it in a browser; hover a token)")
    return 0


def _maps(args):
    from kzoo.models.backbone import backbone_of
    from kzoo.recipes.outputs import load_run
    from kzoo.visualize.attention import attention_maps, text_inputs, token_labels

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"model {args.model!r} not found; pass a run directory, a .keras file or a "
                                "checkpoint directory.")
    model, tokenizer, _, _ = load_run(args.model, checkpoints=True)
    if args.tokenizer:
        from kzoo.text import tokenizer_from_files

        tokenizer = tokenizer_from_files(tokenizer_files(args.tokenizer))
    if tokenizer is None:
        raise ValueError(f"{args.model} comes without a tokenizer: pass its files with --tokenizer.")
    inputs = text_inputs(model, tokenizer, args.text, pair=args.pair, target=args.target,
                         max_new_tokens=args.max_new_tokens)
    maps = attention_maps(backbone_of(model), inputs, token_labels(tokenizer))
    maps = _chosen_layers(maps, args.layers)
    return [attention_map.select(heads=args.heads, window=args.window) for attention_map in maps]


def _chosen_layers(maps, layers):
    if layers is None:
        return maps
    chosen = []
    for kind in dict.fromkeys(attention_map.kind for attention_map in maps):
        of_kind = [attention_map for attention_map in maps if attention_map.kind == kind]
        for layer in layers:
            if not -len(of_kind) <= layer < len(of_kind):
                raise ValueError(f"--layers {layer}: the model's {kind} has layers 0-{len(of_kind) - 1} "
                                 f"(or -1 for the last).")
            chosen.append(of_kind[layer])
    return chosen


def _write(maps, args):
    from kzoo.visualize.heatmap import layer_png
    from kzoo.visualize.page import write_attention_page

    os.makedirs(args.output, exist_ok=True)
    images, written = {}, []
    for attention_map in maps:
        images[attention_map.name] = layer_png(attention_map, max_labels=args.max_labels)
        path = os.path.join(args.output, f"{attention_map.name}.png")
        with open(path, "wb") as file:
            file.write(images[attention_map.name])
        written.append(path)
    page = os.path.join(args.output, PAGE_NAME)
    title = f"Attention: {os.path.basename(os.path.normpath(args.model))}"
    write_attention_page(maps, page, images=images, title=title)
    written.append(page)
    return written
