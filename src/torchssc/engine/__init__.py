"""Training and evaluation engine: recipes in, checkpoints, logs and scores out.

``builders`` (model/loss/data/optimiser/schedule from a recipe), ``train`` (``main``, the epoch
loop, ``train_one_epoch``), ``evaluate`` (``score_model``, the one scoring loop of eval, validation
and baselines), ``checkpoint`` (the checkpoint keys, atomic writes, resume, ``load_model``),
``logs`` (console, ``log.jsonl``, TensorBoard), ``distributed`` (torchrun/DDP plumbing),
``sampler`` (global-batch draws sliced by rank). Import the submodules directly.
"""
