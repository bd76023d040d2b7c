"""Training and evaluation engine: recipes in, checkpoints and logs out.

``builders`` (model/loss/data/optimiser/schedule from a recipe), ``checkpoint`` (atomic, complete
checkpoints), ``distributed`` (torchrun/DDP plumbing), ``sampler`` (global-batch draws sliced by
rank), ``train`` (``main``, ``train_one_epoch``, ``evaluate``). Import the submodules directly.
"""
