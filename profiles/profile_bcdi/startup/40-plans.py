# Part 4: plans. `RE(rc())` measures a rocking curve of the crystal in the beam; the result
# appears in Tiled at processed/<uid> a few seconds after the scan (bcdi_callback.results).
from bcdi_stream.beamline import rocking_curve


def rc(num=None, **md):
    """Rocking curve on the simulated beamline (frames: det_image, motor: eta).

    Parameters
    ----------
    num : int, optional
        Number of frames, >= 2 (default: the loaded crystal's rocking size).
    **md
        Extra start-document metadata.

    Returns
    -------
    generator
        The plan, for ``RE(rc())``; bad arguments raise here, before any run opens.
    """
    return rocking_curve(det, eta, num=num, md=md)  # noqa: F821
