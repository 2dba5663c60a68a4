"""Gradio page for people: drop a picture, write a prompt, watch the steps, get a video.

It is a thin shell over `AsyncI2VClient`: the server streams progress into Gradio's progress bar, and a
cancelled event (the Cancel button) cancels the request on the server too, because leaving the client's stream
cancels it. So does closing the tab (Gradio's unload event, when the page's heartbeat connection ends).

The controls are made from the parameter table (`i2v.params`: a parameter with a `ui` kind gets a control
named after it), and start at the served model's own defaults, read from the server when the page opens, as
are the LoRA adapters it offers (the LoRA row shows only when there are some; the list is read again every
`lora_refresh_s`, so an adapter added or removed on the server shows without a reload). "Request" shows
exactly what Generate will send.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import PIL.Image

from i2v.client import AsyncI2VClient, GenerationRequest, GenerationResult, I2VError, LoraAdapterInfo, Progress
from i2v.examples import LIGHTHOUSE_PROMPT, lighthouse_image
from i2v.params import (
    IMAGE_FORMATS,
    IMAGE_FORMATS_TEXT,
    RESOLUTION_PRESETS,
    InvalidParameterError,
    Parameter,
    model_defaults,
    parameter,
    parameters,
)
from i2v.ui.command import LORA_REFRESH_S, PAGE_CONCURRENCY

MODEL_DEFAULT = "model default"
CUSTOM = "custom"
SIZE = ("height", "width")  # set by the resolution choice: a preset, the model's default, or custom numbers
LORA = ("lora", "lora_scale")  # a row of their own, shown when the server has adapters; choices from the server
NO_LORA = ("none (the base model)", "")
# A generated video stays on disk this long, in this app's folder and in Gradio's cache (the copy it serves)
VIDEO_KEPT_S = 24 * 3600


def build_request(
    image_path: str | None, resolution: str, randomize_seed: bool, size_step: int | None = None, **values: Any
) -> GenerationRequest:
    """The page's fields (the parameters by name) → a request validated as the server will (with the served
    model's `size_step` where known); raises `InvalidParameterError` in plain words. The model-default
    resolution and a random seed are left out: the server fills them in."""
    if not image_path:
        raise InvalidParameterError("add a picture first: drop an image on the left")
    try:  # the header only: the server decodes the whole picture
        PIL.Image.open(image_path, formats=IMAGE_FORMATS).close()
    except (PIL.UnidentifiedImageError, OSError):
        raise InvalidParameterError(f"the picture could not be read: upload a {IMAGE_FORMATS_TEXT} image") from None
    if not values.get("prompt") or not values["prompt"].strip():
        raise InvalidParameterError("write a prompt: describe what should happen in the video")
    params = {}
    for entry in parameters():
        if entry.ui is None or entry.name not in values:
            continue
        value = values[entry.name]
        if entry.name in SIZE and resolution != CUSTOM:
            value = RESOLUTION_PRESETS[resolution][SIZE.index(entry.name)] if resolution in RESOLUTION_PRESETS else None
        elif entry.random_when_omitted and randomize_seed:
            value = None
        elif entry.type is str:
            value = (value or "").strip() or None
        elif value is None:
            raise InvalidParameterError(f"{entry.label.lower() or entry.name} is empty")
        else:
            value = entry.type(value)
        params[entry.name] = value
    if not params.get("lora"):
        params.pop("lora_scale", None)  # a scale without an adapter says nothing
    return GenerationRequest.from_file(image_path, **params).validate(size_step)


def request_preview(image_path, resolution, randomize_seed, size_step, *values) -> dict:
    """What Generate would send now (or why it would not)."""
    try:
        request = build_request(
            image_path, resolution, randomize_seed, size_step, **dict(zip(_names(), values, strict=True))
        )
    except (InvalidParameterError, OSError) as exc:
        return {"not ready": str(exc)}
    return request.parameters()


def _names() -> list[str]:
    return [entry.name for entry in parameters() if entry.ui is not None]


def _control(entry: Parameter, value: Any, choices: list | None = None) -> gr.components.Component:
    """The Gradio control of one parameter, with its range and the starting `value` (a dropdown: the table's
    choices, or `choices` where the server gives them)."""
    common = {"label": entry.label or entry.name, "elem_id": entry.name, "info": entry.help}
    if entry.ui == "textbox":
        return gr.Textbox(value=value or "", lines=2 if entry.required else 1, placeholder=entry.help, **common)
    if entry.ui == "dropdown":
        return gr.Dropdown(list(choices or entry.choices or ()), value=value, **common)
    if entry.ui == "slider" and entry.range is not None:
        return gr.Slider(*entry.range, value=value, step=entry.ui_step or 1, **common)
    # no minimum/maximum: the browser would clamp a number typed outside them without a word; the request
    # preview and Generate refuse it instead, naming the range (also in the field's info)
    if entry.range is not None:
        common["info"] = _number_info(entry)
    return gr.Number(value=value, precision=0 if entry.type is int else None, **common)


def _number_info(entry: Parameter, size_step: int | None = None) -> str:
    """A number field's help: the table's, its range, and the served model's size step where known."""
    step = f", a multiple of {size_step}" if size_step and entry.size_step else ""
    return f"{entry.help} ({entry.describe_range()}{step})"


def picture_input(**options: Any) -> gr.Image:
    """The picture upload (a file path). A file Gradio checked in but cannot decode is passed on as it came, so
    that `build_request` refuses it in plain words, in the request preview too: Gradio's own error names the
    upload's temporary path. (Not a subclass: Gradio writes a .pyi file beside any module that defines one.)"""
    image = gr.Image(type="filepath", **options)
    decode = image.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except (PIL.UnidentifiedImageError, OSError, ValueError):
            return payload.path if payload is not None else None

    image.preprocess = preprocess
    return image


def _lora_choices(adapters: list[LoraAdapterInfo]) -> list[tuple[str, str]]:
    return [NO_LORA, *((f"{a.name} (rank {a.rank_text})", a.name) for a in adapters)]


def _resolution_choices(defaults: dict) -> list[tuple[str, str]]:
    default = f"{MODEL_DEFAULT} ({defaults['height']}x{defaults['width']})"
    presets = [(f"{name} ({h}x{w})", name) for name, (h, w) in RESOLUTION_PRESETS.items()]
    return [(default, MODEL_DEFAULT), *presets, (CUSTOM, CUSTOM)]


def build_app(
    url: str,
    api_key: str | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    lora_refresh_s: float = LORA_REFRESH_S,
    tls: bool = False,
    ca_file: str | None = None,
) -> gr.Blocks:
    """The page for the server at `url` (`tls`/`ca_file`: a gateway's TLS port); `lora_refresh_s` (0: never) is
    how often the LoRA list is read again."""
    connection = {"api_key": api_key, "tls": tls, "ca_file": ca_file}
    table_defaults = model_defaults()

    generating: dict[str, set[asyncio.Task]] = {}  # a visitor's session → its generations, for `on_tab_closed`

    async def generate(visitor: gr.Request, *fields, progress=gr.Progress()):  # noqa: B008 (Gradio's own idiom)
        task = asyncio.current_task()
        generating.setdefault(visitor.session_hash, set()).add(task)
        try:
            return await _generate(*fields, progress=progress)
        finally:
            generating.get(visitor.session_hash, set()).discard(task)

    async def on_tab_closed(visitor: gr.Request) -> None:
        """The page left (tab closed, reloaded): its generations are cancelled, and with them their requests on
        the server, which Gradio would otherwise let run to the end for nobody."""
        for task in generating.pop(visitor.session_hash, set()):
            task.cancel()

    async def _generate(*fields, progress: gr.Progress):
        image_path, resolution, randomize_seed, size_step, *values = fields
        try:
            request = build_request(
                image_path, resolution, randomize_seed, size_step, **dict(zip(_names(), values, strict=True))
            )
        except (InvalidParameterError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        progress(0, desc="waiting for the server")
        result = None
        try:
            async with AsyncI2VClient(url, **connection) as client:
                async for event in client.stream(request):
                    if isinstance(event, Progress):
                        progress((event.step, event.total), desc="denoising", unit="steps")
                    elif isinstance(event, GenerationResult):
                        result = event
        except I2VError as exc:
            raise gr.Error(_plain(exc)) from exc
        if result is None:
            raise gr.Error("The server ended the request without a video")
        return _save_video(result), result.metadata

    async def load_model_defaults():
        """The served model's defaults into the controls (and the state), the model-default resolution named,
        its size step into height's and width's help; the server's LoRA adapters into their dropdown (the row
        hidden when there are none)."""
        adapters: list[LoraAdapterInfo] = []
        size_step = None
        try:
            async with AsyncI2VClient(url, **connection) as client:
                served = await client.served_model()
                defaults, size_step, note = served.defaults, served.size_step, ""
                try:
                    adapters = await client.lora_adapters()
                except I2VError:  # a server without the listing model: no LoRA row
                    adapters = []
        except I2VError as exc:
            defaults = table_defaults
            note = f"The server's defaults could not be read ({_plain(exc)}); the controls show the usual ones."
        updates = [gr.update(choices=_resolution_choices(defaults), value=MODEL_DEFAULT)]
        for name in _names():
            if name == "lora":
                updates.append(gr.update(choices=_lora_choices(adapters), value=NO_LORA[1]))
            elif name in SIZE and size_step:
                updates.append(gr.update(value=defaults[name], info=_number_info(parameter(name), size_step)))
            else:
                updates.append(gr.update(value=defaults[name]) if name in defaults else gr.update())
        lora_row_update = gr.update(visible=bool(adapters))
        listed = [a.name for a in adapters]
        note_update = gr.update(value=note, visible=bool(note))
        return [defaults, size_step, *updates, lora_row_update, listed, note_update]

    async def refresh_loras(chosen: str, listed: list[str]):
        """The server's adapters again: the dropdown and the row change only when the list did, and the chosen
        adapter stays chosen unless it was removed."""
        try:
            async with AsyncI2VClient(url, **connection) as client:
                adapters = await client.lora_adapters()
        except I2VError:  # the server away for a moment: the page keeps what it shows
            return gr.update(), gr.update(), listed
        names = [a.name for a in adapters]
        if names == listed:
            return gr.update(), gr.update(), listed
        value = chosen if chosen in names else NO_LORA[1]
        return gr.update(choices=_lora_choices(adapters), value=value), gr.update(visible=bool(adapters)), names

    def on_resolution(resolution: str, defaults: dict):
        """Height and width show the numbers that will be used; only `custom` lets one type them."""
        if resolution == CUSTOM:
            return gr.update(interactive=True), gr.update(interactive=True)
        height, width = RESOLUTION_PRESETS.get(resolution, (defaults["height"], defaults["width"]))
        return gr.update(value=height, interactive=False), gr.update(value=width, interactive=False)

    with gr.Blocks(title="I2VGen-XL: image to video", delete_cache=(3600, VIDEO_KEPT_S)) as app:
        gr.Markdown("# I2VGen-XL: image to video\nDrop a picture, describe the motion, get a short video.")
        note = gr.Markdown(visible=False, elem_id="defaults-note")
        served_defaults = gr.State(table_defaults)
        served_size_step = gr.State(None)  # read from the server when the page opens
        controls: dict[str, gr.components.Component] = {}
        with gr.Row():
            with gr.Column():
                image = picture_input(label="Picture", sources=["upload", "clipboard"], elem_id="image")
                for entry in parameters():
                    if entry.ui == "textbox":
                        controls[entry.name] = _control(entry, table_defaults.get(entry.name))
                with gr.Row(visible=False, elem_id="lora-row") as lora_row:
                    for entry in parameters():
                        if entry.name in LORA:
                            choices = [NO_LORA] if entry.ui == "dropdown" else None
                            controls[entry.name] = _control(entry, entry.default, choices)
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    resolution = gr.Dropdown(
                        _resolution_choices(table_defaults),
                        value=MODEL_DEFAULT,
                        label="Resolution",
                        elem_id="resolution",
                    )
                    with gr.Row():
                        for name in SIZE:
                            controls[name] = _control(parameter(name), table_defaults[name])
                            controls[name].interactive = False
                    randomize = None
                    for entry in parameters():
                        if entry.ui is None or entry.name in controls:
                            continue
                        if entry.random_when_omitted:
                            with gr.Row():
                                controls[entry.name] = _control(entry, entry.default)
                                randomize = gr.Checkbox(
                                    value=True, label=f"Random {entry.label.lower()}", elem_id="randomize"
                                )
                        else:
                            controls[entry.name] = _control(entry, table_defaults.get(entry.name, entry.default))
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", elem_id="cancel")
                preview = gr.JSON(
                    label="Request (what Generate sends; left out: the model's default)", elem_id="request"
                )
            with gr.Column():
                video = gr.Video(label="Video", autoplay=True, elem_id="video")
                metadata = gr.JSON(label="Parameters used", elem_id="metadata")
        with lighthouse_image() as example:
            gr.Examples([[str(example), LIGHTHOUSE_PROMPT]], inputs=[image, controls["prompt"]])
        ordered = [controls[name] for name in _names()]
        fields = [image, resolution, randomize or gr.State(False), served_size_step, *ordered]
        event = run.click(generate, inputs=fields, outputs=[video, metadata], concurrency_limit=concurrency)
        cancel.click(None, cancels=[event])
        app.unload(on_tab_closed)
        size = [controls[name] for name in SIZE]
        resolution.change(on_resolution, inputs=[resolution, served_defaults], outputs=size, queue=False)
        for field in fields:
            if isinstance(field, gr.components.Component) and field is not image:
                field.change(request_preview, inputs=fields, outputs=preview, queue=False)
        image.change(request_preview, inputs=fields, outputs=preview, queue=False)
        listed_loras = gr.State([])
        app.load(
            load_model_defaults,
            outputs=[served_defaults, served_size_step, resolution, *ordered, lora_row, listed_loras, note],
            queue=False,
        )
        if lora_refresh_s > 0:
            gr.Timer(lora_refresh_s).tick(
                refresh_loras,
                inputs=[controls["lora"], listed_loras],
                outputs=[controls["lora"], lora_row, listed_loras],
                queue=False,
                show_progress="hidden",
            )
    app.queue(default_concurrency_limit=concurrency)
    return app


def _plain(exc: I2VError) -> str:
    """The server's message, prefixed with what kind of failure it is."""
    kinds = {
        "OverloadedError": "The server is busy, please try again in a moment",
        "ServerUnavailableError": "The video server cannot be reached",
        "UnauthorizedError": "The video server refused the API key",
        "GenerationCancelledError": "Cancelled",
        "OutOfMemoryError": "The server ran out of memory for this video",
    }
    prefix = kinds.get(type(exc).__name__)
    return f"{prefix}: {exc}" if prefix else str(exc)


def _save_video(result: GenerationResult) -> str:
    """Gradio serves files: write the MP4 where it can find it, and delete this folder's videos older than
    `VIDEO_KEPT_S` (Gradio serves its own copy), so a long-running page does not fill the disk."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())) / "i2v-ui"
    folder.mkdir(parents=True, exist_ok=True)
    expired = time.time() - VIDEO_KEPT_S
    for old in folder.glob("video-*.mp4"):
        with contextlib.suppress(OSError):  # another process of the app may delete it first
            if old.stat().st_mtime < expired:
                old.unlink()
    path = folder / f"video-{result.seed}-{os.getpid()}-{id(result)}.mp4"
    path.write_bytes(result.video)
    return str(path)
