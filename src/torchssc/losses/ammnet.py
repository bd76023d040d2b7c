"""AMMNet's losses and its adversarial training step, as the authors' code runs them
(docs/ammnet.md; spec AMMNET_CVSFORMER.md §4.5, §4.6), quirks included.

Generator loss (``loss(outputs, batch)``, the model being :class:`torchssc.models.ammnet.AMMNet`)::

    total = semantic + 0.25 * semantic2d + 0.005 * adversarial

* ``semantic``: cross-entropy with label smoothing 0.2, NO class weights, mean over the voxels with
  ``label_weight > 0`` and label not 255, on the canonical-orientation logits;
* ``semantic2d`` (SegFormer variant only): the same on the 2D logits at the mapped pixels, the
  target being the label of the pixel's voxel (255 ignored, ``label_weight`` not used);
* ``adversarial``: ``BCEWithLogits(adv_logit, 1)``, ``adv_logit`` = the discriminator on the
  augmented-orientation logits times the canonical ``label_weight`` (the model computes it).

The training step (:class:`AdversarialStep`, which the engine runs when the loss provides
``training_step``): per iteration

1. **discriminator step**: the generator forward in train mode under ``no_grad`` (its BatchNorm
   statistics, dropout and 3D-augmentation draws advance: the authors' double update), then
   ``D(G) -> 1``, ``D(shuffle(G)) -> 0``, ``D(erase(G)) -> 0``, ``D(P * w) -> 0`` (four BCE means,
   summed), backward, gradient norm clipped to 10 over all parameters, the discriminator's AdamW
   step at a CONSTANT lr 1e-3 (the authors' ``scheduler_disc`` is built on the other optimiser
   and never stepped), ``zero_grad(set_to_none=False)``;
2. **generator step**: the engine's forward + this loss, backward, clip to 10, the generator's
   AdamW step (lr from the recipe's schedule), ``zero_grad(set_to_none=False)``.

Both AdamW optimisers hold ALL trainable parameters (the authors'): with zero (not None)
gradients left by ``zero_grad(set_to_none=False)`` (their PyTorch 1.10's default), each optimiser
also applies its decoupled weight decay (and a zero-gradient Adam update) to the other part's
parameters every iteration. ``G`` is the one-hot label with 255 and ``label_weight == 0`` voxels
set to class 0; ``shuffle`` and ``erase`` are :func:`shuffle_labels` and :func:`erase_labels`
(Python's ``random`` and torch's global RNG, drawn as the authors' code draws them).
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.geometry import IGNORE_LABEL
from torchssc.losses.registry import register_loss


def shuffle_labels(onehot: torch.Tensor, num_classes: int = 12) -> torch.Tensor:
    """The authors' ``shuffle`` fake: ``(B, K, D, H, W)`` one-hot -> one-hot with some classes'
    voxels relabelled.

    Per sample, on ``labels = argmax``: ``exist`` = the present labels but the smallest; ``n =
    random.randint(1, len(exist))`` of them (``torch.randperm`` order); for each picked class c:
    ``prob = random.random() * 0.8 + 0.1``, ``int(len(voxels of c) * prob)`` of its voxels drawn
    WITH replacement (``torch.randint``) get ``noise = random.randint(1, K - 1)`` (if ``noise ==
    c``: ``c - 1`` when ``c > 1``, else ``random.randint(2, K - 1)``). Raises ``ValueError`` (the
    authors' code too, as Python's) when a sample has fewer than two labels.
    """
    labels = onehot.argmax(1)                                                  # (B, D, H, W)
    noisy = labels.clone()
    for i in range(labels.shape[0]):  # samples and classes, not voxels
        exist = labels[i].unique()[1:]
        n = random.randint(1, len(exist))
        for c in exist[torch.randperm(len(exist))][:n].tolist():
            where = torch.nonzero(labels[i] == c)                              # (M, 3)
            count = min(int(len(where) * (random.random() * 0.8 + 0.1)), max(10, len(where)))
            picked = where[torch.randint(0, len(where), (count,))]
            noise = random.randint(1, num_classes - 1)
            if noise == c:
                noise = c - 1 if c > 1 else random.randint(2, num_classes - 1)
            noisy[i, picked[:, 0], picked[:, 1], picked[:, 2]] = noise
    return F.one_hot(noisy, num_classes).permute(0, 4, 1, 2, 3).to(onehot.dtype)


def erase_labels(onehot: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The authors' ``erase`` fake (in place on ``onehot``, which is returned): per sample, a
    fraction ``random.random() * 0.8 + 0.1`` of the voxels whose RAW label is neither 0 nor 255
    (``label_weight`` ignored), chosen by ``random.sample``, get all channels 0."""
    valid = (label != 0) & (label != IGNORE_LABEL)                             # (B, D, H, W)
    for i in range(onehot.shape[0]):
        pos = torch.nonzero(valid[i])                                          # (M, 3)
        count = int(len(pos) * (random.random() * 0.8 + 0.1))
        chosen = pos[torch.tensor(random.sample(range(len(pos)), count), dtype=torch.long)]
        onehot[i, :, chosen[:, 0], chosen[:, 1], chosen[:, 2]] = 0
    return onehot


def real_volume(label: torch.Tensor, label_weight: torch.Tensor, num_classes: int = 12) -> torch.Tensor:
    """``G``: ``label (B, D, H, W)`` with 255 and ``label_weight == 0`` voxels set to 0, one-hot
    ``(B, K, D, H, W)`` float."""
    real = torch.where((label == IGNORE_LABEL) | (label_weight == 0), torch.zeros_like(label), label)
    return F.one_hot(real.long(), num_classes).permute(0, 4, 1, 2, 3).float()


def discriminator_loss(disc: nn.Module, fake_augmented: torch.Tensor, label: torch.Tensor,
                       label_weight: torch.Tensor) -> torch.Tensor:
    """The four BCE terms of the discriminator step, summed (the authors' order of calls).

    Args:
        disc: the discriminator. fake_augmented: the generator's logits ``(B, K, D, H, W)`` in the
            augmented orientation (detached here). label, label_weight: ``(B, D, H, W)``.
    """
    b, k = fake_augmented.shape[:2]
    weight = (label_weight != 0).to(fake_augmented.dtype).reshape(b, 1, *fake_augmented.shape[2:])
    fake = fake_augmented * weight                                    # canonical weight on augmented logits
    real = real_volume(label, label_weight, k).to(fake.dtype)
    ones, zeros = fake.new_ones(b, 1), fake.new_zeros(b, 1)
    bce = F.binary_cross_entropy_with_logits
    real_logit = disc(real)
    shuffled_logit = disc(shuffle_labels(real.clone(), k))
    erased_logit = disc(erase_labels(real.clone(), label))
    fake_logit = disc(fake.detach())
    return bce(fake_logit, zeros) + bce(real_logit, ones) + bce(shuffled_logit, zeros) + bce(erased_logit, zeros)


class AMMNetLoss(nn.Module):
    """The generator loss (module docstring): ``{"semantic", ["semantic2d",] ["adversarial",] "total"}``.

    Args:
        label_smoothing: 0.2. weight_2d: 0.25. adversarial_weight: 0.005.
        discriminator_lr: the discriminator optimiser's constant lr (1e-3).
        clip: gradient-norm clip of both steps (10; 0 = none).
    """

    def __init__(self, *, label_smoothing: float = 0.2, weight_2d: float = 0.25, adversarial_weight: float = 0.005,
                 discriminator_lr: float = 1e-3, clip: float = 10.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.weight_2d = weight_2d
        self.adversarial_weight = adversarial_weight
        self.discriminator_lr = discriminator_lr
        self.clip = clip

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.numel() == 0 or bool((target == IGNORE_LABEL).all()):
            return logits.sum() * 0
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL, label_smoothing=self.label_smoothing)

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        logits = outputs["semantic"]                                    # (B, K, D, H, W) canonical
        b, k = logits.shape[:2]
        label = batch["label"].reshape(-1)
        keep = (batch["label_weight"].reshape(-1) != 0) & (label != IGNORE_LABEL)
        flat = logits.permute(0, 2, 3, 4, 1).reshape(-1, k)
        terms = {"semantic": self._ce(flat[keep], label[keep])}
        total = terms["semantic"]
        if "semantic2d" in outputs:
            s2d = outputs["semantic2d"]                                 # (B, K, Hi, Wi)
            hw = s2d.shape[2] * s2d.shape[3]
            mapping = batch["mapping"].reshape(b, -1)
            rows = ((mapping >= 0) & (mapping < hw)).reshape(-1).nonzero().squeeze(1)
            frame = torch.div(rows, mapping.shape[1], rounding_mode="floor")
            pixel_logits = s2d.flatten(2).permute(0, 2, 1).reshape(-1, k)[frame * hw + mapping.reshape(-1)[rows]]
            terms["semantic2d"] = self._ce(pixel_logits, label[rows])
            total = total + self.weight_2d * terms["semantic2d"]
        if "adv_logit" in outputs:
            adv = outputs["adv_logit"].float()
            terms["adversarial"] = F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))
            total = total + self.adversarial_weight * terms["adversarial"]
        return {**terms, "total": total}

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, amp: str = "none"
                      ) -> "AdversarialStep":
        """The engine's hook: the step object that runs the discriminator step and finishes the
        generator step (:class:`AdversarialStep`)."""
        return AdversarialStep(model, optimizer, lr=self.discriminator_lr, clip=self.clip, amp=amp)


class AdversarialStep:
    """The authors' two-step iteration around the engine's forward + loss (module docstring).

    ``discriminator_step(batch)`` -> ``{"discriminator": detached loss}`` (done, weights updated);
    then the engine computes the generator loss and calls ``generator_step(total)`` (backward,
    clip, step, ``zero_grad(set_to_none=False)``). ``state_dict``/``load_state_dict``: the
    discriminator optimiser, for exact resumes.

    Args:
        model: the bare AMMNet (one process: the authors' 2 GPUs x 2 with SyncBatchNorm are one
            process with batch 4 here). optimizer: the engine's AdamW (the generator optimiser).
    Raises:
        ValueError: more than one process, an optimiser other than AdamW, or ``amp="fp16"``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, lr: float = 1e-3, clip: float = 10.0,
                 amp: str = "none") -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            raise ValueError("the AMMNet adversarial step runs in one process (global batch on one device)")
        if not isinstance(optimizer, torch.optim.AdamW):
            raise ValueError(f"the AMMNet step needs optim.name=adamw (the authors'), got {type(optimizer).__name__}")
        if amp == "fp16":
            raise ValueError("the AMMNet step does not support train.amp=fp16 (no GradScaler); use none or bf16")
        if not hasattr(model, "disc"):
            raise ValueError(f"the ammnet loss needs an AMMNet model (with .disc), got {type(model).__name__}")
        self.model, self.optimizer, self.clip, self.amp = model, optimizer, clip, amp
        groups = [{"params": list(g["params"]), "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
        self.disc_optimizer = torch.optim.AdamW(groups, lr=lr, betas=optimizer.defaults["betas"],
                                                eps=optimizer.defaults["eps"])

    def _clip(self) -> None:
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)

    def discriminator_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        model = self.model
        with torch.no_grad(), _autocast(self.amp, batch["tsdf"].device):
            fake = model(batch, adversarial=False)["semantic_augmented"]
        loss = discriminator_loss(model.disc, fake.float(), batch["label"], batch["label_weight"])
        if not bool(torch.isfinite(loss)):
            raise ValueError(f"non-finite discriminator loss {loss.item()}; stopping before its update")
        loss.backward()
        self._clip()
        self.disc_optimizer.step()
        self.disc_optimizer.zero_grad(set_to_none=False)
        return {"discriminator": loss.detach()}

    def generator_step(self, total: torch.Tensor) -> None:
        total.backward()
        self._clip()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)

    def state_dict(self) -> dict:
        return {"disc_optimizer": self.disc_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the discriminator optimiser (after the engine restored the generator's) and the
        zero gradients a running job holds: every parameter either optimiser has stepped gets a
        zero ``.grad`` again, so the next steps decay it as the uninterrupted run would."""
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        for p in self.model.parameters():
            if p.requires_grad and p.grad is None and (p in self.optimizer.state or p in self.disc_optimizer.state):
                p.grad = torch.zeros_like(p)


def _autocast(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@register_loss("ammnet", targets=("label", "label_weight", "mapping"))
def ammnet_loss(**kwargs: Any) -> AMMNetLoss:
    """AMMNet's loss and adversarial training step (:class:`AMMNetLoss`); keyword arguments as it."""
    return AMMNetLoss(**kwargs)


__all__ = ["AMMNetLoss", "AdversarialStep", "ammnet_loss", "discriminator_loss", "erase_labels", "real_volume",
           "shuffle_labels"]
