"""`kzoo vocab`: train a WordPiece vocab.txt or SentencePiece spiece.model (`kzoo.text.vocabulary`)."""

import argparse
import sys


def register(commands):
    parser = commands.add_parser("vocab", help="train a WordPiece vocab.txt or SentencePiece spiece.model")
    build_parser(parser)
    parser.set_defaults(run=run)


def build_parser(parser=None):
    """Adds the `kzoo vocab` flags to `parser` (a new ArgumentParser when None) and returns it."""
    parser = parser or argparse.ArgumentParser(prog="kzoo vocab", description="train a tokenizer vocabulary")
    parser.add_argument("files", nargs="+", help="UTF-8 text files to learn from")
    parser.add_argument("--kind", choices=["wordpiece", "sentencepiece"], default="wordpiece")
    parser.add_argument("--vocabulary-size", type=int, required=True, help="tokens in the vocabulary")
    parser.add_argument("--output-dir", required=True, help="where vocab.txt or spiece.model goes")
    parser.add_argument("--cased", action="store_true", help="wordpiece: keep case and accents")
    parser.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram", help="sentencepiece model")
    parser.add_argument(
        "--character-coverage", type=float, default=1.0, help="sentencepiece: share of characters kept (default 1.0)"
    )
    return parser


def run(args):
    """Runs `kzoo vocab` on parsed `args` (or a list of argv strings); returns the exit code (2: a fixable error)."""
    from kzoo.text.vocabulary import CorpusReport, train_sentencepiece, train_wordpiece

    if args is None or isinstance(args, (list, tuple)):
        args = build_parser().parse_args(args)
    report = CorpusReport()
    try:
        if args.kind == "wordpiece":
            path = train_wordpiece(args.files, args.vocabulary_size, args.output_dir, lowercase=not args.cased,
                                   report=report)
        else:
            path = train_sentencepiece(
                args.files,
                args.vocabulary_size,
                args.output_dir,
                model_type=args.model_type,
                character_coverage=args.character_coverage,
                report=report,
            )
    except (ValueError, ImportError) as error:
        print(f"kzoo vocab: {error}", file=sys.stderr)
        return 2
    for message in report.messages():
        print(f"kzoo vocab: {message}", file=sys.stderr)
    print(f"kzoo vocab: wrote {path} (trained on {report.lines:,} lines)")
    return 0
