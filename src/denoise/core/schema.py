"""The value types of params.yaml and the one place a ValidationError becomes a ConfigError.

Sections (denoise.core.config, denoise.core.train_config) are declared with `@section`: a
frozen pydantic dataclass (`extra="forbid"`) whose construction, dataclasses.replace included,
validates again and fails with one line naming the dotted key. Scalars are strict (a string is
not an integer, nor true a number); choices are `Literal`s and bounds `Field`s, so a model
validator is left only for the rules that span fields, which raise through `fail`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from typing_extensions import dataclass_transform

from denoise.core.errors import ConfigError

# compressed: camera noise then JPEG, drawn on the host in the patch stream (training.noise)
NoiseKind = Literal[
    "gaussian", "gaussian_blind", "poisson", "speckle", "salt_pepper", "camera", "compressed"
]
BaselineMethod = Literal["noisy", "blur", "median", "nlm", "bm3d"]  # image by image
VideoBaselineMethod = Literal["bm4d"]  # on whole clips: the clip sets only
# clean: a target (noise is added to it); noisy: no clean copy exists, cropped at native scale
# and never a target; auto: decided by extract from its estimated noise level
Role = Literal["clean", "noisy", "auto"]
# train-only still folders samples can build (denoise.data.stills, denoise.data.dead_leaves)
StillFolder = Literal["photos", "wallpapers", "jxl_photos", "dead_leaves"]
PhotoFolder = Literal["photos", "wallpapers", "jxl_photos"]  # those of photographs
# frames: every train frame is equally likely; sources: every source (video or image folder)
# is, then a frame within it, so a short photo folder weighs as much as a long video; clips:
# windows of the train clips (extract.clips), which temporal models always train on, and
# single-frame models then on the windows' middle frames.
Sampling = Literal["frames", "sources", "clips"]
Schedule = Literal["constant", "cosine"]
# clean: clean targets, the training noise added on top (as ever); noisy: the sources whose role
# is noisy alone, no noise added (frame-to-frame on their clips, Neighbor2Neighbor on stills).
Supervision = Literal["clean", "noisy"]
FlowMethod = Literal["dis", "farneback"]  # OpenCV's optical flow, for frame-to-frame targets
WarpInterpolation = Literal["nearest", "linear"]
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"]
ApplyPrecision = Literal["float32", "bfloat16"]  # what apply computes in
# what apply runs the model on: Keras, OpenVINO (the `fast` extra), or auto (serving.backends)
ApplyBackend = Literal["auto", "keras", "openvino"]
NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)
BASELINE_METHODS: tuple[str, ...] = get_args(BaselineMethod)
VIDEO_BASELINE_METHODS: tuple[str, ...] = get_args(VideoBaselineMethod)
EVALUATE_METHODS = BASELINE_METHODS + VIDEO_BASELINE_METHODS  # what evaluate.methods may name
STILL_FOLDERS: tuple[str, ...] = get_args(StillFolder)
PRECISIONS: tuple[str, ...] = get_args(Precision)
if TYPE_CHECKING:
    EvaluateMethod = str
else:
    EvaluateMethod = Literal[EVALUATE_METHODS]

# Where a model's starting weights come from (ModelBudget.init_from), besides a .keras path
# and an MLflow model URI (models:/<name>@<alias>, runs:/<id>/model): the model shipped with
# the package, or the registry's champion when it is of the same architecture, else the
# shipped model (what scheduled retraining wants: the first run fine-tunes the shipped model,
# later ones the champion).
INIT_PRETRAINED, INIT_CHAMPION = "pretrained", "champion"

# Patterns, and what a value must be to match one (the error line says it).
_NAME = r"^[A-Za-z0-9_-]+$"
_SOURCE = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_RELATIVE = r"^[^/\\~]"
_NOT_BLANK = r"\S"
_INIT = r"^(pretrained|champion|.+\.keras|models:/.+|runs:/.+)$"
_PATTERNS = {
    _NAME: "must be a name of letters, digits, _ and - only",
    _SOURCE: "must be a name of letters, digits, _ and -, or a file name such as box.mp4",
    _RELATIVE: "must be a folder relative to the repository root",
    _NOT_BLANK: "must not be empty",
    _INIT: f"is none of: null, {INIT_PRETRAINED}, {INIT_CHAMPION}, a .keras file, "
    "models:/<name>@<alias>, runs:/<run id>/model",
}
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Name = Annotated[Str, Field(pattern=_NAME)]
Source = Annotated[Str, Field(pattern=_SOURCE)]
AtLeast1 = Annotated[Int, Field(ge=1)]
NonNegative = Annotated[Float, Field(ge=0)]
Positive = Annotated[Float, Field(gt=0)]
Fraction = Annotated[Float, Field(ge=0, le=1)]
Widths = Annotated[list[AtLeast1], Field(min_length=1)]
InitSource = Annotated[Str, Field(pattern=_INIT)]
RelativeFolder = Annotated[Str, Field(pattern=_RELATIVE)]
NotBlank = Annotated[Str, Field(pattern=_NOT_BLANK)]
Multiple4 = Annotated[Int, Field(ge=8, multiple_of=4)]  # paper_cae pools twice


class Invalid(ValueError):
    """A rule spanning fields is broken: the message starts with the dotted key it names."""


def fail(key: str, message: str) -> None:
    raise Invalid(f"{key}: {message}")


def _dotted(loc: tuple[int | str, ...]) -> str:
    """('train', 'models', 0) -> train.models[0]; a bad mapping key names its mapping."""
    parts: list[str] = []
    for part in loc:
        if part == "[key]":
            parts.pop()
        else:
            parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).removeprefix(".")


def one_line(error: ValidationError) -> ConfigError:
    """The first of pydantic's errors as one line: `dotted.key: what is wrong, got value`."""
    item = error.errors()[0]
    kind, ctx, key = item["type"], item.get("ctx", {}), _dotted(item["loc"])
    got = f", got {item.get('input')!r}"
    bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    texts = {
        "missing": "missing: params.yaml must set every key",
        "missing_argument": "missing: params.yaml must set every key",
        "extra_forbidden": "unknown key",
        "unexpected_keyword_argument": "unknown key",
        "int_type": f"expected an integer{got}",
        "float_type": f"expected a number{got}",
        "bool_type": f"expected true or false{got}",
        "string_type": f"expected a string{got}",
        "list_type": f"expected a list{got}",
        "dict_type": f"expected a mapping{got}",
        "dataclass_type": f"expected a mapping{got}",
        "too_short": "must not be empty",
        "literal_error": "must be one of "
        + str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        + got,
        "multiple_of": f"must be a multiple of {ctx.get('multiple_of')}{got}",
        "string_pattern_mismatch": _PATTERNS.get(str(ctx.get("pattern")), "bad value") + got,
    }
    bound = next((name for name in bounds if name in ctx), None)
    if bound is not None:
        text = f"must be {bounds[bound]} {ctx[bound]:g}{got}"
    elif isinstance(ctx.get("error"), Invalid):
        text = str(ctx["error"])  # already "key: message"
        return ConfigError(f"{key}.{text}" if key else text)
    else:
        text = texts.get(kind, item["msg"])
    return ConfigError(f"{key}: {text}" if key else text)


@dataclass_transform(frozen_default=True, field_specifiers=(Field, dataclasses.field))
def section(cls: type) -> Any:
    """A frozen pydantic dataclass whose construction (and dataclasses.replace) raises one
    ConfigError line instead of pydantic's ValidationError."""
    built = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)
    validate = built.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validate(self, *args, **kwargs)
        except ValidationError as error:
            raise one_line(error) from None

    built.__init__ = __init__  # type: ignore[method-assign]
    return built
