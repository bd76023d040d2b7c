"""The Mix Transformer encoder (MiT-B2) and the SegFormer all-MLP head: the 2D front end of the
released AMMNet (docs/ammnet.md).

SegFormer: Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021. Written from the paper and the AMMNet spec (§4.4(a)); the parameter
names are those of the SegFormer release's ``mit_b2`` (so ``mit_b2.pth`` loads by name), e.g.
``block1.0.attn.kv.weight``, ``patch_embed1.proj.weight``, ``block3.5.mlp.dwconv.dwconv.bias``.

MiT-B2 (:class:`MixVisionTransformer` defaults): four stages of widths 64/128/320/512, heads
1/2/5/8, depths 3/4/6/3, spatial-reduction ratios 8/4/2/1, MLP ratio 4, qkv bias, stochastic depth
0.1 linearly over the 16 blocks. Stage ``i``: overlapping patch embedding (conv k7 s4 for the
first, k3 s2 after; padding k//2; LayerNorm eps 1e-5), blocks (pre-norm, LayerNorm eps 1e-6):
``x += DropPath(Attn(LN(x)))``, ``x += DropPath(MixFFN(LN(x)))``, then a stage LayerNorm (eps
1e-6). Attention: ``q`` from every token, ``k, v`` (one ``kv`` linear) from the tokens after a
``sr x sr`` stride-``sr`` conv + LayerNorm (eps 1e-5) when ``sr > 1``. MixFFN: fc1 -> 3x3
depthwise conv (with bias) -> exact GELU -> fc2. 24,196,288 parameters.

Inputs ``(B, 3, H, W)`` ImageNet-normalised RGB; outputs the four maps ``(B, C_i, H/s_i, W/s_i)``
with ``s = 4, 8, 16, 32`` (ceil division by the convs' arithmetic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

MIT_B2 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), depths=(3, 4, 6, 3),
              sr_ratios=(8, 4, 2, 1), mlp_ratio=4, drop_path_rate=0.1)
"""The MiT-B2 configuration (the :class:`MixVisionTransformer` defaults)."""


class DropPath(nn.Module):
    """Stochastic depth: in training, each sample's residual branch is zeroed with probability
    ``p`` and otherwise scaled by ``1 / (1 - p)``; the identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class OverlapPatchEmbed(nn.Module):
    """Conv ``k x k`` stride ``s`` padding ``k // 2`` + LayerNorm: ``(B, Cin, H, W) ->
    tokens (B, H'W', C)``, with ``(H', W')``."""

    def __init__(self, cin: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    """Efficient self-attention: queries from all ``N = H W`` tokens, keys and values from the
    tokens spatially reduced ``sr x sr`` (``sr > 1``). ``(B, N, C) -> (B, N, C)``."""

    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, stride=sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).view(b, n, self.heads, d).transpose(1, 2)                 # (B, h, N, d)
        src = x
        if self.sr_ratio > 1:
            src = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            src = self.norm(src)                                                # (B, N', C)
        k, v = self.kv(src).view(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # 2 x (B, h, N', d)
        out = F.scaled_dot_product_attention(q, k, v)                           # scale d ** -0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3x3 depthwise conv (with bias) on tokens laid out as ``(h, w)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 -> depthwise 3x3 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    """Pre-norm transformer block (module docstring)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, sr: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sr)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(nn.Module):
    """The MiT encoder (module docstring); MiT-B2 at the defaults. ``forward(x (B, 3, H, W))``
    returns the list of the four stage maps ``(B, C_i, H_i, W_i)``."""

    def __init__(self, *, embed_dims: Sequence[int] = MIT_B2["embed_dims"],
                 num_heads: Sequence[int] = MIT_B2["num_heads"], depths: Sequence[int] = MIT_B2["depths"],
                 sr_ratios: Sequence[int] = MIT_B2["sr_ratios"], mlp_ratio: int = MIT_B2["mlp_ratio"],
                 drop_path_rate: float = MIT_B2["drop_path_rate"], in_channels: int = 3) -> None:
        super().__init__()
        self.depths = tuple(depths)
        rates = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]  # linspace(0, rate, n)
        cin, start = in_channels, 0
        for i, (dim, heads, depth, sr) in enumerate(zip(embed_dims, num_heads, depths, sr_ratios), 1):
            kernel, stride = (7, 4) if i == 1 else (3, 2)
            setattr(self, f"patch_embed{i}", OverlapPatchEmbed(cin, dim, kernel, stride))
            setattr(self, f"block{i}", nn.ModuleList(
                Block(dim, heads, mlp_ratio, sr, rates[start + j]) for j in range(depth)))
            setattr(self, f"norm{i}", nn.LayerNorm(dim, eps=1e-6))
            cin, start = dim, start + depth

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(1, len(self.depths) + 1):
            tokens, h, w = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                tokens = block(tokens, h, w)
            tokens = getattr(self, f"norm{i}")(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)       # (B, C_i, h, w)
            outs.append(x)
        return outs


class _LinearEmbed(nn.Module):
    """``(B, C, h, w) -> (B, E, h, w)`` by one linear layer per pixel (named ``proj``)."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SegFormerHead(nn.Module):
    """The all-MLP decoder as AMMNet uses it: linear 512/320/128/64 -> E on c4..c1, bilinear
    (``align_corners=False``) to c1's size, concatenation ``[c4, c3, c2, c1]``, Dropout(0.5),
    ``linear_fuse`` = 1x1 conv 4E -> E (no bias) + BN + ReLU = the feature map ``(B, E, H/4, W/4)``,
    ``linear_pred`` 1x1 conv E -> K then bilinear (``align_corners=True``) to the image size =
    the 2D logits ``(B, K, H, W)``. 528,908 parameters at E = 256, K = 12."""

    def __init__(self, *, embedding_dim: int = 256, num_classes: int = 12,
                 in_channels: Sequence[int] = MIT_B2["embed_dims"]) -> None:
        super().__init__()
        for i, cin in enumerate(in_channels, 1):
            setattr(self, f"linear_c{i}", _LinearEmbed(cin, embedding_dim))
        self.linear_fuse = nn.Sequential(nn.Conv2d(4 * embedding_dim, embedding_dim, 1, bias=False),
                                         nn.BatchNorm2d(embedding_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.5)
        self.linear_pred = nn.Conv2d(embedding_dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor], image_size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` = the encoder's ``[c1, c2, c3, c4]`` -> ``(feature (B, E, h1, w1), logits (B, K, H, W))``."""
        size = feats[0].shape[2:]
        parts = []
        for i in (4, 3, 2, 1):
            y = getattr(self, f"linear_c{i}")(feats[i - 1])
            parts.append(y if i == 1 else F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        feature = self.linear_fuse(self.dropout(torch.cat(parts, 1)))
        logits = F.interpolate(self.linear_pred(feature), size=tuple(image_size), mode="bilinear", align_corners=True)
        return feature, logits


def load_matching(module: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Load the tensors of ``state`` whose names ``module`` has (the others keep their values), by
    a strict load of the completed state dict; returns ``(missing, unexpected)`` key lists for the
    caller's one-line report (shapes are checked by the caller)."""
    full = module.state_dict()
    missing = [k for k in full if k not in state]
    unexpected = [k for k in state if k not in full]
    full.update({k: v for k, v in state.items() if k in full})
    module.load_state_dict(full)
    return missing, unexpected


def load_mit_weights(encoder: MixVisionTransformer, path: str | Path) -> str:
    """Load SegFormer's ImageNet ``mit_b2.pth`` (a state dict, or a dict with ``"state_dict"``)
    into ``encoder`` by name, keeping what the file lacks as the authors' loader does (mmcv's
    non-strict ``load_checkpoint``: :func:`load_matching`), and return the one-line report of missing and unexpected keys.

    Raises:
        OSError: the file cannot be read. ValueError: not a state dict, or a tensor's shape differs.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # a corrupt or non-tensor pickle
        raise ValueError(f"{path}: not a weights file torch.load(weights_only=True) can read ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    ours = encoder.state_dict()
    for key, value in state.items():
        if key in ours and tuple(value.shape) != tuple(ours[key].shape):
            raise ValueError(f"{path}: {key!r} has shape {tuple(value.shape)}, the encoder's is {tuple(ours[key].shape)}")
    missing, unexpected = load_matching(encoder, state)

    def listed(keys: list[str]) -> str:
        return "none" if not keys else f"{len(keys)} ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"

    return (f"{Path(path).name}: loaded {len(ours) - len(missing)} of {len(ours)} encoder tensors; "
            f"missing {listed(missing)}; unexpected {listed(unexpected)}")


__all__ = ["Attention", "Block", "DropPath", "MIT_B2", "MixFFN", "MixVisionTransformer", "SegFormerHead",
           "load_mit_weights"]
