"""ForkNet's training losses (Wang et al., ICCV 2019), as its ICCV-era code defines them
(docs/baselines.md, "ForkNet").

Called as ``loss(outputs, batch)`` with the outputs of :class:`torchssc.models.forknet.ForkNet`
in training mode and the batch keys ``forknet_tsdf`` ``(B, 1, D, H, W)`` (the network input x),
``forknet_label`` ``(B, D, H, W)`` (Y; 255, a block entirely outside the room, is read as empty
as ForkNet's loader does) and ``forknet_surface`` ``(B, D, H, W)`` 0/1.

Targets (one-hot, ``(B, K, D, H, W)``): Y (12 classes); S, the surface semantics: channel 0 is
Y's empty channel, channels 1..11 are Y's on the surface voxels and 0 elsewhere; C, the 2-class
geometry target the model used (``outputs["forknet_geometry_target"]``).

Per-batch class weights of a target T: ``m_c`` = the batch's fraction of voxels of class c,
``w_c = (1 / (1 + m_c)) / sum_c' (1 / (1 + m_c'))``.

γ-weighted per-channel binary cross-entropy of probabilities P (softmax of the logits), a
positive set A and a negative set B, **summed over voxels** and averaged over the batch:
``BCE(P; A, B) = mean_b sum_c w_c sum_v -[γ A_c log(P_c + ε) + (1 - γ)(1 - B_c) log(1 - P_c + ε)]``.

==============  ==================  ============  =========  =======================================
term            prediction          A             B          weights from
==============  ==================  ============  =========  =======================================
``ssc``         front-end F         Y + S         Y          Y
``geometry``    g1 and g2 (summed)  C             C          C
``semantic``    s1                  Y + S         S          S
``refine``      s2                  Y + S         Y          Y
``recon``       x̂                   squared error to x, summed over voxels, mean over the batch
``kl``          μ, log σ            ``-1/2 sum(1 + 2 log σ - μ² - exp(2 log σ))``, mean over the batch
==============  ==================  ============  =========  =======================================

The code's optimisers minimise ``L_ssc``, ``L_com = geometry + kl + recon``,
``L_sem = semantic + kl + recon`` and ``L_ref``, each on its own parameters. The model routes
the gradients so that one optimiser over ``total = ssc + L_com + L_sem + refine`` (kl and recon
thus twice) gives every parameter the same gradient (the model's docstring). Each term has a
weight (all 1 in the code); ``recon_weight`` is the code's ``LAMDA_RECONS``.

Adversarial terms, when the model returns ``adv_*`` logits (its discriminators are on):
``adv_discriminator = sum_k [BCE(D_k(real), 1) + BCE(D_k(fake), 0)]`` and
``adv_generator = sum_k gate_k BCE(D_k(G(z)), 1)`` (sigmoid cross-entropy averaged over the
patches), for k in x (TSDF), g (geometry), s (semantics); ``gate_k`` is 1 when the batch's mean
sigmoid score on reals exceeds that on fakes by more than ``adversarial_gate`` (0.3), as the
code only then steps that generator.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchssc.losses.registry import register_loss
from torchssc.models.forknet import geometry_target

_ADV_KEYS = ("x", "g", "s")


def class_weights(target: torch.Tensor) -> torch.Tensor:
    """``(B, K, ...)`` one-hot target -> ``(K,)`` weights ``(1/(1+m_c)) / sum(1/(1+m_c'))``."""
    m = target.transpose(0, 1).reshape(target.shape[1], -1).float().mean(dim=1)
    inv = 1.0 / (1.0 + m)
    return inv / inv.sum()


def gamma_bce(prob: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, weights: torch.Tensor,
              *, gamma: float, eps: float) -> torch.Tensor:
    """ForkNet's γ-weighted per-channel BCE, summed over channels (weighted) and voxels, mean
    over the batch.

    Args:
        prob: ``(B, K, ...)`` probabilities. positive: A, ``(B, K, ...)``. negative: B, same shape
            (the negative set is ``1 - B``). weights: ``(K,)``.
    Returns:
        a 0-dim float32 tensor.
    """
    per_voxel = gamma * positive * torch.log(prob + eps) + (1.0 - gamma) * (1.0 - negative) * torch.log(1.0 - prob + eps)
    per_class = -per_voxel.flatten(2).sum(dim=2)  # (B, K)
    return (per_class * weights).sum(dim=1).mean()


def _one_hot(label: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(label.long(), k).permute(0, 4, 1, 2, 3).float()  # (B, K, D, H, W)


class ForkNetLoss(nn.Module):
    """``loss(outputs, batch) -> {"ssc", "geometry", "semantic", "refine", "recon", "kl",
    ["adv_generator", "adv_discriminator",] "total"}`` (module docstring).

    Args:
        num_classes: classes (12).
        gamma: γ (``LAMDA_GAMMA``; 0.97 at the ICCV-era commit).
        eps: ε inside the logs.
        *_weight: the weight of each term in ``total`` (all 1 in the code).
        adversarial_gate: the real-minus-fake score margin that enables a generator's
            adversarial term.
    """

    def __init__(
        self,
        *,
        num_classes: int = 12,
        gamma: float = 0.97,
        eps: float = 1e-6,
        ssc_weight: float = 1.0,
        geometry_weight: float = 1.0,
        semantic_weight: float = 1.0,
        refine_weight: float = 1.0,
        recon_weight: float = 1.0,
        kl_weight: float = 1.0,
        adversarial_weight: float = 1.0,
        discriminator_weight: float = 1.0,
        adversarial_gate: float = 0.3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.gamma, self.eps = gamma, eps
        self.weights = {
            "ssc": ssc_weight, "geometry": geometry_weight, "semantic": semantic_weight, "refine": refine_weight,
            "recon": recon_weight, "kl": kl_weight, "adv_generator": adversarial_weight,
            "adv_discriminator": discriminator_weight,
        }
        self.adversarial_gate = adversarial_gate

    def _bce(self, logits: torch.Tensor, positive, negative, weights) -> torch.Tensor:
        prob = torch.softmax(logits.float(), dim=1)
        return gamma_bce(prob, positive, negative, weights, gamma=self.gamma, eps=self.eps)

    def forward(self, outputs: dict, batch: dict) -> dict:
        for key in ("forknet_tsdf", "forknet_label", "forknet_surface"):
            if key not in batch:
                raise ValueError(f"forknet loss needs batch[{key!r}]: load the dataset with forknet=True")
        for key in ("forknet_front", "forknet_s1", "forknet_g1", "forknet_g2", "semantic", "forknet_recon",
                    "latent_mean", "latent_log_sigma"):
            if key not in outputs:
                raise ValueError(f"forknet loss needs outputs[{key!r}] (the forknet model in training mode)")
        x = batch["forknet_tsdf"].float()
        label = batch["forknet_label"].long()
        label = torch.where(label == 255, 0, label)
        if label.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(f"forknet_label {tuple(label.shape)} does not match forknet_tsdf {tuple(x.shape)}")
        y = _one_hot(label, self.num_classes)  # (B, 12, D, H, W)
        surface = batch["forknet_surface"].float().unsqueeze(1)  # (B, 1, D, H, W)
        s = torch.cat([y[:, :1], y[:, 1:] * surface], dim=1)
        geometry = outputs.get("forknet_geometry_target")
        if geometry is None:
            geometry = geometry_target(x, label, "band")
        c = _one_hot(geometry, 2)
        w_y, w_s, w_c = class_weights(y), class_weights(s), class_weights(c)
        positive = y + s  # surface voxels count twice, as the code

        terms = {
            "ssc": self._bce(outputs["forknet_front"], positive, y, w_y),
            "geometry": self._bce(outputs["forknet_g1"], c, c, w_c) + self._bce(outputs["forknet_g2"], c, c, w_c),
            "semantic": self._bce(outputs["forknet_s1"], positive, s, w_s),
            "refine": self._bce(outputs["semantic"], positive, y, w_y),
            "recon": (x - outputs["forknet_recon"].float()).pow(2).flatten(1).sum(dim=1).mean(),
        }
        mu, log_sigma = outputs["latent_mean"].float(), outputs["latent_log_sigma"].float()
        kl = -0.5 * (1.0 + 2.0 * log_sigma - mu.pow(2) - torch.exp(2.0 * log_sigma))
        terms["kl"] = kl.flatten(1).sum(dim=1).mean()
        if all(f"adv_real_{k}" in outputs for k in _ADV_KEYS):
            terms.update(self._adversarial(outputs))
        w = self.weights
        shared = w["kl"] * terms["kl"] + w["recon"] * terms["recon"]  # in both L_com and L_sem
        total = (w["ssc"] * terms["ssc"] + w["geometry"] * terms["geometry"] + w["semantic"] * terms["semantic"]
                 + 2.0 * shared + w["refine"] * terms["refine"])
        for key in ("adv_generator", "adv_discriminator"):
            if key in terms:
                total = total + w[key] * terms[key]
        terms["total"] = total
        return terms

    def _adversarial(self, outputs: dict) -> dict:
        disc = outputs["adv_real_x"].new_zeros((), dtype=torch.float32)
        gen = disc.clone()
        for k in _ADV_KEYS:
            real, fake, fooled = (outputs[f"adv_{kind}_{k}"].float() for kind in ("real", "fake", "gen"))
            disc = disc + F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            disc = disc + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            margin = torch.sigmoid(real.detach()).mean() - torch.sigmoid(fake.detach()).mean()
            gate = (margin > self.adversarial_gate).float()
            gen = gen + gate * F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        return {"adv_generator": gen, "adv_discriminator": disc}


forknet_loss = register_loss("forknet", targets=("forknet_label", "forknet_surface", "forknet_tsdf"))(ForkNetLoss)
"""ForkNet's losses (module docstring), registered as they are: ``get_loss("forknet", **kwargs)``
takes the keywords of :class:`ForkNetLoss`, whose defaults are the ICCV-era code's."""
