"""The shipped AI refinement on arrays that are not the model's 64³ cube.

The CXI contract takes a 3D intensity of any shape with the Bragg peak near the centre, and a
rocking curve rarely has as many angles as the detector region has pixels. Each crystal is
simulated on an ``m³`` grid (seeds 4_300_000_000 + 1000 k, weak class unless the variant ends
in ``_medium``, span 1–2.5π) and its pattern is then cut to the variant's box, centred on
the Bragg peak (``m // 2`` lands on ``box // 2``): a shorter axis keeps only the low |q| of
that axis, i.e. the same crystal seen at a coarser resolution along it. The truth on the cut
grid is the inverse transform of the crystal's noise-free ψ(q) cut the same way; its support
is where that amplitude exceeds half its maximum. Variants (box from grid):

- ``z48``: (48, 64, 64) from 64³ — fewer rocking angles;
- ``z32``: (32, 64, 64) from 64³;
- ``odd``: (63, 65, 61) from 96³, oversampling 2.3–3.2 on the 96 grid — odd sides;
- ``wide``: (64, 128, 128) from 128³, oversampling 3–4 — a detector region larger than the
  model's grid (the model sees the central 64 pixels of y and x);
- ``big``: (128, 128, 128) from 128³, oversampling 2.2–2.8 — the crystal fills half the grid
  and the model sees only the central 64³ of the pattern.

Methods as ``generalisation.py``: AI = the shipped ``phase_ai``; ``--random`` RAAR 100 + ER
100 from random phases; ``--truth`` the same from the true φ(q) on the cut grid.

    python benchmarks/research/grid_shapes.py --variants z48 z32 odd wide big --n 10 \\
        --random --truth
"""

from __future__ import annotations

import torch
from generalisation import probe_arguments, score_variant

GRIDS: dict[str, dict] = {
    "z48": {"n": 64, "box": (48, 64, 64), "oversampling": None},
    "z32": {"n": 64, "box": (32, 64, 64), "oversampling": None},
    "odd": {"n": 96, "box": (63, 65, 61), "oversampling": (2.3, 3.2)},
    "wide": {"n": 128, "box": (64, 128, 128), "oversampling": (3.0, 4.0)},
    "big": {"n": 128, "box": (128, 128, 128), "oversampling": (2.2, 2.8)},
}
VARIANTS = (*GRIDS, *(f"{g}_medium" for g in GRIDS))
SEED0 = 4_300_000_000


def _window(m: int, b: int) -> slice:
    """The ``b`` indices of an ``m`` axis that put index ``m // 2`` at ``b // 2``."""
    lo = m // 2 - b // 2
    return slice(lo, lo + b)


def cut(variant: str, seed: int):
    """``(intensity, mask, phase_q, obj, support, extra)`` of one crystal cut to the box."""
    from bcdi_stream import physics
    from bcdi_stream.simulation import simulate_crystal

    base, _, level = variant.partition("_")
    g = GRIDS[base]
    kw = {"n": g["n"], "strain": (torch.pi, 2.5 * torch.pi) if level == "medium" else "weak"}
    if g["oversampling"] is not None:
        kw["oversampling"] = g["oversampling"]
    c = simulate_crystal(seed, device="cpu", **kw)
    sl = tuple(_window(g["n"], b) for b in g["box"])
    psi = physics.fft_centered(c.obj)[sl]
    obj = physics.ifft_centered(psi).to(torch.complex64)
    amp = obj.abs()
    support = amp > 0.5 * amp.max()
    extra = {"box": list(g["box"]), "grid": g["n"],
             "oversampling": round(float(c.meta["oversampling_measured"]), 2),
             "span": round(float(c.meta["phase_span"]), 2)}
    return (c.intensity[sl].contiguous(), c.mask[sl].contiguous(), torch.angle(psi), obj,
            support, extra)


def main() -> None:
    args = probe_arguments(__doc__, list(VARIANTS), ["z48"])
    for variant in args.variants:
        score_variant(variant, ((SEED0 + 1000 * k, *cut(variant, SEED0 + 1000 * k))
                                for k in range(args.n)), args)


if __name__ == "__main__":
    main()
