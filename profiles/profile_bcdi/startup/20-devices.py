# Part 2: the simulated beamline (replace with the real motor and detector at a beamline).
#   eta  rocking motor (degrees)        det  area detector, image field det_image
import os

from bcdi_stream.beamline import crystal_source, make_beamline

beamline = make_beamline(
    detector_shape=(128, 160),
    seed=int(os.environ.get("BCDI_SIM_SEED", "0")),
    exposure_s=float(os.environ.get("BCDI_SIM_EXPOSURE", "0")),
)
eta = beamline.motor
det = beamline.detector


def load_crystal(seed: int = 0, strain: str = "weak", n: int = 64) -> str:
    """Put a simulated strained crystal in the beam; returns its name."""
    beamline.load(crystal_source(seed, n=n, strain=strain))
    return det.source.name
