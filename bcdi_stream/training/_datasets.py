"""Simulated crystals for training, validation and the model benchmark, from disjoint seeds.

Seed ranges (``simulate_crystal(seed, ...)``): training ``TRAIN_SEED0 + k``, validation
``VAL_SEED0 + k``, benchmark test set ``TEST_SEED0 + k``; a run never draws across ranges.

Strain classes (peak-to-peak phase of the smooth part):

- ``weak``: < π, no dislocation (the simulator's ``"weak"`` level).
- ``medium``: π–4π (the simulator's ``"medium"`` level).
- ``strong``: 4.2π–7π, ~35 % with dislocations, on the larger crystals of oversampling
  2–2.6, and a mean phase gradient ≤ :data:`MAX_MEAN_GRADIENT` rad/voxel so that the
  diffraction stays sampled (the simulator's own ``"strong"`` level reaches 1–2.3 rad/voxel,
  near Nyquist: aliased, not a phasing test). Draws over the cap are replaced by the next seed.
  The cap is for 64³ grids and scales as 64/N on other grids.

A class name with the suffix :data:`DISLOCATED` (``"weak+disl"``, ``"medium+disl"``,
``"strong+disl"``) is that class with 1–2 dislocations in every crystal (for validation and
evaluation sets); ``dislocation_probability`` of the training stream sets the odds of
dislocations in every class at once (by default the simulator's: 0, 15 %, 35 %). Likewise the
suffix :data:`FAULTED` (``"weak+fault"``, also after ``+disl``: ``"medium+disl+fault"``) gives
every crystal a planar defect (a stacking fault or a twin lamella, the simulator's
``"fault"`` model), and ``fault_probability`` sets its odds in the training stream (by
default 0); the suffix :data:`LOOPED` (last: ``"weak+loop"``, ``"medium+fault+loop"``) gives
every crystal a dislocation loop (the simulator's ``"loop"`` model), with
``loop_probability`` for the training stream (by default 0). The suffix :data:`FIELDED`
(first, right after the strain level: ``"strong+field"``, ``"strong+field+disl"``) makes the
smooth part of every crystal the Gaussian random field alone (the simulator's
``field_probability``; the mixture draws it alone in about one crystal in six), the model's
weakest case above 4π (docs/MODEL_RESEARCH.md, session 20), with ``field_probability`` for
the training stream (by default the mixture). The suffix :data:`NETWORKED` (after every other:
``"weak+net"``, ``"medium+net"``) gives every crystal a dislocation network, 3–4 straight
dislocations (the simulator's ``network_probability``; session 22 found v3 solving 6 and 4 of
10 weak and medium crystals with one), with ``network_probability`` for the training stream
(by default 0). The suffix :data:`PARTIAL` (``"weak+coh"``, ``"medium+coh"``) gives
every pattern partial coherence beyond the detector blur, along a random direction in the
detector plane or along the rocking axis (the simulator's ``coherence_probability``; session
24: blurs along one axis or an oblique direction that v3, trained on isotropic ones, reads as
a smaller crystal), with ``coherence_probability`` for the training stream (by default 0).
The suffix :data:`HABIT` (last: ``"medium+habit"``) makes every crystal a needle or a thin
plate, habits beyond the simulator's default ranges (its ``habit_probability``; session 29:
v3 phases medium crystals of these habits less often than the default rods and platelets),
with ``habit_probability`` for the training stream (by default 0). The suffix
:data:`POLYNOMIAL` (right after the strain level or :data:`FIELDED`: ``"strong+poly"``) makes
the smooth part of every crystal a low-order polynomial field alone — a bending, a torsion or a
random quadratic and cubic field (the simulator's ``polynomial_probability``; session 32: v3
phases such strong strain on 1 of 20 crystals, the true phase 19 of 20) —, with
``polynomial_probability`` for the training stream (by default 0).

Symmetries: a simulated crystal is also a valid training sample under any of the
:data:`N_SYMMETRIES` maps of the grid that keep the rocking axis ``z`` (its blur and gaps are
in the detector plane): reflections about the centre ``N // 2`` along any axes, with or without
swapping the detector axes ``y`` and ``x``. The pattern, the reciprocal-space phase and the
object map together (``FFT(ρ(−z, y, x)) = F(−q_z, q_y, q_x)``; a swap of axes commutes with the
FFT), so ``reuse > 1`` in :func:`training_batches` shows each crystal again under other
symmetries: more samples per simulated crystal where simulation sets the pace (a GPU).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..physics import reflect, reflection_axes
from ..simulation import CrystalSpec, SimulatedCrystal, simulate_capped

__all__ = [
    "DISLOCATED",
    "FAULTED",
    "FIELDED",
    "HABIT",
    "LOOPED",
    "MAX_MEAN_GRADIENT",
    "NETWORKED",
    "N_SYMMETRIES",
    "PARTIAL",
    "POLYNOMIAL",
    "STRAIN_CLASSES",
    "TEST_SEED0",
    "TRAIN_SAMPLES",
    "TRAIN_SEED0",
    "VAL_SEED0",
    "Batch",
    "apply_symmetry",
    "class_arguments",
    "draw_batch",
    "draw_crystal",
    "fixed_set",
    "training_batches",
]

#: Grid maps that keep the rocking axis: 8 reflections × (swap of y and x or not).
N_SYMMETRIES = 16
TRAIN_SEED0 = 1_000_000_000
VAL_SEED0 = 2_000_000_000
TEST_SEED0 = 3_000_000_000
#: Training samples a run can draw: sample ``k`` uses seeds from ``TRAIN_SEED0 + 100 * k``,
#: so ``k`` must stay below this for its seeds to stay out of the validation range.
TRAIN_SAMPLES = (VAL_SEED0 - TRAIN_SEED0) // 100
#: Cap on the mean |∇φ| (rad/voxel) of the ``strong`` class.
MAX_MEAN_GRADIENT = 0.9
#: Strain classes and their simulator arguments.
STRAIN_CLASSES: dict[str, dict] = {
    "weak": {"strain": "weak"},
    "medium": {"strain": "medium", "oversampling": (2.0, 3.0)},
    "strong": {"strain": (4.2 * math.pi, 7.0 * math.pi), "oversampling": (2.0, 2.6)},
}


#: Suffix of a strain-class name whose smooth strain is the Gaussian random field alone (first).
FIELDED = "+field"
#: Suffix of a strain-class name whose smooth strain is a low-order polynomial field alone.
POLYNOMIAL = "+poly"
#: Suffix of a strain-class name whose crystals all carry dislocations.
DISLOCATED = "+disl"
#: Suffix of a strain-class name whose crystals all carry a planar defect (after ``+disl``).
FAULTED = "+fault"
#: Suffix of a strain-class name whose crystals all carry a dislocation loop.
LOOPED = "+loop"
#: Suffix of a strain-class name whose crystals all carry a dislocation network.
NETWORKED = "+net"
#: Suffix of a strain-class name whose patterns all have partial coherence.
PARTIAL = "+coh"
#: Suffix of a strain-class name whose crystals are all needles or thin plates (last).
HABIT = "+habit"
#: The defect suffixes in the order they may follow the strain level, and the simulator odds
#: (:meth:`CrystalSpec.random`) each one sets to 1.
_SUFFIX_ODDS: dict[str, str] = {FIELDED: "field_probability",
                                POLYNOMIAL: "polynomial_probability",
                                DISLOCATED: "dislocation_probability",
                                FAULTED: "fault_probability", LOOPED: "loop_probability",
                                NETWORKED: "network_probability",
                                PARTIAL: "coherence_probability",
                                HABIT: "habit_probability"}


def base_class(strain_class: str) -> tuple[str, tuple[str, ...]]:
    """``(strain level, suffixes)`` of a class name, e.g. ``("medium", ("+disl",
    "+loop"))`` for ``"medium+disl+loop"``.

    Raises ``ValueError`` (naming ``strain_class``) unless the name is a key of
    :data:`STRAIN_CLASSES` followed by any of :data:`FIELDED`, :data:`POLYNOMIAL`,
    :data:`DISLOCATED`,
    :data:`FAULTED`, :data:`LOOPED`, :data:`NETWORKED`, :data:`PARTIAL` and :data:`HABIT`,
    each at most once and in that order.
    """
    name, found = strain_class, []
    for suffix in reversed(_SUFFIX_ODDS):
        if name.endswith(suffix):
            found.insert(0, suffix)
            name = name.removesuffix(suffix)
    if name not in STRAIN_CLASSES:
        raise ValueError(
            f"strain_class: strain class must be one of {tuple(STRAIN_CLASSES)}, optionally "
            f"followed by {' '.join(map(repr, _SUFFIX_ODDS))} in that order, got "
            f"{strain_class!r}"
        )
    return name, tuple(found)


def class_arguments(strain_class: str, dislocation_probability: float | None = None,
                    fault_probability: float | None = None,
                    loop_probability: float | None = None,
                    field_probability: float | None = None,
                    network_probability: float | None = None,
                    coherence_probability: float | None = None,
                    habit_probability: float | None = None,
                    polynomial_probability: float | None = None) -> dict:
    """Simulator arguments (:meth:`CrystalSpec.random`) of a strain class.

    Parameters
    ----------
    strain_class : str
        A key of :data:`STRAIN_CLASSES`, optionally followed by :data:`FIELDED` (the smooth
        strain is the random field alone), :data:`POLYNOMIAL` (a low-order polynomial field
        alone), :data:`DISLOCATED` (every crystal gets 1–2
        dislocations), :data:`FAULTED` (a planar defect), :data:`LOOPED` (a dislocation
        loop), :data:`NETWORKED` (3–4 dislocations), :data:`PARTIAL` (partial coherence) and
        :data:`HABIT` (a needle or a thin plate), in that order.
    dislocation_probability : float, optional
        Odds of dislocations for a class without :data:`DISLOCATED` (default: the simulator's
        odds for that strain level).
    fault_probability : float, optional
        Odds of a planar defect for a class without :data:`FAULTED` (default: none).
    loop_probability : float, optional
        Odds of a dislocation loop for a class without :data:`LOOPED` (default: none).
    field_probability : float, optional
        Odds that the smooth strain is the random field alone, for a class without
        :data:`FIELDED` (default: the simulator's mixture).
    network_probability : float, optional
        Odds of a dislocation network for a class without :data:`NETWORKED` (default: none).
    coherence_probability : float, optional
        Odds of partial coherence for a class without :data:`PARTIAL` (default: none).
    habit_probability : float, optional
        Odds of a needle or a thin plate for a class without :data:`HABIT` (default: none).
    polynomial_probability : float, optional
        Odds that the smooth strain is a low-order polynomial field alone, for a class without
        :data:`POLYNOMIAL` (default: none).

    Returns
    -------
    dict
    """
    base, suffixes = base_class(strain_class)
    odds = {"dislocation_probability": dislocation_probability,
            "fault_probability": fault_probability, "loop_probability": loop_probability,
            "field_probability": field_probability, "network_probability": network_probability,
            "coherence_probability": coherence_probability,
            "habit_probability": habit_probability,
            "polynomial_probability": polynomial_probability}
    for name, p in odds.items():
        if p is not None and not 0 <= p <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    kw = dict(STRAIN_CLASSES[base])
    for suffix, name in _SUFFIX_ODDS.items():
        p = 1.0 if suffix in suffixes else odds[name]
        # the simulator's own dislocation odds stand unless overridden; the others default to 0
        if p is not None and (p or name == "dislocation_probability"):
            kw[name] = float(p)
    return kw


def draw_crystal(seed: int, strain_class: str, n: int = 64, max_tries: int = 50
                 ) -> tuple[SimulatedCrystal, int]:
    """Simulate the first acceptable crystal of ``strain_class`` from ``seed`` onwards.

    Parameters
    ----------
    seed : int
        First seed tried.
    strain_class : str
        ``"weak"``, ``"medium"`` or ``"strong"``, optionally with the suffix
        :data:`DISLOCATED` (see the module docstring).
    n : int
        Grid side.
    max_tries : int
        Seeds tried before giving up.

    Returns
    -------
    (SimulatedCrystal, int)
        The crystal and the seed that produced it.
    """
    class_arguments(strain_class)
    return draw_batch([(seed, strain_class)], n, "cpu", max_tries)[0]


def _cap(strain_class: str, n: int) -> float | None:
    """The cap on the mean phase gradient of a class's crystals (only ``strong`` has one)."""
    # the cap scales as 64/n: the same crystals on a coarser grid are steeper per voxel
    if base_class(strain_class)[0] != "strong":
        return None
    return MAX_MEAN_GRADIENT * 64 / n


def draw_batch(items: list[tuple[int, str]], n: int = 64, device: str | torch.device = "cpu",
               max_tries: int = 50, *, dislocation_probability: float | None = None,
               fault_probability: float | None = None, loop_probability: float | None = None,
               field_probability: float | None = None,
               network_probability: float | None = None,
               coherence_probability: float | None = None,
               habit_probability: float | None = None,
               polynomial_probability: float | None = None
               ) -> list[tuple[SimulatedCrystal, int]]:
    """:func:`draw_crystal` for many ``(seed, strain_class)`` at once, vectorised on ``device``.

    Item ``i`` gets the same crystal as ``draw_crystal(*items[i], n)`` (to float rounding on
    other devices): every round simulates the pending items together and moves the rejected
    ones to their next seed.

    Parameters
    ----------
    items : list of (int, str)
        First seed tried and strain class of each crystal.
    n : int
        Grid side.
    device : str or torch.device
        Where the crystals are simulated (and stay): ``"cuda"`` vectorises 64 at a time.
    max_tries : int
        Seeds tried per item before giving up.
    dislocation_probability : float, optional
        Odds of dislocations in every class without the :data:`DISLOCATED` suffix (default:
        the simulator's odds of each strain level).
    fault_probability : float, optional
        Odds of a planar defect in every class without the :data:`FAULTED` suffix (default:
        none).
    loop_probability : float, optional
        Odds of a dislocation loop in every class without the :data:`LOOPED` suffix (default:
        none).
    field_probability : float, optional
        Odds that the smooth strain is the random field alone in every class without the
        :data:`FIELDED` suffix (default: the simulator's mixture).
    network_probability : float, optional
        Odds of a dislocation network in every class without the :data:`NETWORKED` suffix
        (default: none).
    coherence_probability : float, optional
        Odds of partial coherence in every class without the :data:`PARTIAL` suffix (default:
        none).
    habit_probability : float, optional
        Odds of a needle or a thin plate in every class without the :data:`HABIT` suffix
        (default: none).
    polynomial_probability : float, optional
        Odds that the smooth strain is a low-order polynomial field alone in every class
        without the :data:`POLYNOMIAL` suffix (default: none).

    Returns
    -------
    list of (SimulatedCrystal, int)
        The crystals and the seeds that produced them, in the order of ``items``.
    """
    if not items:
        raise ValueError("items must not be empty")
    try:
        kwargs = {name: class_arguments(name, dislocation_probability, fault_probability,
                                        loop_probability, field_probability,
                                        network_probability, coherence_probability,
                                        habit_probability, polynomial_probability)
                  for _, name in items}
    except ValueError as exc:
        raise ValueError(f"items: {exc}") from exc
    out: list[tuple[SimulatedCrystal, int] | None] = [None] * len(items)
    seeds = [int(s) for s, _ in items]
    pending = list(range(len(items)))
    for _ in range(max_tries):
        specs = [CrystalSpec.random(seeds[i], n=n, **kwargs[items[i][1]]) for i in pending]
        drawn = simulate_capped(specs, [_cap(items[i][1], n) for i in pending], device)
        rejected = []
        for i, c in zip(pending, drawn, strict=True):
            if c is not None:
                out[i] = (c, seeds[i])
            else:
                seeds[i] += 1
                rejected.append(i)
        pending = rejected
        if not pending:
            return [o for o in out if o is not None]
    raise RuntimeError(
        "no acceptable crystal in seeds "
        + ", ".join(f"{items[i][0]}..{items[i][0] + max_tries} ({items[i][1]})" for i in pending)
    )


def apply_symmetry(x: torch.Tensor, index: int) -> torch.Tensor:
    """Map a centred array by symmetry ``index`` (see the module docstring).

    Parameters
    ----------
    x : torch.Tensor
        ``(..., z, y, x)`` centred array: a pattern, a reciprocal-space phase or an object.
    index : int
        ``0 … N_SYMMETRIES − 1``; bit ``a`` (``a`` = 0, 1, 2) reflects spatial axis ``a``
        about ``N // 2``, bit 3 then swaps ``y`` and ``x``; 0 is the identity.

    Returns
    -------
    torch.Tensor
    """
    if not 0 <= int(index) < N_SYMMETRIES:
        raise ValueError(f"index must be in 0..{N_SYMMETRIES - 1}, got {index}")
    out = reflect(x, reflection_axes(int(index) & 7))
    return out.transpose(-1, -2) if int(index) & 8 else out


def fixed_set(seed0: int, counts: dict[str, int], n: int = 64, stride: int = 1000
              ) -> Iterator[tuple[str, int, SimulatedCrystal]]:
    """Yield ``(class, seed, crystal)`` for a fixed evaluation set (validation or test).

    Crystal ``k`` of a class starts its seed search at ``seed0 + class_offset + k * stride``,
    so each set is reproducible and adding crystals never changes the earlier ones.
    """
    for ci, (name, count) in enumerate(counts.items()):
        for k in range(int(count)):
            c, s = draw_crystal(seed0 + ci * 10_000_000 + k * stride, name, n)
            yield name, s, c


@dataclass
class Batch:
    """One training batch: ``intensity``, ``phase_q``, ``obj`` ``(B, N, N, N)``, seeds, classes."""

    intensity: torch.Tensor
    phase_q: torch.Tensor
    obj: torch.Tensor
    seeds: list[int]
    classes: list[str]

    def _mapped(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """This batch with ``fn`` applied to each of its tensors."""
        return dataclasses.replace(
            self, **{f: fn(getattr(self, f)) for f in ("intensity", "phase_q", "obj")})

    def to(self, device: str | torch.device) -> Batch:
        """This batch with its tensors on ``device``."""
        return self._mapped(lambda t: t.to(device, non_blocking=True))

    def under(self, symmetries: list[int]) -> Batch:
        """This batch with crystal ``i`` mapped by ``symmetries[i]`` (:func:`apply_symmetry`)."""
        if len(symmetries) != len(self.seeds):
            raise ValueError(f"symmetries must have one entry per crystal ({len(self.seeds)}), "
                             f"got {len(symmetries)}")
        return self._mapped(lambda t: torch.stack(
            [apply_symmetry(x, k) for x, k in zip(t, symmetries, strict=True)]))

    @classmethod
    def of(cls, drawn: list[tuple[SimulatedCrystal, int]], classes: list[str]) -> Batch:
        """Stack the crystals :func:`draw_batch` returned (and the classes asked for)."""
        return cls(intensity=torch.stack([c.intensity for c, _ in drawn]),
                   phase_q=torch.stack([c.phase_q for c, _ in drawn]),
                   obj=torch.stack([c.obj for c, _ in drawn]),
                   seeds=[s for _, s in drawn], classes=list(classes))


def class_mix(step: int, steps: int, curriculum: float, strong_share: float = 0.5
              ) -> dict[str, float]:
    """Class probabilities at ``step``: weak-heavy at first, then ``strong_share`` strong and the
    rest split evenly between weak and medium (25/25/50 by default).

    The strong share ramps linearly from ``min(0.1, strong_share)`` to ``strong_share`` over the
    first ``curriculum`` fraction of the run.
    """
    if not 0 <= strong_share <= 1:
        raise ValueError(f"strong_share must be in [0, 1], got {strong_share}")
    ramp = 1.0 if curriculum <= 0 else min(1.0, step / max(1.0, curriculum * steps))
    lo = min(0.1, strong_share)
    strong = lo + (strong_share - lo) * ramp
    rest = 1.0 - strong
    return {"weak": rest / 2, "medium": rest / 2, "strong": strong}


def training_batches(start_sample: int, batch_size: int, steps: int, curriculum: float,
                     n: int = 64, start_step: int = 0,
                     device: str | torch.device = "cpu",
                     strong_share: float = 0.5,
                     dislocation_probability: float | None = None,
                     workers: int = 0, reuse: int = 1,
                     fault_probability: float | None = None,
                     loop_probability: float | None = None,
                     field_probability: float | None = None,
                     network_probability: float | None = None,
                     coherence_probability: float | None = None,
                     habit_probability: float | None = None,
                     polynomial_probability: float | None = None) -> Iterator[Batch]:
    """Endless stream of training batches of fresh crystals (seeds from :data:`TRAIN_SEED0`).

    Sample ``k`` (counted over the whole run, so a resumed run continues the sequence) uses
    seeds from ``TRAIN_SEED0 + 100 * k`` and draws its class from a generator seeded by ``k``.
    The batch is simulated on ``device`` (:func:`draw_batch`: one by one on a CPU, vectorised on
    a GPU; the same crystals either way) and stays there. ``dislocation_probability`` sets the
    odds of dislocations in every class (default: the simulator's odds of each strain level),
    ``fault_probability`` those of a planar defect and ``loop_probability`` those of a
    dislocation loop (default: none), ``field_probability`` those of a smooth strain made of
    the random field alone (default: the simulator's mixture), ``network_probability`` those
    of a dislocation network (3–4 lines; default: none), ``coherence_probability`` those of
    partial coherence beyond the detector blur, ``habit_probability`` those of a needle or
    a thin plate and ``polynomial_probability`` those of a smooth strain made of a low-order
    polynomial field alone (default: none). ``workers > 0``
    simulates the batches on the CPU in that many processes (one torch thread each, batches
    in order, the same crystals) and moves each to ``device``: on a GPU the simulation, not
    the network, sets the pace (0.65 s per batch of 32 vectorised on an H200, 0.02 s for the
    network step).

    ``reuse > 1`` yields each simulated batch for ``reuse`` consecutive steps: first as drawn,
    then with each crystal under a symmetry other than the identity, drawn from a generator
    seeded by its seed and the repeat (:func:`apply_symmetry`). Steps then come in groups of
    ``reuse`` on the same crystals: ``start_sample`` is the first sample of ``start_step``'s
    group, and the class mix follows the group's first step.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if reuse < 1:
        raise ValueError(f"reuse must be >= 1, got {reuse}")
    dev = torch.device(device)
    skip = start_step % reuse
    groups = _BatchSteps(start_sample, batch_size, steps, curriculum, n, start_step - skip,
                         reuse, strong_share,
                         {"dislocation_probability": dislocation_probability,
                          "fault_probability": fault_probability,
                          "loop_probability": loop_probability,
                          "field_probability": field_probability,
                          "network_probability": network_probability,
                          "coherence_probability": coherence_probability,
                          "habit_probability": habit_probability,
                          "polynomial_probability": polynomial_probability},
                         "cpu" if workers else dev)
    return _stream(groups, dev, workers, reuse, skip)


def _stream(groups: _BatchSteps, dev: torch.device, workers: int, reuse: int, skip: int
            ) -> Iterator[Batch]:
    """The batches of :func:`training_batches` (a generator, after its eager checks)."""
    if workers:
        from torch.utils.data import DataLoader

        drawn: Iterator[Batch] = (
            b.to(dev) for b in DataLoader(groups, batch_size=None, num_workers=workers,
                                          prefetch_factor=4, pin_memory=dev.type == "cuda"))
    else:
        drawn = (groups[i] for i in itertools.count())
    for batch in drawn:
        for repeat in range(skip, reuse):
            yield batch if repeat == 0 else batch.under(
                [int(np.random.default_rng([s, repeat, 0x5EE]).integers(1, N_SYMMETRIES))
                 for s in batch.seeds])
        skip = 0


class _BatchSteps(torch.utils.data.Dataset):
    """Simulated batch ``i`` of :func:`training_batches` (step ``start_step + i·stride``)."""

    def __init__(self, start_sample: int, batch_size: int, steps: int, curriculum: float,
                 n: int, start_step: int, stride: int, strong_share: float,
                 odds: dict[str, float | None], device: str | torch.device) -> None:
        self.args = (start_sample, batch_size, steps, curriculum, n, start_step, stride,
                     strong_share)
        self.odds = odds  # keyword arguments of draw_batch
        self.device = device

    def __len__(self) -> int:
        return 2**62  # endless: the training loop decides when to stop

    def __getitem__(self, i: int) -> Batch:
        (start_sample, batch_size, steps, curriculum, n, start_step, stride,
         strong_share) = self.args
        step = start_step + i * stride
        mix = class_mix(step, steps, curriculum, strong_share)
        names = [c for c in mix if mix[c] > 0]
        probs = np.array([mix[c] for c in names])
        if start_sample + (i + 1) * batch_size > TRAIN_SAMPLES:
            raise ValueError(
                f"training samples past {TRAIN_SAMPLES:,} would draw validation seeds: this "
                f"batch ends at sample {start_sample + (i + 1) * batch_size:,} (first_sample "
                "plus the run's distinct crystals)")
        wanted = []
        for k in range(start_sample + i * batch_size, start_sample + (i + 1) * batch_size):
            rng = np.random.default_rng([k, 0xC1A55])
            cls = names[int(rng.choice(len(names), p=probs / probs.sum()))]
            wanted.append((TRAIN_SEED0 + 100 * k, cls))
        drawn = draw_batch(wanted, n, self.device, **self.odds)
        return Batch.of(drawn, [cls for _, cls in wanted])
