"""`kzoo smoke`: train a tiny decoder offline, save and reload it (`kzoo.smoke.run`)."""

import os
import sys

from kzoo.cli.common import one_line, positive_int


def register(commands):
    parser = commands.add_parser("smoke", help="train a tiny decoder offline, save and reload it")
    parser.add_argument("--steps", type=positive_int, default=150, help="training steps (default 150)")
    parser.add_argument("--output-dir", default="runs/smoke", help="where the .keras file goes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    from kzoo import smoke

    try:  # the folder is checked before training, so a bad --output-dir costs no training time
        os.makedirs(args.output_dir, exist_ok=True)
        if not os.access(args.output_dir, os.W_OK):
            raise PermissionError("not writable")
        result = smoke.run(steps=args.steps, output_dir=args.output_dir, verbose=0 if args.quiet else 1)
    except OSError as error:
        print(f"kzoo smoke: cannot write to --output-dir {args.output_dir}: {one_line(error)}", file=sys.stderr)
        return 2
    print(
        f"kzoo smoke: backend={result['backend']} parameters={result['parameters']:,} "
        f"steps={result['steps']} in {result['train_seconds']:.1f}s\n"
        f"  held-out loss {result['untrained_loss']:.3f} (untrained) -> {result['held_out_loss']:.3f}, "
        f"next-token accuracy {result['held_out_accuracy']:.1%} (chance 3.1%)\n"
        f"  saved {result['saved_model']}; reloaded outputs differ by at most "
        f"{result['reload_max_abs_difference']:.2e}"
    )
    if not result["held_out_loss"] < result["untrained_loss"]:
        print("kzoo smoke: FAILED, the loss did not fall", file=sys.stderr)
        return 1
    return 0
