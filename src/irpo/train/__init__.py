"""Training: reference log-probs, the accelerate loop, IRPO / DPO / SFT.

    compute_reference_logps(model, pairs, batch_size=...)   # log M_t(y|x), once per iteration
    train_preference(model_path, pairs, cfg, out, seed=..., method="irpo")  # or "dpo", ...
    train_sft(model_path, examples, cfg, out, seed=...)      # per-sequence NLL

Modules: batching (token rows), scoring (response-only logits), reference, objectives, plan
(which examples each step sees), setup (model, optimizer, schedule), checkpoint (the output
folder), fit (the accelerate loop), jobs (the two kinds of training job, and `irpo train` from
files). Which loss a method trains with is `irpo.methods`.
"""

from irpo.train.batching import SftExample
from irpo.train.fit import TrainResult
from irpo.train.jobs import train_preference, train_sft
from irpo.train.reference import compute_reference_logps
from irpo.train.scoring import SequenceScorer

__all__ = [
    "SequenceScorer",
    "SftExample",
    "TrainResult",
    "compute_reference_logps",
    "train_preference",
    "train_sft",
]
