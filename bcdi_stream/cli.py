"""The ``bcdi-stream`` command line.

Every command ends with exit code 0 on success; on bad input it prints one line,
``bcdi-stream: error: <reason>``, to stderr and exits with 2 (1 for an internal error), never a
traceback (``BCDI_DEBUG=1`` shows it).
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from bcdi_stream._train_command import train_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="bcdi-stream",
    help="In-experiment phase retrieval for Bragg coherent diffraction imaging (BCDI).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class StrainLevel(StrEnum):
    """Strain classes of the simulator."""

    weak = "weak"
    strong = "strong"
    any = "any"


class MethodChoice(StrEnum):
    """Reconstruction methods."""

    conventional = "conventional"
    ai = "ai"
    auto = "auto"


class BenchmarkName(StrEnum):
    """Benchmarks of ``bcdi-stream benchmark``."""

    iteration = "iteration"
    conventional = "conventional"
    simulator = "simulator"
    training = "training"
    model = "model"
    all = "all"


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or type(text).__name__


def _fail(reason: object, code: int = 2) -> None:
    typer.echo(f"bcdi-stream: error: {_one_line(reason)}", err=True)
    raise typer.Exit(code)


def _progress_bar(description: str, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def _check_destination(path: Path, what: str) -> None:
    """Fail (exit 2, one line) when ``path`` cannot become a file: a directory, or a parent
    that is a file. Nothing is created."""
    if path.is_dir():
        _fail(f"{what} {path} is a directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the directories up to it are created when writing
    if not parent.is_dir():
        _fail(f"{what} {path}: {parent} is not a directory")


def _is_reconstruction(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file holding ``/entry_1/image_1`` (a reconstruction)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return isinstance(f.get("entry_1/image_1"), h5py.Group)
    except Exception:  # unreadable, damaged...: not a reconstruction
        return False


def _apply_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


@app.command()
def demo(
    scans: Annotated[int, typer.Option(help="Rocking curves to measure (different crystals).")
                     ] = 3,
    serve: Annotated[
        bool, typer.Option(help="Keep the embedded Tiled server up after the scans, until Ctrl-C.")
    ] = False,
    tiled_uri: Annotated[
        str | None,
        typer.Option(help="Use this Tiled server (http://host:port/api/v1) instead of an "
                     "embedded one."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="TILED_API_KEY", show_envvar=True,
                     help="API key of --tiled-uri (with the embedded server: the key it accepts)."),
    ] = None,
    size: Annotated[int, typer.Option(help="Crystal grid N (N³ voxels, N rocking frames).")] = 64,
    strains: Annotated[
        str, typer.Option(help="Strain classes cycled over the scans, comma-separated "
                          "(weak, medium, strong, any).")
    ] = "weak,medium,weak",
    seed: Annotated[int, typer.Option(help="Seed of the first crystal (scan k: seed + k).")] = 0,
    exposure: Annotated[
        float, typer.Option(help="Simulated exposure per frame in seconds.")
    ] = 0.05,
    directory: Annotated[
        Path | None,
        typer.Option(help="Keep the embedded server's data here (default: a temporary "
                     "directory)."),
    ] = None,
    figures: Annotated[
        Path | None, typer.Option(help="Also save each scan's live figure here (<uid>.png).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for all reconstructions.")
    ] = 900.0,
    threads: Annotated[int, typer.Option(
        envvar="BCDI_THREADS", show_envvar=True, help="CPU threads (0: default).")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the per-scan results as JSON (progress on "
                           "stderr).")
    ] = False,
) -> None:
    """The main job: live BCDI reconstruction of simulated rocking curves through Tiled.

    Starts an embedded Tiled server (or uses --tiled-uri), measures rocking curves of different
    simulated strained crystals on a simulated beamline (RunEngine + TiledWriter), reconstructs
    each one live with the Bluesky callback, writes the results to Tiled (processed/<uid>),
    prints per-scan latency and how to browse the results, then exits (--serve: keeps Tiled
    up until Ctrl-C).
    """
    from bcdi_stream.demo import run_demo

    strain_list = [s.strip() for s in strains.split(",") if s.strip()]
    for name, value, lo in (("--scans", scans, 1), ("--size", size, 16), ("--threads", threads, 0)):
        if value < lo:
            _fail(f"{name} must be >= {lo}, got {value}")
    if not exposure >= 0:
        _fail(f"--exposure must be >= 0, got {exposure}")
    if not timeout > 0:
        _fail(f"--timeout must be > 0, got {timeout}")
    if serve and tiled_uri is not None:
        _fail("--serve keeps the embedded server up; it does not apply to --tiled-uri")
    if directory is not None and tiled_uri is not None:
        _fail("--directory is for the embedded server; it does not apply to --tiled-uri")
    _apply_threads(threads)

    def echo(line: str) -> None:
        typer.echo(line, err=as_json)

    try:
        rows = run_demo(
            n_scans=scans, serve=serve, tiled_uri=tiled_uri, api_key=api_key or None,
            echo=echo, size=size, strains=strain_list, seed=seed, exposure_s=exposure,
            directory=directory, timeout=timeout, live_figure_dir=figures,
        )
    except ValueError as exc:  # InputError included: bad option, unusable Tiled server
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
    n_ok = sum(1 for r in rows if r.get("status") == "ok" and r.get("readback"))
    if n_ok < len(rows):
        _fail(f"only {n_ok} of {len(rows)} scans were reconstructed and read back", code=1)


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Output CXI file (the simulated measurement).")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same crystal).")] = 0,
    size: Annotated[int, typer.Option(help="Grid size N (N³ voxels).")] = 64,
    strain: Annotated[StrainLevel, typer.Option(help="Strain class.")] = StrainLevel.weak,
    peak_counts: Annotated[
        float | None, typer.Option(help="Photon counts at the Bragg peak (default: random).")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Ground-truth .npz (object, support, reciprocal phase); the name "
                     "must end in .npz; default: OUT with suffix .truth.npz."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Simulate a strained nanocrystal and write its diffraction pattern as a CXI file."""
    import numpy as np

    from bcdi_stream.arrays import to_numpy
    from bcdi_stream.errors import InputError
    from bcdi_stream.io import write_cxi_data
    from bcdi_stream.simulation import CrystalSpec, simulate_crystal

    kwargs: dict[str, Any] = {"n": size, "strain": strain.value}
    if peak_counts is not None:
        kwargs["peak_counts"] = peak_counts
    out = out.expanduser()
    truth_path = truth.expanduser() if truth is not None else out.with_suffix(".truth.npz")
    if truth_path.suffix.lower() != ".npz":  # numpy would append .npz to any other name
        _fail(f"--truth must end in .npz, got {truth_path.name}")
    if truth_path.resolve() == out.resolve():
        _fail("--truth must differ from OUT")
    # both destinations checked before anything is computed or written
    _check_destination(out, "OUT")
    _check_destination(truth_path, "--truth")
    try:
        spec = CrystalSpec.random(seed, **kwargs)
        crystal = simulate_crystal(spec)
    except ValueError as exc:
        _fail(exc)
    for target in (out, truth_path):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(f"cannot write {target}: {exc.strerror or exc}")
    try:
        write_cxi_data(out, to_numpy(crystal.intensity), to_numpy(crystal.mask),
                       meta={"simulation": crystal.meta})
    except (OSError, InputError) as exc:
        _fail(f"cannot write {out}: {getattr(exc, 'strerror', None) or exc}")
    try:
        np.savez_compressed(
            truth_path,
            obj=to_numpy(crystal.obj),
            support=to_numpy(crystal.support),
            phase_q=to_numpy(crystal.phase_q),
            meta=json.dumps(crystal.meta),
        )
    except OSError as exc:
        out.unlink(missing_ok=True)  # no measurement without its ground truth
        _fail(f"cannot write {truth_path}: {exc.strerror or exc}")
    summary = {"out": str(out), "truth": str(truth_path), **crystal.meta}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"wrote {out} ({size}³, {crystal.meta.get('shape')}, "
            f"phase span {crystal.meta.get('phase_span', float('nan')):.2f} rad) "
            f"and ground truth {truth_path}"
        )


@app.command()
def reconstruct(
    inp: Annotated[Path, typer.Argument(metavar="IN", help="Input: .cxi/.h5, .npy or .npz.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CXI reconstruction. An "
                                      "existing file is replaced only when it is an earlier "
                                      "reconstruction (it holds /entry_1/image_1); any other "
                                      "file is refused.")],
    method: Annotated[MethodChoice | None, typer.Option(
        help="Reconstruction method (default: ai when model weights are available, else "
        "conventional).", show_default=False)] = None,
    model: Annotated[Path | None, typer.Option(
        help="Model weights for ai/auto (default: the shipped weights).")] = None,
    runs: Annotated[
        int | None, typer.Option(min=1, help="Independent runs (conventional).")
    ] = None,
    n_raar: Annotated[int | None, typer.Option(min=0, help="RAAR iterations per run.")] = None,
    n_hio: Annotated[int | None, typer.Option(min=0, help="HIO iterations per run.")] = None,
    n_er: Annotated[int | None, typer.Option(min=0, help="ER iterations per run.")] = None,
    noise_filter: Annotated[float | None, typer.Option(
        min=0, help="Counts at which the result keeps half of a pixel's amplitude (a Wiener "
        "filter from the measured counts; 0: off; default 8).", show_default=False)] = None,
    crystal_support: Annotated[float | None, typer.Option(
        min=0, max=0.999, help="Reported support: the amplitude cut at this fraction of its "
        "typical interior value (0: the last shrink-wrap's support; default 0.4).",
        show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Random seed, 0 <= seed < 2**63 (default: the settings' seed).")] = None,
    threads: Annotated[int, typer.Option(
        min=0, help="CPU threads (0: the settings' threads, BCDI_THREADS or `threads` in the "
        "TOML file; 0 there too: torch's default).")] = 0,
    truth: Annotated[
        Path | None, typer.Option(help="Ground truth .npz from `simulate`: report phase RMSE "
                                  "(checked against the data before phasing).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Reconstruct a 3D diffraction pattern and write the object, support and strain to CXI.

    The phasing settings used are recorded in the file (``process_1/settings``)."""
    from bcdi_stream.config import load_settings
    from bcdi_stream.errors import InputError
    from bcdi_stream.io import load_intensity, write_cxi_reconstruction
    from bcdi_stream.pipeline import reconstruct as run_reconstruct

    if seed is not None and not 0 <= seed < 2**63:
        _fail(f"--seed must be in [0, {2**63 - 1}], got {seed}")
    try:
        settings = load_settings(config)
    except ValueError as exc:
        _fail(f"invalid settings: {exc}")
    _apply_threads(threads or settings.threads)
    overrides = {k: v for k, v in
                 {"runs": runs, "n_raar": n_raar, "n_hio": n_hio, "n_er": n_er,
                  "noise_filter": noise_filter, "crystal_support": crystal_support}.items()
                 if v is not None}
    phasing = _phasing_with(settings.phasing, overrides)
    from bcdi_stream.arrays import resolve_device

    try:  # an unusable device fails here, in one line, before any work
        resolve_device(device if device is not None else settings.device)
    except ValueError as exc:
        _fail(exc)
    if model is not None:
        settings = settings.model_copy(
            update={"ai": settings.ai.model_copy(update={"model": str(model)})})
    from bcdi_stream.pipeline import default_method

    method_name = method.value if method is not None else default_method(settings)
    out = out.expanduser()
    if out.suffix.lower() not in (".cxi", ".h5", ".hdf5"):
        _fail(f"--out must end in .cxi, .h5 or .hdf5, got {out.name}")
    if out.resolve() == inp.expanduser().resolve():
        _fail("--out must differ from the input file")
    _check_destination(out, "--out")
    if out.exists() and not _is_reconstruction(out):
        _fail(f"--out {out} exists and is not a reconstruction (no /entry_1/image_1): "
              "refusing to overwrite it")
    try:
        data = load_intensity(inp)
        truth_data = None
        if truth is not None:
            truth_data = _load_truth(truth)
            _check_truth(truth_data, tuple(data.intensity.shape), truth)
        with _progress_bar(f"{method_name} phasing", not as_json) as bar:
            task = bar.add_task("phasing", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            rec = run_reconstruct(data.intensity, data.mask, method=method_name,
                                  settings=settings, phasing=phasing, device=device,
                                  seed=seed, progress=progress)
    except (InputError, ValueError) as exc:
        _fail(exc)
    summary = rec.summary()
    summary["input"] = str(inp)
    summary["out"] = str(out)
    summary["warnings"] = _data_warnings(data, rec.quality, rec.meta.get("photon_scale"),
                                         faults=rec.meta)
    compare_error: Exception | None = None
    if truth_data is not None:
        try:
            summary["metrics"] = _compare(rec.obj, rec.support, truth_data)
        except Exception as exc:  # the reconstruction is written all the same
            compare_error = exc
    meta = {k: v for k, v in summary.items() if k != "out"}
    meta["settings"] = rec.meta.get("settings")  # the phasing recipe used (summary drops it)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_cxi_reconstruction(
            out, rec.obj, rec.support,
            meta=meta,
            extra={
                "amplitude": rec.post.amplitude,
                "phase": rec.post.phase,
                "displacement": rec.post.displacement,
                "strain": rec.post.strain,
            },
        )
    except (OSError, InputError) as exc:
        _fail(f"cannot write {out}: {getattr(exc, 'strerror', None) or exc}")
    if compare_error is not None:
        if os.environ.get("BCDI_DEBUG"):
            raise compare_error
        _fail(f"wrote {out}, but comparing it with --truth {truth} failed: "
              f"{_one_line(compare_error)}",
              code=2 if isinstance(compare_error, ValueError) else 1)
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        q = rec.quality
        line = (f"{rec.method}: LLK {q['llk']:.3f}, χ² {q['chi2']:.3f}, "
                f"excess misfit {q['excess_misfit']:.2g}, "
                f"{rec.timings['total']:.1f} s on {rec.meta['device']} -> {out}")
        if "metrics" in summary:
            m = summary["metrics"]
            line += (f"; vs truth: phase RMSE {m['phase_rmse']:.3f} rad, "
                     f"support IoU {m['support_iou']:.2f}")
        typer.echo(line)
        limit = settings.ai.fallback_misfit
        if not q["excess_misfit"] <= limit:  # NaN included
            hint = ("; --method auto tries further" if method_name == "ai"
                    else "; treat it as failed")
            typer.echo(f"warning: the result does not fit the data (excess misfit "
                       f"{q['excess_misfit']:.2g} > {limit:g}){hint}")
        for warning in summary["warnings"]:
            typer.echo(f"warning: {warning}")
        if rec.meta.get("saturated_voxels"):
            typer.echo(f"warning: {rec.meta['saturated_voxels']} voxels share the maximum "
                       "count (a saturated peak?): left free in the phasing")
        if rec.meta.get("secondary_peak_voxels"):
            n_other = rec.meta["secondary_peak_voxels"]
            typer.echo(f"warning: another Bragg peak in the array ({n_other} voxels): left "
                       "free in the phasing")
        if rec.meta.get("lost_frames"):
            typer.echo(f"warning: frames {rec.meta['lost_frames']} have no counts inside the "
                       "rocking curve (dropped?): left free in the phasing")
        for axis in ("rows", "columns"):
            if rec.meta.get(f"dead_{axis}"):
                typer.echo(f"warning: detector {axis} {rec.meta[f'dead_{axis}']} have no counts "
                           "in any frame (an unflagged gap?): left free in the phasing")


def _data_warnings(data: Any, quality: dict[str, Any], photons: float | None,
                   faults: dict[str, Any] | None = None) -> list[str]:
    """What the data and the fit say about the input beyond the phasing's own warnings: the
    rocking curve's frames (:func:`bcdi_stream.validation.check_frames`), a pedestal left in
    (no voxel at 0), amplitudes given for intensities (their squares are counts), values at
    the integer dtype's maximum (left free), and a fit far below the noise floor. ``photons``
    is the reconstruction's photon scale of the data (``meta["photon_scale"]``); ``faults``
    the reconstruction's ``meta`` (:func:`bcdi_stream.validation.leave_free`'s findings):
    with it, hot, stuck or dead detector pixels and frames scaled by a beam glitch are named
    as the phasing found them (left free for photon counts), and the frame checks leave them
    out; without it, :func:`~bcdi_stream.validation.check_frames` looks for glitches itself."""
    import numpy as np
    import torch

    from bcdi_stream.phasing import MISFIT_FLOOR, SUPPORT_FRACTION_MAX
    from bcdi_stream.validation import (
        check_frames,
        dead_pixel_warning,
        glitch_warning,
        hot_detector_pixels,
        hot_pixel_warning,
        photon_scale,
        zinger_warning,
    )

    found = faults if faults is not None and "glitched_frames" in faults else None
    out: list[str] = []
    mask = data.mask
    if found is not None and found.get("hot_pixels") and photons is not None:
        out.append(f"{hot_pixel_warning(int(found['hot_pixels']))}: left free in the phasing")
        # the frame checks without them (a stuck pixel's counts in every frame cut no curve)
        counts = np.round(np.asarray(data.intensity, dtype=np.float64) * photons)
        hot = hot_detector_pixels(torch.from_numpy(counts),
                                  None if mask is None else torch.as_tensor(mask).bool())
        if hot is not None:
            hot3 = np.broadcast_to(hot.numpy()[None], counts.shape)
            mask = hot3 if mask is None else np.asarray(mask, dtype=bool) | hot3
    if found is not None and found.get("zinger_voxels"):
        out.append(f"{zinger_warning(int(found['zinger_voxels']))}: left free in the phasing")
    if found is not None and found.get("dead_pixels"):
        out.append(f"{dead_pixel_warning(int(found['dead_pixels']))}: left free in the phasing")
    out += check_frames(data.intensity, mask, glitches=found is None)
    if found is not None:
        fate = "left free in the phasing" if photons is not None else "phased as measured"
        for k, factor in zip(found.get("glitched_frames") or [],
                             found.get("glitch_factors") or [], strict=False):
            out.append(f"{glitch_warning(int(k), float(factor))}: {fate}")
    values = np.asarray(data.intensity)
    if data.mask is not None:
        values = values[~np.asarray(data.mask, dtype=bool)]
    if values.size >= 4096 and float(values.min()) > 0:
        out.append(f"no measured voxel is 0 (the lowest is {float(values.min()):.3g}): a "
                   "pedestal or a background not subtracted? The phasing takes every count "
                   "for the crystal's")
    if photons is None and photon_scale(np.square(data.intensity), data.mask) == 1.0:
        out.append("the data look like amplitudes (their squares are photon counts): "
                   "give the intensity, |amplitude|²")
    if data.meta.get("ceiling_voxels"):
        out.append(f"{data.meta['ceiling_voxels']} voxels at the {data.meta.get('dtype')} "
                   f"maximum {data.meta.get('ceiling_value')} (saturated, or the detector's "
                   "flag for gaps and dead pixels): left free in the phasing")
    share = quality.get("support_fraction")
    if isinstance(share, (int, float)) and not share <= SUPPORT_FRACTION_MAX:
        out.append(f"the support covers {share:.0%} of the grid (more than "
                   f"{SUPPORT_FRACTION_MAX:.0%}): the pattern is not oversampled enough for its "
                   "phase to be determined; is there a Bragg peak, and is it centred?")
    misfit = quality.get("excess_misfit")
    if isinstance(misfit, (int, float)) and misfit < MISFIT_FLOOR:
        out.append(f"the result fits the data better than their noise allows (excess misfit "
                   f"{misfit:.2g} < {MISFIT_FLOOR:g}): no Bragg peak in the data, or not "
                   "photon counts?")
    return out


def _load_truth(path: Path) -> dict[str, Any]:
    import numpy as np

    from bcdi_stream.errors import InputError

    try:
        with np.load(path, allow_pickle=False) as z:
            return {"obj": z["obj"], "support": z["support"].astype(bool)}
    except FileNotFoundError:
        raise InputError(f"truth file {path} does not exist") from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"truth file {path} is not a bcdi-stream truth .npz: "
                         f"{_one_line(exc)}") from None


def _check_truth(truth: dict[str, Any], shape: tuple[int, ...], path: Path) -> None:
    """Raise InputError when a ground truth cannot be compared with a reconstruction of data
    of ``shape`` (checked before phasing, so that nothing is computed in vain)."""
    from bcdi_stream.errors import InputError

    obj, support = truth["obj"], truth["support"]
    if obj.dtype.kind not in "biufc":
        raise InputError(f"truth file {path}: obj must be numeric, got dtype {obj.dtype}")
    if tuple(obj.shape) != shape:
        raise InputError(f"truth file {path}: grid {tuple(obj.shape)} differs from the "
                         f"data's {shape}")
    if tuple(support.shape) != shape:
        raise InputError(f"truth file {path}: support shape {tuple(support.shape)} differs "
                         f"from the data's {shape}")
    if not support.any():
        raise InputError(f"truth file {path}: the support is empty")


def _phasing_with(phasing: Any, overrides: dict[str, Any]) -> Any:
    """``phasing`` with the command line's values, validated; fails naming the option."""
    from pydantic import ValidationError

    from bcdi_stream.config import PhasingSettings

    try:
        return PhasingSettings.model_validate({**phasing.model_dump(), **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        if field in overrides:
            _fail(f"--{field.replace('_', '-')} {overrides[field]!r}: {err['msg']}")
        _fail(f"invalid phasing settings: {exc}")


def _compare(obj: Any, support: Any, truth: dict[str, Any]) -> dict[str, Any]:
    from bcdi_stream.analysis import compare
    from bcdi_stream.arrays import as_tensor
    from bcdi_stream.errors import InputError

    t_obj = as_tensor(truth["obj"])
    if tuple(t_obj.shape) != tuple(obj.shape):
        raise InputError(f"truth grid {tuple(t_obj.shape)} differs from the reconstruction's "
                         f"{tuple(obj.shape)}")
    m = compare(as_tensor(obj).cpu(), t_obj, as_tensor(truth["support"]),
                recon_support=as_tensor(support).cpu())
    return m.to_dict()


@app.command("compare")
def compare_cmd(
    recon: Annotated[Path, typer.Argument(help="Reconstruction CXI file.")],
    truth: Annotated[Path, typer.Argument(help="Ground truth .npz from `simulate`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Score a reconstruction against simulated ground truth (after twin/shift/ramp alignment)."""
    from bcdi_stream.errors import InputError
    from bcdi_stream.io import read_cxi_reconstruction

    try:
        rec = read_cxi_reconstruction(recon)
        m = _compare(rec.obj, rec.support, _load_truth(truth))
    except (InputError, ValueError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(m, default=str))
    else:
        typer.echo(f"phase RMSE {m['phase_rmse']:.3f} rad, support IoU {m['support_iou']:.2f}, "
                   f"strain RMSE {m.get('strain_rmse', float('nan')):.2e}, "
                   f"success {m['success']}")


@app.command()
def benchmark(
    name: Annotated[BenchmarkName, typer.Argument(help="Which benchmark.")] = BenchmarkName.all,
    quick: Annotated[bool, typer.Option(help="Smaller, faster settings (smoke run).")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda ...")] = None,
    threads: Annotated[int, typer.Option(
        min=0, envvar="BCDI_THREADS", show_envvar=True,
        help="CPU threads (0: torch's default; for `model`, 0 takes `threads` from the "
        "settings file, BCDI_CONFIG)."
    )] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Write the results as JSON here (model: after every crystal; an interrupted run "
        "with the same settings, code and machine resumes from it).")] = None,
    n: Annotated[int, typer.Option(
        "--n", min=1, help="model: test crystals per class (each of --classes).")] = 25,
    model: Annotated[Path | None, typer.Option(
        help="model: weights to score (default: the shipped weights).")] = None,
    classes: Annotated[str, typer.Option(
        help="model: test classes, comma-separated: weak, strong, and weak+disl, medium+disl "
        "(every crystal with 1-2 dislocations), weak+fault, medium+fault (every crystal with "
        "a stacking fault or twin lamella), weak+loop, medium+loop (every crystal with a "
        "dislocation loop), strong+field (the smooth strain is the random field alone), "
        "weak+net, medium+net (every crystal with a network of 3-4 dislocations), weak+coh, "
        "medium+coh (every pattern with partial coherence beyond the detector blur), "
        "medium+habit (every crystal a needle or a thin plate), strong+poly (the smooth "
        "strain is a low-order polynomial field alone: a bending, a torsion or a random "
        "quadratic and cubic field).")
    ] = "weak,strong",
    methods: Annotated[str, typer.Option(
        help="model: methods, comma-separated (ai_er,ai_er_only,ai,random_er,conventional,"
        "ai_views,auto; after each AI result that does not fit, ai_views refines the other "
        "views of the pattern and auto then runs the conventional recipe)."
    )] = "ai_er,ai_er_only,ai,random_er,conventional",
) -> None:
    """Measure speed and skill: ER iteration vs FFT pair, conventional recipe per scan,
    simulator rate, training step time (float32 vs bfloat16 autocast) and batch stream
    (workers, reuse), and (``model``) the reconstruction methods on the fixed test set.
    ``all`` runs the speed benchmarks."""
    from bcdi_stream import benchmarking

    _apply_threads(threads)
    names = (["iteration", "simulator", "conventional", "training"]
             if name == BenchmarkName.all
             else [name.value])
    results: dict[str, Any] = {"machine": benchmarking.machine_info(device)}
    if name == BenchmarkName.model:
        from bcdi_stream.benchmarking._model import bench_model, format_summary
        from bcdi_stream.config import load_settings

        try:
            # the AI refinement and the conventional recipe as configured (BCDI_AI__*,
            # BCDI_PHASING__*, [ai] and [phasing] in BCDI_CONFIG), as for `reconstruct`; the
            # header of the results records both
            cfg = load_settings()
            _apply_threads(threads or cfg.threads)
            res = bench_model(n_per_class=n, quick=quick, device=device, model=model, out=out,
                              ai=cfg.ai, phasing=cfg.phasing,
                              machine=results["machine"],
                              classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
                              methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                              echo=lambda s: typer.echo(s, err=True))
        except ValueError as exc:
            _fail(exc)
        typer.echo(format_summary(res["summary"]))
        if out is not None:
            typer.echo(f"wrote {out}", err=True)
        return
    for bench in names:
        typer.echo(f"== {bench} ==", err=True)
        try:
            results[bench] = benchmarking.run(bench, quick=quick, device=device,
                                              echo=lambda s: typer.echo(s, err=True))
        except ValueError as exc:
            _fail(exc)
    text = json.dumps(results, indent=2, default=str)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}", err=True)
    typer.echo(text)


app.command("train")(train_command)

from bcdi_stream._service_commands import register_service_commands  # noqa: E402

register_service_commands(app)


def _print_version(value: bool) -> None:
    if value:
        from bcdi_stream import __version__

        typer.echo(f"bcdi-stream {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True,
                     callback=_print_version),
    ] = False,
) -> None:
    """In-experiment phase retrieval for Bragg coherent diffraction imaging (BCDI)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning every error into one line and an exit code."""
    try:
        rv = app(args=argv, prog_name="bcdi-stream", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("bcdi-stream: aborted", err=True)
        return 130
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()  # the CLI parser's usage errors: one line plus a usage hint
            return int(exc.exit_code)
        return _internal(exc)
    except KeyboardInterrupt:
        typer.echo("bcdi-stream: interrupted", err=True)
        return 130


def _internal(exc: Exception) -> int:
    """Last line of defence: one line, no traceback (``BCDI_DEBUG=1`` re-raises)."""
    if os.environ.get("BCDI_DEBUG"):
        raise exc
    from bcdi_stream.errors import BCDIError

    code = 2 if isinstance(exc, BCDIError) else 1
    kind = "error" if code == 2 else "internal error"
    typer.echo(f"bcdi-stream: {kind}: {_one_line(exc)} ({type(exc).__name__})", err=True)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
