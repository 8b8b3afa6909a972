"""The weighted circular agreement (WCA) loss of Masto et al. and per-|q|-shell diagnostics."""

from __future__ import annotations

import torch

__all__ = [
    "log_minmax",
    "object_loss",
    "shell_agreement",
    "shell_index",
    "twin_object",
    "wca",
    "wca_loss",
    "wca_loss_phasor",
    "wca_phasor",
]


def log_minmax(intensity: torch.Tensor) -> torch.Tensor:
    """Min–max normalised ``log(1 + I)`` per sample (the model input and the WCA weights).

    Parameters
    ----------
    intensity : torch.Tensor
        ``(..., z, y, x)`` non-negative counts; every leading index is one sample.

    Returns
    -------
    torch.Tensor
        float32 in ``[0, 1]``, same shape.
    """
    x = torch.log1p(intensity.clamp_min(0).to(torch.float32))
    flat = x.flatten(-3)
    lo = flat.amin(-1)[..., None, None, None]
    hi = flat.amax(-1)[..., None, None, None]
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def wca(phi_true: torch.Tensor, phi_pred: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted circular agreement ``|Σ w exp(i(φt − φp))| / Σ w`` per sample, twin-aware.

    Returns the larger of the agreements with ``φt`` and with ``−φt`` (the twin), in ``[0, 1]``.
    """
    w = weights / weights.flatten(-3).sum(-1).clamp_min(1e-12)[..., None, None, None]
    d1 = phi_true - phi_pred
    d2 = -phi_true - phi_pred
    a1 = torch.sqrt((w * torch.cos(d1)).flatten(-3).sum(-1) ** 2
                    + (w * torch.sin(d1)).flatten(-3).sum(-1) ** 2)
    a2 = torch.sqrt((w * torch.cos(d2)).flatten(-3).sum(-1) ** 2
                    + (w * torch.sin(d2)).flatten(-3).sum(-1) ** 2)
    return torch.maximum(a1, a2)


def wca_loss(phi_true: torch.Tensor, phi_pred: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """WCA loss (DESIGN.md): ``min(L(φt, φp), L(−φt, φp))``, ``L = 1 − |Σ w e^{i(φt−φp)}|``.

    Invariant to a global phase offset and to 2π wraps; the min handles the twin; *not*
    invariant to a translation of the object, so every sample must be centred the same way.

    Parameters
    ----------
    phi_true, phi_pred : torch.Tensor
        ``(B, z, y, x)`` (or ``(B, 1, z, y, x)``) phases in radians (unbounded).
    weights : torch.Tensor
        Same shape, ``minmax(log(1 + I))``; normalised to sum 1 per sample here.

    Returns
    -------
    torch.Tensor
        Scalar mean loss over the batch.
    """
    if phi_true.shape != phi_pred.shape or phi_true.shape != weights.shape:
        raise ValueError(
            "phi_true, phi_pred and weights must have one shape, got "
            f"{tuple(phi_true.shape)}, {tuple(phi_pred.shape)}, {tuple(weights.shape)}"
        )
    return (1 - wca(phi_true, phi_pred, weights)).mean()


def shell_index(shape: tuple[int, int, int], edges: tuple[float, ...],
                device: torch.device | None = None) -> torch.Tensor:
    """Index of the |q| shell (pixels from the grid centre) of each voxel; -1 past the last edge."""
    grids = torch.meshgrid(
        *[torch.arange(n, device=device, dtype=torch.float32) - n // 2 for n in shape],
        indexing="ij",
    )
    r = torch.sqrt(sum(g * g for g in grids))
    idx = torch.full(shape, -1, dtype=torch.long, device=device)
    for k in range(len(edges) - 1):
        idx[(r >= edges[k]) & (r < edges[k + 1])] = k
    return idx


def shell_agreement(phi_true: torch.Tensor, phi_pred: torch.Tensor, weights: torch.Tensor,
                    edges: tuple[float, ...] = (0, 2, 4, 6, 8, 12, 16, 24, 32, 64)
                    ) -> list[float]:
    """Twin-aware weighted circular agreement in each |q| shell, averaged over the batch.

    The twin choice is made once per sample on the whole pattern, then applied to every shell.
    """
    shape = tuple(phi_true.shape[-3:])
    idx = shell_index(shape, edges, phi_true.device)
    w = weights
    e1 = w * torch.exp(1j * (phi_true - phi_pred))
    e2 = w * torch.exp(1j * (-phi_true - phi_pred))
    use_twin = e2.flatten(-3).sum(-1).abs() > e1.flatten(-3).sum(-1).abs()
    e = torch.where(use_twin[..., None, None, None], e2, e1)
    out = []
    for k in range(len(edges) - 1):
        sel = idx == k
        if not sel.any():
            out.append(float("nan"))
            continue
        num = e[..., sel].sum(-1).abs()
        den = w[..., sel].sum(-1).clamp_min(1e-12)
        out.append(float((num / den).mean()))
    return out


def wca_phasor(phi_true: torch.Tensor, phasor: torch.Tensor, weights: torch.Tensor
               ) -> torch.Tensor:
    """:func:`wca` for a prediction given as a unit phasor ``e^{iφp}`` (complex), per sample.

    Equal to ``wca(phi_true, angle(phasor), weights)`` when ``|phasor| = 1``; differentiable
    where the predicted field vanishes (no ``angle``).
    """
    w = weights / weights.flatten(-3).sum(-1).clamp_min(1e-12)[..., None, None, None]
    c = phasor.conj()
    e = torch.polar(torch.ones_like(phi_true), phi_true)
    a1 = (w * e * c).flatten(-3).sum(-1).abs()
    a2 = (w * e.conj() * c).flatten(-3).sum(-1).abs()
    return torch.maximum(a1, a2)


def wca_loss_phasor(phi_true: torch.Tensor, phasor: torch.Tensor, weights: torch.Tensor
                    ) -> torch.Tensor:
    """:func:`wca_loss` for a unit-phasor prediction (see :func:`wca_phasor`); batch mean."""
    if phi_true.shape != phasor.shape or phi_true.shape != weights.shape:
        raise ValueError(
            "phi_true, phasor and weights must have one shape, got "
            f"{tuple(phi_true.shape)}, {tuple(phasor.shape)}, {tuple(weights.shape)}"
        )
    return (1 - wca_phasor(phi_true, phasor, weights)).mean()


def twin_object(obj: torch.Tensor) -> torch.Tensor:
    """The twin ``ρ*(−r)`` of centred objects ``(..., z, y, x)``, built in Fourier space."""
    from .. import physics

    return physics.ifft_centered(physics.fft_centered(obj).conj())


def object_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Real-space loss ``1 − |⟨p, t⟩|² / (‖p‖² ‖t‖²)``, twin-min, batch mean.

    Invariant to a complex scale (global phase offset and amplitude); the min over ``t`` and
    its twin handles the twin ambiguity. A smooth companion of the WCA loss for training the
    ``"patterson"`` model (see docs/MODEL_CARD.md).

    Parameters
    ----------
    pred, true : torch.Tensor
        ``(B, z, y, x)`` complex centred objects.
    """
    if pred.shape != true.shape:
        raise ValueError(
            f"pred and true must have one shape, got {tuple(pred.shape)}, {tuple(true.shape)}"
        )
    p = pred.flatten(1)
    pn = (p.abs() ** 2).sum(-1).clamp_min(1e-20)
    out = []
    for t in (true, twin_object(true)):
        t = t.flatten(1).to(p.dtype)
        tn = (t.abs() ** 2).sum(-1).clamp_min(1e-20)
        out.append(1 - ((p.conj() * t).sum(-1).abs() ** 2) / (pn * tn))
    return torch.minimum(out[0], out[1]).mean()
