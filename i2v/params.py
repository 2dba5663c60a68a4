"""The request's parameters: one table, and everything else generated from it.

`PARAMETERS` declares each parameter once: its type, Triton data type, range or choices, default, CLI flag,
help and UI control. The BLS `config.pbtxt` inputs (`i2v.export.triton_configs`), the server's reading and
validation (`i2v.serving.request`), the client's request tensors (`i2v.client`), the `i2v generate` flags
(`i2v.client.command`) and the Gradio controls (`i2v.ui`) are all made from it, so a new parameter is one
entry here. Consumers read the table when they run (`parameters()`), never copy it at import. Beside it, the
other names and words server and client must agree on: the models, headers, tensors and error-message words.

Torch-free on purpose: a client-only install imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The served model's name in the Triton repository: the address every request goes to.
MODEL_NAME = "i2vgen_xl"
# The key a restricted Triton protocol asks for (`--grpc-restricted-protocol=inference:api-key=KEY`): HTTP clients
# send it as this header, gRPC clients as metadata under Triton's prefix (API_KEY_HEADER); so does the gateway.
API_KEY_NAME = "api-key"
API_KEY_HEADER = f"triton-grpc-protocol-{API_KEY_NAME}"
# The model that lists the LoRA adapters registered with `MODEL_NAME` (for the UI's dropdown, `i2v lora list`).
LORA_LIST_MODEL = "i2vgen_xl_loras"
# The `MODEL_NAME` config's `parameters` a client reads: the served model's default of each parameter
# (`default.<name>`) and its size step (height and width must be multiples of it).
CONFIG_DEFAULT_PREFIX = "default."
CONFIG_SIZE_STEP = "size_step"
# The headers the gateway (`i2v.gateway`) sets on every request it passes (a client's own are replaced): the
# caller's tenant, which the BLS records in its request log, and the models that tenant may use, which every
# Python model checks (gRPC carries the model's name inside the message, where nginx cannot read it). Triton
# forwards the headers matching `FORWARDED_HEADERS` to the model as request parameters
# (`--grpc-header-forward-pattern`, `--http-header-forward-pattern`).
TENANT_HEADER = "i2v-tenant"
MODELS_HEADER = "i2v-models"
FORWARDED_HEADERS = "i2v-.*"
# The `MODEL_NAME` model's tensors besides the parameters: the image it reads; the `progress` ([step, total])
# it streams once per denoising step; the `video`, `metadata` (JSON) and, on request, `frames` of its last
# response. And the one output of `LORA_LIST_MODEL` (JSON).
IMAGE_INPUT = "image"
PROGRESS_OUTPUT = "progress"
VIDEO_OUTPUT = "video"
METADATA_OUTPUT = "metadata"
FRAMES_OUTPUT = "frames"
LORA_LIST_OUTPUT = "adapters"
# The `METADATA_OUTPUT` JSON's keys (the BLS writes it and its request log records it; the client, `i2v generate`
# and `i2v demo` read it): the parameters used, the seed among them, the model's source, the video's frame count
# and size, and the seconds per stage.
METADATA_PARAMETERS = "parameters"
METADATA_SEED = "seed"
METADATA_MODEL = "model"
METADATA_FRAMES = "frames"
METADATA_HEIGHT = "height"
METADATA_WIDTH = "width"
METADATA_TIMINGS = "timings"
# The stages of `METADATA_TIMINGS` besides the parts' own (each named as its part, `i2v.model.parts`): the
# denoising loop's UNet calls, all and per step; the MP4 encode; the whole request.
UNET_TOTAL_STAGE = "unet_total"
UNET_PER_STEP_STAGE = "unet_per_step"
MP4_ENCODE_STAGE = "mp4_encode"
TOTAL_STAGE = "total"
# The words an error is told by where no gRPC status code says enough (`i2v.client.errors`; the BLS, its parts'
# errors): the server's and the gateway's messages start with them ("<words>: ..."); Triton's, when a model's
# process died, hold `PROCESS_DIED`.
FORBIDDEN = "forbidden"  # the gateway's tenant may not use that model
INVALID_INPUT = "invalid input"
OUT_OF_MEMORY = "out of memory"  # also from a part to the BLS, which passes it on
UNAVAILABLE = "unavailable"  # retryable: the server is stopping, a part's process died, no Triton behind the gateway
PROCESS_DIED = "is not healthy"  # Triton's: "Stub process 'unet_0_0' is not healthy."
RATE_LIMITED = "rate limit"  # the gateway's: a tenant over its requests per minute
STREAMS_LIMITED = "streams limit"  # the gateway's: a tenant's concurrent streams all open
RETRY_AFTER = "retry after"  # then "N s": the gateway's refusals say when to come back; the client reads it


@dataclass(frozen=True)
class ImageFormat:
    """A picture format a request's image may be in (the README's API): PIL decodes these and no other."""

    pil_name: str  # what PIL's `Image.open(formats=...)` is told
    name: str  # how messages and help name it
    suffixes: tuple[str, ...]  # its files' suffixes, lower case (the images of a batch folder)


ACCEPTED_IMAGE_FORMATS = (
    ImageFormat("PNG", "PNG", (".png",)),
    ImageFormat("JPEG", "JPEG", (".jpg", ".jpeg")),
    ImageFormat("WEBP", "WebP", (".webp",)),
)
IMAGE_FORMATS = tuple(f.pil_name for f in ACCEPTED_IMAGE_FORMATS)  # what the server lets PIL decode
IMAGE_SUFFIXES = frozenset(s for f in ACCEPTED_IMAGE_FORMATS for s in f.suffixes)
# "PNG, JPEG or WebP": what an error message or a help text says a picture may be
IMAGE_FORMATS_TEXT = ", ".join(f.name for f in ACCEPTED_IMAGE_FORMATS[:-1]) + " or " + ACCEPTED_IMAGE_FORMATS[-1].name

# Named resolutions (height, width): the square and 16:9 shapes the TensorRT profiles cover.
RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {
    "512p": (512, 512),
    "512p-wide": (512, 896),
    "768p": (768, 768),
    "768p-wide": (704, 1280),
    "1024p": (1024, 1024),
}


def triton_config_type(triton_dtype: str) -> str:
    """How `config.pbtxt` names a Triton data type ("FP32", as the protocol names it): TYPE_FP32; BYTES is
    TYPE_STRING."""
    return "TYPE_STRING" if triton_dtype == "BYTES" else f"TYPE_{triton_dtype}"


# What each parameter type accepts, and how an error message names it (a bool is no number here).
_TYPES: dict[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
}


class InvalidParameterError(ValueError):
    """A request parameter is missing, of the wrong type or outside its range."""


@dataclass(frozen=True)
class Parameter:
    """One request parameter and everything each consumer needs to know about it."""

    name: str
    type: type  # int, float, str or bool
    triton_dtype: str  # "INT32", "INT64", "FP32", "BYTES", "BOOL"
    default: Any  # diffusers' I2VGenXLPipeline default; a model may override it (model_info.json)
    help: str
    range: tuple[float, float] | None = None  # inclusive bounds of a number
    choices: tuple[Any, ...] | None = None  # the allowed values, where a list says it better than a range
    max_length: int | None = None  # characters of a string
    required: bool = False  # must be sent (the prompt)
    size_step: bool = False  # a multiple of the model's size step (height, width)
    random_when_omitted: bool = False  # omitted: the server draws one and reports it (the seed)
    model_default: bool = True  # the served model may have its own default (not the prompt, not the seed)
    flag: str | None = ""  # the CLI flag; "" derives --name-with-dashes, None: no flag
    label: str = ""  # the UI's label
    ui: str | None = None  # "textbox", "slider", "number" or "dropdown"; None: not on the page
    ui_step: float | None = None  # a slider's step

    @property
    def cli_flag(self) -> str | None:
        return None if self.flag is None else self.flag or "--" + self.name.replace("_", "-")

    def describe_range(self) -> str:
        """'8 to 32', 'one of a, b': what the CLI's help and error messages say is allowed."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.range is not None:
            return f"{_number(self.range[0])} to {_number(self.range[1])}"
        if self.max_length is not None:
            return f"at most {self.max_length} characters"
        return ""

    def check(self, value: object, size_multiple: int = 8) -> None:
        """Raise `InvalidParameterError` naming this parameter and what it allows."""
        name = self.name
        accepted, words = _TYPES[self.type]
        if not isinstance(value, accepted) or (isinstance(value, bool) and self.type is not bool):
            raise InvalidParameterError(f"{name} must be {words}, got {type(value).__name__}")
        if self.type is str:
            if self.required and not value.strip():
                raise InvalidParameterError(f"{name} must be a non-empty string")
            if self.max_length is not None and len(value) > self.max_length:
                raise InvalidParameterError(f"{name} must be at most {self.max_length} characters, got {len(value)}")
        if self.choices is not None and value not in self.choices:
            raise InvalidParameterError(f"{name} must be {self.describe_range()}, got {value!r}")
        if self.range is not None:
            low, high = self.range
            if not (math.isfinite(value) and low <= value <= high):
                raise InvalidParameterError(f"{name} must be between {_number(low)} and {_number(high)}, got {value}")
        if self.size_step and value % size_multiple:
            raise InvalidParameterError(f"{name} must be a multiple of {size_multiple}, got {value}")


def _number(value: float) -> str:
    """1.0 as '1', 2**63 - 1 in full."""
    return f"{value:g}" if isinstance(value, float) else str(value)


MAX_PROMPT_CHARS = 2000

PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "prompt",
        str,
        "BYTES",
        None,
        "what should happen in the video",
        max_length=MAX_PROMPT_CHARS,
        required=True,
        model_default=False,
        label="Prompt",
        ui="textbox",
    ),
    Parameter(
        "negative_prompt",
        str,
        "BYTES",
        "",
        "what the video should avoid",
        max_length=MAX_PROMPT_CHARS,
        label="Negative prompt",
        ui="textbox",
    ),
    Parameter(
        "height",
        int,
        "INT32",
        704,
        "pixels, a multiple of the model's size step",
        range=(64, 1280),
        size_step=True,
        label="Height",
        ui="number",
    ),
    Parameter(
        "width",
        int,
        "INT32",
        1280,
        "pixels, a multiple of the model's size step",
        range=(64, 1280),
        size_step=True,
        label="Width",
        ui="number",
    ),
    Parameter(
        "num_frames",
        int,
        "INT32",
        16,
        "length of the video in frames",
        range=(8, 32),
        label="Frames",
        ui="slider",
        ui_step=1,
    ),
    Parameter(
        "fps",
        int,
        "INT32",
        16,
        "frames per second, also a model condition",
        range=(4, 24),
        label="Frames per second",
        ui="slider",
        ui_step=1,
    ),
    Parameter(
        "num_inference_steps",
        int,
        "INT32",
        50,
        "denoising steps: more take longer and refine more",
        range=(10, 100),
        flag="--steps",
        label="Denoising steps",
        ui="slider",
        ui_step=1,
    ),
    Parameter(
        "guidance_scale",
        float,
        "FP32",
        9.0,
        "classifier-free guidance scale (1 turns guidance off)",
        range=(1.0, 20.0),
        flag="--guidance",
        label="Guidance scale",
        ui="slider",
        ui_step=0.5,
    ),
    Parameter(
        "seed",
        int,
        "INT64",
        0,
        "random when omitted; the one used is reported",
        range=(0, 2**63 - 1),
        random_when_omitted=True,
        model_default=False,
        label="Seed",
        ui="number",
    ),
    Parameter(
        "decode_chunk_size",
        int,
        "INT32",
        1,
        "frames the VAE decodes at once (more: faster, more memory)",
        range=(1, 32),
        label="Frames per VAE decode",
        ui="slider",
        ui_step=1,
    ),
    Parameter(
        "lora",
        str,
        "BYTES",
        "",
        "a LoRA adapter registered on the server (i2v lora list); empty: the base model",
        max_length=64,
        model_default=False,
        label="LoRA",
        ui="dropdown",  # its choices: the adapters the server lists when the page opens
    ),
    Parameter(
        "lora_scale",
        float,
        "FP32",
        1.0,
        "how strongly the LoRA applies (0: not at all, 1: as trained)",
        range=(0.0, 2.0),
        model_default=False,
        label="LoRA scale",
        ui="slider",
        ui_step=0.05,
    ),
    Parameter(
        "return_frames",
        bool,
        "BOOL",
        False,
        "also return the raw uint8 frames [frames, height, width, 3]",
        model_default=False,
        flag=None,
    ),
    Parameter(
        "encoding",
        str,
        "BYTES",
        "binary",
        "how the image comes and the video goes: base64 text (or a data: URI) for JSON over HTTP (Triton's "
        "generate_stream, whose JSON strings cannot carry raw bytes)",
        choices=("binary", "base64"),
        model_default=False,
        flag=None,
    ),
)


def parameters() -> tuple[Parameter, ...]:
    """The table, read when called (a test may extend it)."""
    return PARAMETERS


def parameter(name: str) -> Parameter:
    """The table's entry for `name`; an unknown name is an `InvalidParameterError` listing the known ones."""
    for entry in parameters():
        if entry.name == name:
            return entry
    known = ", ".join(p.name for p in parameters())
    raise InvalidParameterError(f"unknown parameter {name!r}; the parameters are: {known}")


class GenerationParams:
    """Every parameter of the table for one video, defaults filled in; read them as attributes.

    `GenerationParams(prompt="a cat", num_frames=16)`: names outside the table are refused at once;
    values are checked by `validate`, which the server runs on every request.
    """

    def __init__(self, prompt: str | None = None, **values: Any) -> None:
        for name in values:
            parameter(name)  # unknown names fail here, listing the known ones
        merged = {"prompt": prompt, **values}
        object.__setattr__(self, "_values", {p.name: merged.get(p.name, p.default) for p in parameters()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"GenerationParams has no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        parameter(name)
        self._values[name] = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationParams) and self._values == other._values

    def __repr__(self) -> str:
        return "GenerationParams(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    @property
    def guided(self) -> bool:
        """Classifier-free guidance is on (a scale above 1): every part runs conditional and unconditional inputs."""
        return self.guidance_scale > 1

    @property
    def batch(self) -> int:
        """The parts' batch: 2 under guidance (unconditional and conditional, stacked), else 1."""
        return 2 if self.guided else 1

    def validate(self, size_multiple: int = 8) -> GenerationParams:
        """Raise `InvalidParameterError` naming the first bad value and its allowed range."""
        for entry in parameters():
            entry.check(self._values[entry.name], size_multiple)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **values: Any) -> GenerationParams:
        return GenerationParams(**{**self._values, **values})


def model_defaults(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults a served model reports: the table's, with the model's own `overrides` on top (only for
    parameters a model may set: not the prompt, not the seed)."""
    defaults = {p.name: p.default for p in parameters() if p.model_default}
    defaults.update({k: v for k, v in (overrides or {}).items() if k in defaults})
    return defaults
