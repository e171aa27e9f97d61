"""The values a run gets where its config leaves them automatic: the batch follows the device, the peak learning
rate follows the batch, the warmup follows the peak rate. Each is a measured choice; the comments say where from.
"""

from __future__ import annotations

import math
from dataclasses import replace

# Tokens per optimizer batch when the run config says 0. A GPU needs big batches to stay busy; on CPU the
# throughput is flat in batch size (bench/train_throughput.py: 1047, 1043, 1037 tokens/s at 2048, 4096,
# 12288), so small batches give more updates per token for free: the CPU bench's epoch ended at a held-out
# loss of 8.38 with 2048 against 9.04 with 12288 (the seed recipe: 8.43). Fine-tuning within a time budget
# wants more updates still: bench/train_budget.py (3 min, demo base model) ended at a held-out loss of 2.51
# with 2048 and 2.43 with 1024, where a plain loop with 32-sentence batches reached 2.39; with 512 it reaches
# 2.33 (2,402 updates) against the plain loop's 2.37 in the same run. From scratch, too, the number of updates
# more than the tokens decides when a model leaves the source-blind plateau (a CPU proxy: 150-330 updates with
# 512 to 4,096 tokens a batch; README "On a GPU"): whether 12,288 is the GPU's best batch for time to quality
# waits on make bench-gpu's run at 4,096.
AUTO_TOKENS_PER_BATCH = {"cuda": 12288, "cpu": 512}
# The automatic peak learning rate: AUTO_LR at AUTO_LR_TOKENS tokens per optimizer step (the CPU's batch, where
# 1e-4 was measured good for fine-tuning: bench/train_budget.py), scaled with the square root of the step's
# tokens (the gradient's noise falls with the batch, so a larger step stays stable; Adam's usual rule), at most
# AUTO_LR_MAX, a common peak for transformer-base sized models with warmup. A GPU's 12,288 tokens get 4.9e-4.
AUTO_LR, AUTO_LR_TOKENS, AUTO_LR_MAX = 1e-4, 512, 5e-4


def auto_learning_rate(tokens_per_step: int) -> float:
    return min(AUTO_LR_MAX, AUTO_LR * math.sqrt(max(tokens_per_step, 1) / AUTO_LR_TOKENS))


# The automatic warmup, a share of all steps: AUTO_WARMUP at a peak rate of AUTO_LR or less, AUTO_WARMUP_SLOPE more
# per AUTO_LR above it, at most AUTO_WARMUP_MAX (0.36 at a GPU's 4.9e-4). A 6+6-layer post-norm model trained from
# scratch at 4.9e-4 (python -m devtools.warmup_study, 550 steps) sat at the loss of a model blind to its source (4.90)
# with 5 % warmup and ended at 4.79; with 25 % at 4.45, 35 % 3.58, 36 % 3.99, 50 % 3.74. Two more seeds: 5 % stalled
# at 4.78 and 4.79, 36 % ended at 3.75 and 4.48. At 2.8e-4, 5 % ended at 4.61, 4.35, 4.51 over three seeds, the rule's
# 19 % at 4.15, 4.33, 4.21 (14 % at 4.24). Fine-tuning the demo's base model at 4.9e-4 ended at the same held-out loss
# with 5, 25 or 50 % warmup (2.585, 2.583, 2.577). README, "On a GPU".
AUTO_WARMUP, AUTO_WARMUP_SLOPE, AUTO_WARMUP_MAX = 0.05, 0.08, 0.4


def auto_warmup(peak_learning_rate: float) -> float:
    return min(AUTO_WARMUP_MAX, AUTO_WARMUP + AUTO_WARMUP_SLOPE * max(0.0, peak_learning_rate / AUTO_LR - 1))


# Bigger CPU batches run as micro-batches of this size: one 12288-token batch ran at half the speed.
CPU_MICRO_BATCH_TOKENS = 2048


def fill_in(settings, device_type: str, world_size: int):
    """`settings` (a loop.LoopSettings) with its automatic values chosen for `device_type` and the number of
    data-parallel workers: a batch of 0 tokens, a learning rate of 0, a warmup of None."""
    if settings.max_tokens_per_batch == 0:
        settings = replace(settings, max_tokens_per_batch=AUTO_TOKENS_PER_BATCH.get(device_type,
                                                                                   AUTO_TOKENS_PER_BATCH["cuda"]))
    if settings.learning_rate == 0:  # every worker's batch makes one step: the step's tokens decide
        settings = replace(settings, learning_rate=auto_learning_rate(settings.max_tokens_per_batch * world_size))
    if settings.warmup_steps is None:
        settings = replace(settings, warmup_steps=auto_warmup(settings.learning_rate))
    return settings
