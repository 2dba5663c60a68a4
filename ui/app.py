"""Gradio page for people: drop a picture, write a prompt, watch the steps, get a video.

It is a thin shell over `AsyncI2VClient`: the server streams progress into Gradio's progress bar, and a
cancelled event (the Cancel button, a closed tab) cancels the request on the server too, because leaving the
client's stream cancels it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

from i2v.client import AsyncI2VClient, GenerationRequest, GenerationResult, I2VError, Progress
from i2v.params import (
    FPS_RANGE,
    GUIDANCE_RANGE,
    NUM_FRAMES_RANGE,
    RESOLUTION_PRESETS,
    SEED_RANGE,
    STEPS_RANGE,
    GenerationParams,
    InvalidParameterError,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
MODEL_DEFAULT = "model default"
CUSTOM = "custom"
DEFAULTS = GenerationParams(prompt="-")  # diffusers' defaults, for the sliders' starting points
EXAMPLES = [
    ("lighthouse.png", "A lighthouse on a cliff, waves rolling in, clouds drifting by"),
]


def build_request(
    image_path: str | None,
    prompt: str,
    negative_prompt: str,
    resolution: str,
    height: float | None,
    width: float | None,
    num_frames: float,
    fps: float,
    steps: float,
    guidance: float,
    seed: float | None,
    randomize_seed: bool,
) -> GenerationRequest:
    """The page's fields → a validated request; raises `InvalidParameterError` in plain words."""
    if not image_path:
        raise InvalidParameterError("add a picture first: drop an image on the left")
    if not prompt or not prompt.strip():
        raise InvalidParameterError("write a prompt: describe what should happen in the video")
    size: dict[str, int | None] = {"height": None, "width": None}
    if resolution == CUSTOM:
        size = {"height": _int(height, "height"), "width": _int(width, "width")}
    elif resolution != MODEL_DEFAULT:
        size = dict(zip(("height", "width"), RESOLUTION_PRESETS[resolution], strict=True))
    return GenerationRequest.from_file(
        image_path,
        prompt.strip(),
        negative_prompt=negative_prompt or None,
        num_frames=_int(num_frames, "frames"),
        fps=_int(fps, "fps"),
        num_inference_steps=_int(steps, "steps"),
        guidance_scale=float(guidance),
        seed=None if randomize_seed else _int(seed, "seed"),
        **size,
    ).validate()


def _int(value: float | None, name: str) -> int:
    if value is None:
        raise InvalidParameterError(f"{name} is empty")
    return int(value)


def build_app(url: str, api_key: str | None = None, concurrency: int = 2) -> gr.Blocks:
    async def generate(*fields, progress=gr.Progress()):  # noqa: B008 (Gradio's own idiom)
        try:
            request = build_request(*fields)
        except (InvalidParameterError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        progress(0, desc="waiting for the server")
        result = None
        try:
            async with AsyncI2VClient(url, api_key=api_key) as client:
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

    with gr.Blocks(title="I2VGen-XL: image to video") as app:
        gr.Markdown("# I2VGen-XL: image to video\nDrop a picture, describe the motion, get a short video.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Picture", type="filepath", sources=["upload", "clipboard"], elem_id="image")
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="What should happen?", elem_id="prompt")
                negative = gr.Textbox(
                    label="Negative prompt", placeholder="What to avoid (optional)", elem_id="negative"
                )
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    resolution = gr.Dropdown(
                        [MODEL_DEFAULT, *RESOLUTION_PRESETS, CUSTOM],
                        value=MODEL_DEFAULT,
                        label="Resolution",
                        elem_id="resolution",
                    )
                    with gr.Row():
                        height = gr.Number(value=512, precision=0, label="Height (custom)", elem_id="height")
                        width = gr.Number(value=512, precision=0, label="Width (custom)", elem_id="width")
                    frames = gr.Slider(
                        *NUM_FRAMES_RANGE, value=DEFAULTS.num_frames, step=1, label="Frames", elem_id="frames"
                    )
                    fps = gr.Slider(*FPS_RANGE, value=DEFAULTS.fps, step=1, label="Frames per second", elem_id="fps")
                    steps = gr.Slider(
                        *STEPS_RANGE,
                        value=DEFAULTS.num_inference_steps,
                        step=1,
                        label="Denoising steps",
                        elem_id="steps",
                    )
                    guidance = gr.Slider(
                        *GUIDANCE_RANGE,
                        value=DEFAULTS.guidance_scale,
                        step=0.5,
                        label="Guidance scale",
                        elem_id="guidance",
                    )
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=SEED_RANGE[0], label="Seed", elem_id="seed")
                        randomize = gr.Checkbox(value=True, label="Random seed", elem_id="randomize")
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", elem_id="cancel")
            with gr.Column():
                video = gr.Video(label="Video", autoplay=True, elem_id="video")
                metadata = gr.JSON(label="Parameters used", elem_id="metadata")
        gr.Examples([[str(EXAMPLES_DIR / name), text] for name, text in EXAMPLES], inputs=[image, prompt])
        fields = [image, prompt, negative, resolution, height, width, frames, fps, steps, guidance, seed, randomize]
        event = run.click(generate, inputs=fields, outputs=[video, metadata], concurrency_limit=concurrency)
        cancel.click(None, cancels=[event])
    app.queue(default_concurrency_limit=concurrency)
    return app


def _plain(exc: I2VError) -> str:
    """The server's message without the gRPC wrapping, prefixed with what kind of failure it is."""
    message = str(exc).split(" (StatusCode.")[0]
    kinds = {
        "OverloadedError": "The server is busy, please try again in a moment",
        "ServerUnavailableError": "The video server cannot be reached",
        "UnauthorizedError": "The video server refused the API key",
        "CancelledError": "Cancelled",
    }
    prefix = kinds.get(type(exc).__name__)
    return f"{prefix}: {message}" if prefix else message


def _save_video(result: GenerationResult) -> str:
    """Gradio serves files: write the MP4 where it can find it."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())) / "i2v-ui"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"video-{result.seed}-{os.getpid()}-{id(result)}.mp4"
    path.write_bytes(result.video)
    return str(path)
