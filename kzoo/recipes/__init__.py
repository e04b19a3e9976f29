"""kzoo.recipes: what the recipe scripts share, and finding them.

    runner      run_recipe: command line -> strategy -> build(config, workdir) -> Trainer -> outputs, report
    reading     the offline default corpus, user csv/tsv pairs, held-out splits, what a reader skipped
    vocabulary  prepare_tokenizer: the user's vocabulary files or one trained on the training texts
    evaluators  perplexity, sample generations, greedy seq2seq outputs scored by a metric, masked-LM guesses
    pretrained  load_pretrained: the trained model a fine-tuning recipe starts from (--model.checkpoint), its tokenizer
    adapters    LoRA adapters over an optionally quantized backbone (--model.lora_rank, --model.quantize)
    outputs     model.keras, tokenizer/, adapters.npz and result.json written when a run ends; load_run reads
                a run back
    heldout     heldout.npz: a sample of the held-out examples, which kzoo export's int8 gate scores
    index       the recipe scripts by name (`kzoo train NAME`): the top-level recipes/ folder, installed
                as `kzoo.recipes.scripts`

A recipe script (recipes/NAME.py) defines its config dataclass (sections `model`, `data`, `train`) and
`build(config, workdir) -> RecipeParts`, and its `main(argv)` calls `run_recipe`. The training loop itself is
`kzoo.train`'s; the run directory's file names are `kzoo.run_directory`'s.
"""

from kzoo.recipes.evaluators import (
    greedy_seq2seq_evaluator,
    masked_lm_examples,
    perplexity,
    sample_generations,
)
from kzoo.recipes.outputs import LoadedRun, RunLoadError, load_run
from kzoo.recipes.pretrained import Pretrained, load_pretrained, pretrained_start
from kzoo.recipes.reading import default_corpus, read_text_pairs, report_reading, require_filled, split_holdout
from kzoo.recipes.runner import (
    AdapterOptions,
    FineTuningModelConfig,
    RecipeModelConfig,
    RecipeParts,
    parse_arguments,
    run_recipe,
)
from kzoo.recipes.vocabulary import prepare_tokenizer

__all__ = [
    "AdapterOptions", "FineTuningModelConfig", "LoadedRun", "Pretrained", "RecipeModelConfig", "RecipeParts",
    "RunLoadError", "default_corpus", "greedy_seq2seq_evaluator", "load_pretrained", "load_run", "masked_lm_examples",
    "parse_arguments", "perplexity", "prepare_tokenizer", "pretrained_start", "read_text_pairs", "report_reading",
    "require_filled", "run_recipe", "sample_generations", "split_holdout",
]
