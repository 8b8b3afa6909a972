"""The one configuration object of bcdi-stream.

Values come from, in increasing priority: defaults, a TOML file named by ``BCDI_CONFIG``
(or passed explicitly), and ``BCDI_*`` environment variables (``BCDI_DEVICE=cpu``,
``BCDI_PHASING__RUNS=10``...). The TOML file must exist and hold only known keys (a misspelt
key is an error naming it); unknown ``BCDI_*`` environment variables are ignored, since other
parts of the system (the worker, the profiles) have their own.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["AISettings", "PhasingSettings", "Settings", "load_settings"]


class PhasingSettings(BaseModel):
    """Conventional (PyNX-style) recipe parameters."""

    runs: int = Field(20, ge=1, description="independent random starts, best kept by LLK")
    batch: int = Field(0, ge=0, description="runs per batch (0: as many as memory allows)")
    n_raar: int = Field(600, ge=0)
    n_hio: int = Field(0, ge=0)
    n_er: int = Field(200, ge=0)
    beta: float = Field(0.9, gt=0, lt=1)
    shrinkwrap_every: int = Field(20, ge=1)
    shrinkwrap_sigma_start: float = Field(2.0, gt=0)
    shrinkwrap_sigma_end: float = Field(0.5, gt=0)
    shrinkwrap_threshold: float = Field(0.2, gt=0, lt=1)
    psf: Literal["auto", "off"] | float = Field(
        "auto",
        description="intensity blur (detector PSF / partial coherence): auto (estimate a "
        "Gaussian per run), off, or a fixed width in px on the detector axes (y, x)",
    )
    noise_filter: float = Field(
        8.0,
        ge=0,
        allow_inf_nan=False,
        description="counts at which the finished reconstruction keeps half of a pixel's "
        "amplitude (a Wiener gain from the measured counts, bcdi_stream.phasing.denoise; the "
        "support is drawn again from the filtered object; 0: off). Photon-starved weak "
        "crystals (2e3 peak counts) 6/20 -> 19/20 solved, the strong and weak validation "
        "classes unchanged (docs/MODEL_RESEARCH.md, session 18)",
    )
    crystal_support: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="the reported support: the finished object's amplitude cut at this "
        "fraction of its 90th percentile inside the phasing support, closed by one voxel "
        "(bcdi_stream.analysis.crystal_support; 0: report the last shrink-wrap's support, "
        "about a voxel wider than the crystal). Mean support IoU of solved validation "
        "crystals 0.81-0.89 -> 0.91-0.94, small crystals 0.66-0.70 -> 0.86 "
        "(docs/MODEL_RESEARCH.md, session 19)",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="fused torch.compile kernels: auto (for long jobs, decided by the "
        "job alone so that a result does not depend on what ran before it), on, off"
    )


class AISettings(BaseModel):
    """The ``ai`` and ``auto`` methods: model prediction + short refinement, and the fallback."""

    model: str = Field(
        "", description="weights file (empty: the shipped weights, or BCDI_MODEL)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="arithmetic of the network's prediction: auto is bf16 for weights trained "
        "under bfloat16 autocast (v3) on a device that computes it natively (AMX or AVX-512 "
        "BF16 CPUs, Ampere+ GPUs), else fp32 (v3 on the Intel CI CPU: the prediction 0.20 -> "
        "0.08 s; 120 test crystals side by side: 72 solved in bf16, 73 in fp32, the crystals "
        "that differ at the 0.3 rad line; docs/MODEL_RESEARCH.md session 23)",
    )
    n_er_first: int = Field(
        0,
        ge=0,
        description="ER iterations right after the prediction, before the RAAR/HIO ones (the "
        "main run starts from their support and PSF; docs/MODEL_RESEARCH.md session 12)",
    )
    n_raar: int = Field(0, ge=0, description="RAAR iterations after the prediction")
    n_hio: int = Field(
        170,
        ge=0,
        description="HIO iterations after the RAAR ones (HIO, not RAAR, since 2026-12-02: "
        "32 % vs 24 % of the strong test crystals, docs/MODEL_RESEARCH.md session 6; HIO 170 "
        "+ ER 30 since session 26: strong validation crystals 33 -> 37 of 90 at the cost of 100 "
        "+ 100; session 27 measured HIO 150 + ER 20, 15 % fewer iterations, at 69 against 74 "
        "of 180 strong validation runs and kept 170 + 30, paid for by a shorter psf_hypothesis)",
    )
    n_er: int = Field(30, ge=0, description="ER iterations after the RAAR and HIO ones")
    shrinkwrap: bool = Field(True, description="update the support during the ER refinement")
    polish_raar: int = Field(
        200,
        ge=0,
        description="auto: when the AI+ER result's excess misfit exceeds fallback_misfit, it "
        "is first polished by a run of this many RAAR iterations from it, then polish_er ER "
        "(the lower LLK kept), before the other views; the best view is polished too when "
        "none fits (strong validation crystals: 32 -> 36 of 90 by the polish alone, the views "
        "39 -> 43 with both polishes, none lost; docs/MODEL_RESEARCH.md session 14)",
    )
    polish_er: int = Field(100, ge=0, description="auto: ER iterations of each polish")
    polish_cycles: int = Field(
        2,
        ge=0,
        description="auto: at most this many polishes, each from the kept result while it "
        "still does not fit and the previous one lowered the LLK (0: no polish)",
    )
    peak_fill: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="fill compact bad-pixel groups over the Bragg peak (a saturated core, "
        "masked) with a Gaussian fitted around them, and frames bad throughout (lost) by "
        "interpolation, before the model sees the pattern, when they hold at least this share "
        "of the intensity (0: never; a zero hole at the core halved the weak crystals solved, "
        "5/10 -> 10/10 filled; a lost frame: medium 7/10 -> 10/10; docs/MODEL_RESEARCH.md "
        "session 21)",
    )
    peak_refill: bool = Field(
        True,
        description="after a filled start, predict and refine again with the filled pixels "
        "taken from the first result's |FFT|^2, the lower LLK kept (medium crystals with a "
        "masked core 8/10 -> 9/10, with crossing detector gaps near the peak 8/10 -> 9/10)",
    )
    peak_unfilled: float = Field(
        0.2,
        ge=0,
        le=1,
        description="after a start filled where the holes hid at least this share of the "
        "intensity, also predict and refine the pattern with them left empty, as the model saw "
        "detector gaps in training, the lowest LLK kept (0: never; gaps 7-12 px wide near the "
        "peak: weak 9/10 -> 10/10, medium 8/10 -> 9/10, both rescued at shares 0.42-0.46; "
        "docs/MODEL_RESEARCH.md session 30)",
    )
    psf_hypothesis: int = Field(
        30,
        ge=0,
        description="iterations of the second run that tests a detector blur seen in the "
        "prediction (half RAAR/HIO as in the main run, half ER; the lower LLK wins; 0: never; "
        "needs phasing.psf = auto). 30 since session 27 (was 60): no crystal lost and two gained "
        "over 130 test and 180 validation crystals, ~8 % less of the method's median time; 0 "
        "would save a third of it and lose 5 of the 130, 4 of them with partial coherence",
    )
    deblur: int = Field(
        20,
        ge=0,
        description="Richardson-Lucy iterations of a second blur-hypothesis run's start: when "
        "the hypothesis is a blur the model never saw (along the rocking axis, oblique, "
        "different on y and x, wider than 1.15 px; not one at the width search's 2 px cap, nor "
        "when the refit is), the pattern deconvolved by it is "
        "predicted, the blur fitted again to that prediction, and the prediction from the "
        "pattern deconvolved by the refit is refined with it beside the other runs, the lowest "
        "LLK kept; a blur along the rocking axis is a hypothesis too (0: neither; blur along "
        "the rocking axis 9/20 -> 15/20, docs/MODEL_RESEARCH.md session 25)",
    )
    fallback_misfit: float = Field(
        0.0025,
        gt=0,
        description="auto: polish the AI+ER result, try other views and run the "
        "conventional recipe (seeded by the AI result) when the AI+ER "
        "result leaves more than this share of the measured intensity unexplained beyond "
        "Poisson noise (phasing.excess_misfit: ≈0 for a correct model at any flux without "
        "background; a flat background the phasing does not model raises it, e.g. 0.5 "
        "photon/pixel: 4e-3 at 1e5 peak counts, 3e-6 at 1e7; 0.0025 "
        "flags 22/22 failures and 4/38 successes of 60 validation crystals, where the LLK > "
        "1.5 of sessions 6-7 flagged 17/22 and 22/38; docs/MODEL_RESEARCH.md session 8)",
    )
    views: int = Field(
        8,
        ge=1,
        le=8,
        description="auto: when the AI+ER result's excess misfit exceeds fallback_misfit, "
        "refine views 1..views-1 of the pattern (reflected along some axes, the prediction "
        "reflected back) in turn until one fits, keeping the lowest LLK, before the "
        "conventional recipe (1: straight to the recipe; strong crystals solved 9/30 -> 12/30 "
        "on validation and 8/25 -> 10/25 on the test set; docs/MODEL_RESEARCH.md session 10)",
    )
    fallback_conventional: bool = Field(
        True,
        description="auto: when no view fits, run the conventional recipe seeded by the best "
        "view (false: stop after the views, so that auto costs at most `views` times the ai "
        "method's time and the polish)",
    )
    fallback_runs: int | None = Field(
        None,
        ge=1,
        description="auto: runs of the fallback recipe, run 0 starting from the AI phase "
        "(default: the phasing recipe's runs)",
    )

    #: Settings that no longer exist, with what replaced them (refused by name).
    REMOVED: ClassVar[dict[str, str]] = {
        "fallback_llk": "ai.fallback_llk was replaced by ai.fallback_misfit (2026-12-03): the "
        "LLK of a correct result grows with the counts; set BCDI_AI__FALLBACK_MISFIT instead",
    }

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, message in cls.REMOVED.items():
                if key in data:
                    raise ValueError(message)
        return data


class Settings(BaseSettings):
    """bcdi-stream settings; environment variables ``BCDI_*`` override the file."""

    model_config = SettingsConfigDict(
        env_prefix="BCDI_", env_nested_delimiter="__", extra="ignore"
    )

    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1'...")
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default)")
    seed: int = Field(0, ge=0, lt=2**63, description="random seed (0 <= seed < 2**63)")
    phasing: PhasingSettings = PhasingSettings()
    ai: AISettings = AISettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("BCDI_CONFIG")
        if path:
            sources.append(_StrictTomlSource(settings_cls, Path(path)))
        return tuple(sources)


class _StrictTomlSource(TomlConfigSettingsSource):
    """The TOML settings file: it must exist, and every key in it must be a setting.

    Environment variables stay lenient (``Settings`` ignores unknown ``BCDI_*`` names, which
    other parts of the system use), but a key in the file is meant for these settings, so a
    misspelt one is an error rather than a value silently dropped.
    """

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        if not toml_file.exists():
            raise ValueError(f"config file {toml_file} (BCDI_CONFIG) does not exist")
        if not toml_file.is_file():
            raise ValueError(f"config file {toml_file} (BCDI_CONFIG) is not a file")
        try:
            super().__init__(settings_cls, toml_file=toml_file)
        except OSError as exc:
            raise ValueError(f"config file {toml_file} cannot be read: "
                             f"{exc.strerror or exc}") from None
        except ValueError as exc:  # tomllib.TOMLDecodeError
            raise ValueError(f"config file {toml_file} is not valid TOML: "
                             f"{exc}") from None
        _check_keys(self.toml_data, settings_cls, toml_file, "")


def _check_keys(data: Any, model: type[BaseModel], path: Path, prefix: str) -> None:
    """Raise ValueError naming the first key of ``data`` that is not a field of ``model``
    (nested sections checked against their own models; a model's ``REMOVED`` keys are left to
    its validator, which names their replacement)."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    removed = getattr(model, "REMOVED", {})
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key in removed:
            continue
        if key not in fields:
            where = f"section [{prefix[:-1]}]" if prefix else "the top level"
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
            raise ValueError(f"config file {path}: unknown key {name!r} in {where}{hint}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _check_keys(value, sub, path, f"{name}.")



def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from defaults, an optional TOML file and the environment.

    Parameters
    ----------
    path : str or Path, optional
        TOML file; ``BCDI_CONFIG`` is used when not given. Environment variables still win.
    **overrides
        Explicit values, highest priority.

    Returns
    -------
    Settings

    Raises
    ------
    ValueError
        A missing or unreadable file (``path`` or ``BCDI_CONFIG``), invalid TOML, a key of the
        file that is not a setting, or an invalid value (pydantic's ``ValidationError``).
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {p} does not exist")
        old = os.environ.get("BCDI_CONFIG")
        os.environ["BCDI_CONFIG"] = str(p)
        try:
            return Settings(**overrides)
        finally:
            if old is None:
                os.environ.pop("BCDI_CONFIG", None)
            else:
                os.environ["BCDI_CONFIG"] = old
    return Settings(**overrides)
