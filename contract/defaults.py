"""Fine-tuning defaults, one set for `genexfer train finetune` and the service's jobs.

Plain numbers (no torch) so the API schema can show them; `training.train.defaults` builds the
training configs from them. How they were chosen is in docs/training.md ("Choosing the
defaults").
"""

from __future__ import annotations

from typing import Final

# a linear head: with a few hundred labelled samples, a hidden layer did not help
HEAD_HIDDEN: Final[tuple[int, ...]] = ()
HEAD_DROPOUT: Final = 0.0

EPOCHS: Final = 400
BATCH_SIZE: Final = 64
LR: Final = 3e-3
WEIGHT_DECAY: Final = 1e-3
VAL_FRACTION: Final = 0.15
PATIENCE: Final = 30
SEED: Final = 0

# share of the labelled samples held out and scored for the card; a class with fewer than
# MIN_HELD_OUT_CLASS samples keeps them all (the card's scores are then the inner CV's)
TEST_FRACTION: Final = 0.2
MIN_HELD_OUT_CLASS: Final = 10

# fine-tuning methods (training.methods.options.FinetuneOptions)
UNFREEZE_TOP: Final = 1
ENCODER_LR_SCALE: Final = 0.1
ADAPTATION_WEIGHT: Final = 0.3
CONFIDENCE: Final = 0.9
SEMI_WEIGHT: Final = 1.0
# no early stop, and no epoch kept as best, before this: a head restored from its first epochs
# is barely trained (a field run stopped at epoch 20 holding epoch 0's chance-level head)
MIN_EPOCHS: Final = 20

# the automatic choice (training.choice): at most this many inner folds, repeated with new
# shuffles when the data are small: (below this many labelled samples, at least this many fold
# scores), the first row that applies. On pbmc68k_reduced at 5 and 10 cells per class (35 and 70
# samples, inner test folds of 7-14 cells) 10 scores picked the weaker of two baselines by noise
# in half the splits; 30 scores halved what the choice lost to the best of them (0.010 to 0.005
# at k = 5, 10 seeded splits; reports/pbmc68k-auto). Above 200 samples one 5-fold pass.
INNER_FOLDS: Final = 5
INNER_SCORES: Final = ((100, 30), (200, 10))
# the inner folds' fits run side by side in at most this many processes (one per core the
# process may use, up to this; training.choice.workers): on 2 cores the inner CV of an `auto`
# job on 200 samples × 2,000 genes took 24.7 s in one process and 14.0 s in two
# (tests/perf/RESULTS.md); more than 4 was not measured
INNER_WORKERS: Final = 4

# hyperparameter tuning (training.choice.tune, `genexfer train tune`, a job's `tune`): trials
# when none are named, the most one search may ask for, and how many trials complete before
# the median pruner may stop one
TUNE_TRIALS: Final = 20
TUNE_MAX_TRIALS: Final = 200
TUNE_STARTUP_TRIALS: Final = 5
