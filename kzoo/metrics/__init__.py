"""kzoo.metrics: evaluation metrics for the training recipes, on host-side predictions.

Plain Python/NumPy: importing this package loads neither TensorFlow nor Keras
(only `squad_predictions` and `squad_prediction_spans` import `kzoo.data` when called). Array inputs may be lists,
NumPy arrays or anything `np.asarray` reads (eager TF tensors, JAX arrays); results are
Python floats, dicts and lists, or NumPy arrays for batched inputs. Scores are fractions
in [0, 1] (multiply by 100 for the usual BLEU / SQuAD presentation), and a ratio with a
zero denominator is 0.0, never NaN. Mismatched lengths raise `ValueError` naming both
arguments.

- language modeling: `perplexity`.
- classification: `accuracy`, `f1_score` (macro / micro), `per_class_scores`, `confusion_matrix`.
- token classification (NER): `entity_scores`, `bio_entities`, `word_level_tags`.
- extractive QA (SQuAD v1.1): `squad_scores`, `answer_exact_match`, `answer_f1`,
  `normalize_answer`, `best_span`, `squad_predictions`, `squad_prediction_spans`.
- generation: `corpus_bleu`, `rouge`, `lcs_length`.
"""

from kzoo.metrics.classification import accuracy, confusion_matrix, f1_score, per_class_scores
from kzoo.metrics.generation import corpus_bleu, lcs_length, rouge
from kzoo.metrics.language_modeling import perplexity
from kzoo.metrics.squad import (
    answer_exact_match,
    answer_f1,
    best_span,
    normalize_answer,
    squad_prediction_spans,
    squad_predictions,
    squad_scores,
)
from kzoo.metrics.token_classification import bio_entities, entity_scores, word_level_tags

__all__ = [
    "accuracy", "answer_exact_match", "answer_f1", "best_span", "bio_entities", "confusion_matrix", "corpus_bleu",
    "entity_scores", "f1_score", "lcs_length", "normalize_answer", "per_class_scores", "perplexity", "rouge",
    "squad_prediction_spans", "squad_predictions", "squad_scores", "word_level_tags",
]
