# Part 2: the simulated beamline (replace with the real motor and detector at a beamline).
#   eta  rocking motor (degrees)        det  area detector, image field det_image
#   BCDI_SIM_SEED  detector seed (default 0)   BCDI_SIM_EXPOSURE  seconds per frame (default 0)
import os

from bcdi_stream.beamline import crystal_source, make_beamline

try:
    _sim_seed = int(os.environ.get("BCDI_SIM_SEED", "0"))
except ValueError:
    raise ValueError(f"BCDI_SIM_SEED must be an integer, got {os.environ['BCDI_SIM_SEED']!r}"
                     ) from None
try:
    _sim_exposure = float(os.environ.get("BCDI_SIM_EXPOSURE", "0"))
except ValueError:
    raise ValueError("BCDI_SIM_EXPOSURE must be a number of seconds, got "
                     f"{os.environ['BCDI_SIM_EXPOSURE']!r}") from None
beamline = make_beamline(detector_shape=(128, 160), seed=_sim_seed, exposure_s=_sim_exposure)
eta = beamline.motor
det = beamline.detector


def load_crystal(seed: int = 0, strain: str = "weak", n: int = 64) -> str:
    """Put a simulated strained crystal in the beam, the motor at its Bragg angle.

    Parameters
    ----------
    seed : int
        Crystal seed (same seed, same crystal).
    strain : {"weak", "medium", "strong", "any"}
        Strain class.
    n : int
        Grid size (``n``³ voxels, ``n`` rocking frames), in [16, 1024].

    Returns
    -------
    str
        The crystal's name (also the scan's ``sample.name``).
    """
    beamline.load(crystal_source(seed, n=n, strain=strain))
    return det.source.name
