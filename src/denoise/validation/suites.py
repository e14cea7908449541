"""The expectation suites: Great Expectations rules over tables of statistics, never pixels.

Three suites, each over one pandas table (validation.tables) with a `row` column naming rows:

- frames: one row per extracted frame (the manifest's mean, std, pHash, time and split, plus
  the frame's shape, a hash of its pixels and its difference from the previous frame);
- evaluation_sets: one row per evaluation image and noise level (declared and empirical sigma);
- results: one row per evaluated set, noise level and method (PSNR, SSIM, time per frame).

The validate stage runs the first two between noise and train; the register stage runs the
third before it registers anything (its promotion gate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from denoise.core.config import EvaluationSetChecks, Params, ResultChecks
from denoise.data.evalsets import EVALUATION_SPLITS
from denoise.data.extract import GAP, SPLITS

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation


def frames_expectations(params: Params) -> list[Expectation]:
    """The frames suite: enough frames per video, the configured shape, not black, white,
    blank or frozen, and splits that share neither time blocks nor pixels."""
    import great_expectations.expectations as gxe

    config = params.validate.frames
    size = params.extract.size
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are frames.")),
        gxe.ExpectColumnValuesToBeBetween(
            column="split_frames",
            min_value=config.min_frames_per_video,
            meta=_notes(
                "Each video split in time gives at least validate.frames.min_frames_per_video "
                "frames (extract.train_only sources are not split, so not counted)."
            ),
        ),
        *[
            gxe.ExpectColumnValuesToBeInSet(
                column=column,
                value_set=[expected],
                meta=_notes(f"Frames are {size}x{size} RGB, as extract.size says."),
            )
            for column, expected in (("height", size), ("width", size), ("channels", 3))
        ],
        gxe.ExpectColumnValuesToBeBetween(
            column="mean",
            min_value=config.mean_min,
            max_value=config.mean_max,
            meta=_notes("Mean brightness in range: no black or white (dead) camera."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="std",
            min_value=config.min_std,
            meta=_notes("Standard deviation above validate.frames.min_std: no blank frames."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="video_clean_noise_sigma",
            max_value=config.max_clean_noise_sigma,
            meta=_notes(
                "A clean source's estimated noise level (extract's, 0-255) is at most "
                "validate.frames.max_clean_noise_sigma: too noisy to be a target otherwise "
                "(give it role noisy in extract.roles)."
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="video_duplicate_fraction",
            max_value=config.max_duplicate_fraction,
            meta=_notes("Few exact or near duplicates per video: no frozen camera."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="split",
            value_set=[*SPLITS, GAP],
            meta=_notes("Every frame is train, validation, test or gap (unused)."),
        ),
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="split",
            value_set=["train", *EVALUATION_SPLITS],
            meta=_notes("There are training, validation and test frames."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="overlaps_other_split",
            value_set=[False],
            meta=_notes("Splits are disjoint time blocks of each video."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="shared_with_other_split",
            value_set=[False],
            meta=_notes("No frame's pixels appear in two splits (no leakage)."),
        ),
    ]


def evaluation_set_expectations(config: EvaluationSetChecks) -> list[Expectation]:
    """The evaluation_sets suite: finite values, clean images in [0, 1], Gaussian noise whose
    empirical sigma is within the tolerance of the declared one, and as-saved levels on the
    8-bit grid."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are images.")),
        gxe.ExpectColumnValuesToBeInSet(
            column="finite",
            value_set=[True],
            meta=_notes("Every clean and noisy value is finite."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="shape_matches",
            value_set=[True],
            meta=_notes("Each noisy image has its clean image's shape."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="on_8_bit_grid",
            value_set=[True],
            meta=_notes("As-saved levels hold values in [0, 1] on the 1/255 grid of 8 bits."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="clean_min", min_value=0.0, meta=_notes("Clean images are in [0, 1].")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="clean_max", max_value=1.0, meta=_notes("Clean images are in [0, 1].")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="sigma_relative_error",
            max_value=config.sigma_tolerance,
            meta=_notes(
                "Gaussian levels: |empirical sigma / declared sigma - 1| is at most "
                "validate.evaluation_sets.sigma_tolerance."
            ),
        ),
    ]


def results_expectations(config: ResultChecks) -> list[Expectation]:
    """The results suite: every metric finite, PSNR in a plausible range, SSIM in [-1, 1]."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are results.")),
        gxe.ExpectColumnValuesToBeInSet(
            column="finite",
            value_set=[True],
            meta=_notes("PSNR, SSIM and time per frame are finite numbers."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="psnr",
            min_value=config.psnr_min,
            max_value=config.psnr_max,
            meta=_notes("PSNR (dB) between validate.results.psnr_min and psnr_max."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="ssim", min_value=-1.0, max_value=1.0, meta=_notes("SSIM in [-1, 1].")
        ),
    ]


def _notes(text: str) -> dict[str, Any]:
    return {"notes": {"format": "markdown", "content": [text]}}


# ----------------------------------------------------------------------------- validation


# ----------------------------------------------------------------------------- stage


# ----------------------------------------------------------------------------- results
