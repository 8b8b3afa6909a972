"""Widen a trained model's trunk without changing what it computes (Net2Net, Chen et al. 2016).

A wider trunk can then be trained on from the narrower one's skill instead of from scratch:
each new channel of a level copies one of the level's old channels (round robin), and every
layer that reads a copied channel shares the old weight among the copies (``1/k ± ε``, summing
to 1, so that the copies start equal in effect and train apart). Instance and batch
statistics of a copy equal those of its source, so normalisation layers copy too.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ._phase_model import PhaseModel

__all__ = ["widen_model"]


def _sources(old: int, new: int) -> torch.Tensor:
    """Old channel copied by each of ``new`` channels: itself, then round robin."""
    return torch.arange(new) % old


def _split(src: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """The share of an old weight each reading entry gets: ``1/k`` plus a zero-sum jitter."""
    share = torch.ones(len(src), dtype=torch.float64)
    counts = torch.bincount(src)
    for c in torch.nonzero(counts > 1).flatten():
        pos = torch.nonzero(src == c).flatten()
        d = eps * torch.randn(len(pos), generator=gen, dtype=torch.float64)
        share[pos] = 1.0 / len(pos) + (d - d.mean())
    return share


def _copy_norm(dst: nn.Module, src: nn.Module, out_idx: torch.Tensor) -> None:
    if getattr(dst, "weight", None) is not None:
        dst.weight.copy_(src.weight[out_idx])
        dst.bias.copy_(src.bias[out_idx])
    for name in ("running_mean", "running_var"):
        if getattr(dst, name, None) is not None:
            getattr(dst, name).copy_(getattr(src, name)[out_idx])


def _copy_conv(dst: nn.Module, src: nn.Module, out_idx: torch.Tensor | None,
               in_idx: torch.Tensor | None, in_share: torch.Tensor | None) -> None:
    """Copy a (transposed) convolution: output entries by ``out_idx``, input entries by
    ``in_idx`` scaled by ``in_share`` (None: unchanged)."""
    out_dim, in_dim = (0, 1) if isinstance(src, nn.Conv3d) else (1, 0)
    w = src.weight.detach()
    if out_idx is not None:
        w = w.index_select(out_dim, out_idx)
    if in_idx is not None:
        w = w.index_select(in_dim, in_idx)
        shape = [1] * w.ndim
        shape[in_dim] = len(in_idx)
        w = (w.double() * in_share.view(shape)).to(w.dtype)
    dst.weight.copy_(w)
    if src.bias is not None:
        dst.bias.copy_(src.bias if out_idx is None else src.bias[out_idx])


def widen_model(model: PhaseModel, channels: Sequence[int], *, eps: float = 0.01,
                seed: int = 0) -> PhaseModel:
    """A copy of ``model`` whose trunk has ``channels`` per level, computing the same function.

    Parameters
    ----------
    model : PhaseModel
        The trained model (any kind; instance or batch normalisation, not group).
    channels : sequence of int
        New channels per level, as many levels as the model has, each at least the old count.
    eps : float
        Jitter of the shares among copies (relative; 0 leaves the copies identical, and then
        they never train apart).
    seed : int
        Seed of the jitter.

    Returns
    -------
    PhaseModel
        In float32 on the CPU; its output equals ``model``'s to float rounding.
    """
    cfg = model.config
    old = tuple(cfg.unet.channels)
    new = tuple(int(c) for c in channels)
    if len(new) != len(old):
        raise ValueError(f"channels must list {len(old)} levels, got {list(new)}")
    if any(n < o for n, o in zip(new, old, strict=True)):
        raise ValueError(f"channels must be at least the model's {list(old)}, got {list(new)}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if cfg.unet.norm == "group":
        # a group's statistics mix channels, so a copied channel would not normalise alike
        raise ValueError("model: widen_model cannot widen group-normalised trunks")
    unet_cfg = dataclasses.replace(cfg.unet, channels=new)
    wide = PhaseModel(dataclasses.replace(cfg, unet=unet_cfg))
    src_net = copy.deepcopy(model.unet).float().cpu()
    dst_net = wide.unet
    gen = torch.Generator().manual_seed(int(seed))
    idx = [_sources(o, n) for o, n in zip(old, new, strict=True)]
    share = [_split(i, eps, gen) for i in idx]
    in_feat = torch.arange(cfg.unet.in_channels)
    one = torch.ones(cfg.unet.in_channels, dtype=torch.float64)

    def block(dst: nn.Sequential, src: nn.Sequential, level: int,
              first_in: tuple[torch.Tensor, torch.Tensor]) -> None:
        convs = 0
        for d, s in zip(dst, src, strict=True):
            if isinstance(d, nn.Conv3d):
                i_idx, i_share = first_in if convs == 0 else (idx[level], share[level])
                _copy_conv(d, s, idx[level], i_idx, i_share)
                convs += 1
            elif not isinstance(d, nn.LeakyReLU):
                _copy_norm(d, s, idx[level])

    with torch.no_grad():
        block(dst_net.stem, src_net.stem, 0, (in_feat, one))
        block(dst_net.enc[0], src_net.enc[0], 0, (idx[0], share[0]))
        for i in range(1, len(old)):
            _copy_conv(dst_net.down[i - 1], src_net.down[i - 1], idx[i], idx[i - 1],
                       share[i - 1])
            block(dst_net.enc[i], src_net.enc[i], i, (idx[i], share[i]))
        for k, i in enumerate(range(len(old) - 1, 0, -1)):
            _copy_conv(dst_net.up[k], src_net.up[k], idx[i - 1], idx[i], share[i])
            # the decoder reads [upsampled, skip], both of level i - 1
            cat = torch.cat([idx[i - 1], old[i - 1] + idx[i - 1]])
            block(dst_net.dec[k], src_net.dec[k], i - 1,
                  (cat, torch.cat([share[i - 1], share[i - 1]])))
        head_in = (torch.cat([idx[0], old[0] + in_feat]), torch.cat([share[0], one]))
        if cfg.unet.stem_stride == 2:
            _copy_conv(dst_net.head[0], src_net.head[0], idx[0], idx[0], share[0])
            _copy_conv(dst_net.head[2], src_net.head[2], None, *head_in)
        else:
            _copy_conv(dst_net.head[0], src_net.head[0], None, *head_in)
    return wide
