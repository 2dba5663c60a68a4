"""Triton Python model `i2vgen_xl`: the whole image-to-video request, part models called through BLS.

`execute` reads like the pipeline it serves: read and validate the request, decode the image, run the
`VideoGenerator` loop (each part is a BLS call to the Triton model of that name, whatever runtime serves it),
stream one progress response per denoising step, encode the MP4, send the final response. A bad request gets
an error naming the problem; the model keeps serving the next one.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from i2v.model.info import ModelInfo
from i2v.model.lora_layer_map import NO_LORA, takes_lora
from i2v.model.lora_registry import LoraRegistryError, file_version, lora_dir, resolve
from i2v.model.parts import BATCH_CHUNK_PARAMETER, OUTPUT_NAMES
from i2v.model.repository_layout import LORA_TARGETS_FILE, PIPELINE_FOLDER
from i2v.params import (
    FRAMES_OUTPUT,
    IMAGE_FORMATS_TEXT,
    IMAGE_INPUT,
    INVALID_INPUT,
    METADATA_FRAMES,
    METADATA_HEIGHT,
    METADATA_MODEL,
    METADATA_OUTPUT,
    METADATA_PARAMETERS,
    METADATA_SEED,
    METADATA_TIMINGS,
    METADATA_WIDTH,
    MP4_ENCODE_STAGE,
    OUT_OF_MEMORY,
    PROCESS_DIED,
    PROGRESS_OUTPUT,
    TOTAL_STAGE,
    UNAVAILABLE,
    VIDEO_OUTPUT,
    GenerationParams,
    InvalidParameterError,
    parameters,
)
from i2v.serving.admission import HeldMemory, check_memory
from i2v.serving.drain import DrainGate
from i2v.serving.generator import GenerationCancelled, VideoGenerator
from i2v.serving.lora_runtime import LoraChoice
from i2v.serving.metrics import BlsMetrics
from i2v.serving.preprocess import InvalidImageError, decode_image, image_from_base64
from i2v.serving.request import check_no_unknown_fields, read_parameters
from i2v.serving.request_log import RequestLog
from i2v.serving.stub import use_utf8_text
from i2v.serving.tenancy import ModelNotAllowedError, check_model_allowed, tenant_of
from i2v.serving.tensors import instance_device, to_torch, to_triton
from i2v.video import encode_mp4

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
MODEL_NOT_READY = "Model '{part}' is not ready."  # Triton's answer to a call of a part unloaded under the BLS


class ServerDraining(RuntimeError):
    """The server is stopping (`i2v.serving.drain`): new requests are refused, retryably."""


class PartError(RuntimeError):
    """A part model answered with an error."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        # Triton's words when the part's Python-backend process has died: the supervisor restarts the server, so
        # the request may be retried
        self.process_died = PROCESS_DIED in message
        self.not_loaded = MODEL_NOT_READY.format(part=part) in message  # unloaded by an operator (`i2v models`)
        self.out_of_memory = OUT_OF_MEMORY in message  # the part runner's words (`i2v.serving.part_runner`)
        # the request's LoRA file could not be used there (copied in by hand and damaged, or for another UNet):
        # the part runner names the error's type before its message
        found = re.search(r"\b(?:LoraFileError|LoraUnavailableError): (.*)", message, re.DOTALL)
        self.lora_problem = found.group(1).strip() if found else None


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        use_utf8_text()
        self.device = instance_device(args)
        self.model_name = args["model_name"]
        pipeline_dir = Path(args["model_repository"]) / args["model_version"] / PIPELINE_FOLDER
        # The Python-backend part runner splits a decoder call into decode chunks itself (the TensorRT runtime's
        # decoder is a native TensorRT model, one chunk a call)
        runtime = ModelInfo.load(pipeline_dir).runtime
        self.generator = VideoGenerator(
            pipeline_dir, run_part=self.run_part, device=self.device, decoder_takes_chunks=runtime != "tensorrt"
        )
        self.metrics = BlsMetrics(self.model_name)
        self.request_log = RequestLog()
        self.drain_gate = DrainGate()  # the server is stopping: only requests queued before that are served
        self.repository = Path(args["model_repository"]).parent
        self.lora_folder = lora_dir(self.repository)  # the registry, read per request
        # this request's parameters for a part: the UNet's LoRA, the decoder's chunk
        self.part_parameters: dict[str, dict[str, str]] = {}
        # What the parts' allocators keep for the next request (`i2v.serving.admission`)
        self.parts_hold = HeldMemory(self.generator.info, self.device)

    def execute(self, requests):
        for request in requests:
            self.metrics.in_flight.increment(1)
            try:
                self.serve(request)
            finally:
                self.metrics.in_flight.increment(-1)
        return None

    def serve(self, request) -> None:
        """Answer one request completely: progress, then the video or an error.

        The outcome is counted and logged before the final response goes out, so a client that has its answer
        finds its request in the metrics and the request log.
        """
        sender = request.get_response_sender()
        record: dict = {"tenant": tenant_of(request)}
        final = None
        try:
            final, generated = self.generate(request, sender)
            record.update(generated)
            outcome = "ok"
        except Exception as exc:  # every failure is answered; the server keeps serving
            final, outcome, record["error"] = failure(exc, request.request_id() or "without id")
            if outcome == "out_of_memory":
                self.parts_hold.failed()
        self.metrics.finish(outcome)
        line = self.request_log.record(request.request_id(), outcome, **record)
        log = pb_utils.Logger.log_error if outcome == "internal" else pb_utils.Logger.log_info
        log(f"i2vgen_xl request {line}")
        if final is None:
            sender.send(flags=FINAL)
        else:
            sender.send(final, flags=FINAL)

    def generate(self, request, sender) -> tuple[pb_utils.InferenceResponse, dict]:
        check_model_allowed(request, self.model_name)
        if not self.drain_gate.admits():
            raise ServerDraining(
                f"{UNAVAILABLE}: the server is shutting down: retry in a few seconds (another replica)"
            )
        start = time.perf_counter()
        image_bytes = _read_bytes(request, IMAGE_INPUT)
        if image_bytes is None:
            raise InvalidImageError(f"{IMAGE_INPUT} is required: send the bytes of a {IMAGE_FORMATS_TEXT} file")
        params = self.read_params(request)
        if params.encoding == "base64":
            image_bytes = image_from_base64(image_bytes)
        image = decode_image(image_bytes)
        held = self.parts_hold.for_request(params, lora=bool(params.lora))
        needed = check_memory(self.generator.info, params, self.device, held)  # before any part runs

        def on_step(step: int, total: int) -> None:
            progress = pb_utils.Tensor(PROGRESS_OUTPUT, np.array([step, total], dtype=np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[progress]))
            self.metrics.steps.increment(1)

        lora = self.choose_lora(params)
        self.part_parameters = {"unet": lora.to_parameters()} if lora else {}
        if self.generator.decoder_takes_chunks:
            self.part_parameters["vae_decoder"] = {BATCH_CHUNK_PARAMETER: str(params.decode_chunk_size)}
        try:
            video = self.generator(image, params, on_step=on_step, is_cancelled=request.is_cancelled)
        finally:
            self.part_parameters = {}
            self.parts_hold.ran(needed)
        encode_start = time.perf_counter()
        mp4 = encode_mp4(video.frames, fps=params.fps)
        timings = {**video.timings, MP4_ENCODE_STAGE: time.perf_counter() - encode_start}
        timings[TOTAL_STAGE] = time.perf_counter() - start
        self.metrics.record_stages(timings)
        metadata = {
            METADATA_PARAMETERS: params.to_dict(),
            METADATA_SEED: params.seed,
            METADATA_MODEL: self.generator.info.source,
            METADATA_FRAMES: int(video.frames.shape[0]),
            METADATA_HEIGHT: int(video.frames.shape[1]),
            METADATA_WIDTH: int(video.frames.shape[2]),
            METADATA_TIMINGS: {k: round(v, 6) for k, v in timings.items()},
        }
        sent = base64.b64encode(mp4) if params.encoding == "base64" else mp4  # JSON over HTTP carries text only
        outputs = [
            pb_utils.Tensor(VIDEO_OUTPUT, np.array([sent], dtype=np.object_)),
            pb_utils.Tensor(METADATA_OUTPUT, np.array([json.dumps(metadata).encode()], dtype=np.object_)),
        ]
        if params.return_frames:
            outputs.append(pb_utils.Tensor(FRAMES_OUTPUT, video.frames))
        stored = self.request_log.store(mp4, metadata)
        record = {**metadata, "video_bytes": len(mp4), "stored": str(stored) if stored else None}
        return pb_utils.InferenceResponse(output_tensors=outputs), record

    def read_params(self, request) -> GenerationParams:
        """Request tensors → validated parameters; omitted ones take this model's defaults, the seed a random one."""
        check_no_unknown_fields(json.loads(request.parameters() or "{}"))
        arrays = {}
        for entry in parameters():
            tensor = pb_utils.get_input_tensor_by_name(request, entry.name)
            arrays[entry.name] = None if tensor is None else tensor.as_numpy()
        info = self.generator.info
        return read_parameters(arrays, info.defaults, info.size_multiple)

    def choose_lora(self, params: GenerationParams) -> LoraChoice | None:
        """The request's adapter, resolved once so every step uses the same file; an unknown name is an invalid
        input listing the registered ones."""
        if not params.lora:
            return None
        if not takes_lora(self.repository):  # e.g. Triton's TensorRT backend runs the UNet: it would ignore it
            raise InvalidParameterError(f"lora {params.lora!r}: " + NO_LORA.format(file=LORA_TARGETS_FILE))
        try:
            path = resolve(self.lora_folder, params.lora)
            return LoraChoice(params.lora, file_version(path), params.lora_scale)
        except (LoraRegistryError, FileNotFoundError) as exc:
            raise InvalidParameterError(str(exc)) from None

    def run_part(self, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One BLS call; tensors stay on the GPU when there is one (DLPack), else go as numpy."""
        extra = {"parameters": self.part_parameters[name]} if name in self.part_parameters else {}
        request = pb_utils.InferenceRequest(
            model_name=name, requested_output_names=list(OUTPUT_NAMES[name]), inputs=to_triton(inputs), **extra
        )
        response = request.exec()
        if response.has_error():
            raise PartError(name, response.error().message())
        return {t.name(): to_torch(t, self.device) for t in response.output_tensors()}


def failure(exc: Exception, request_id: str) -> tuple[object | None, str, str]:
    """(the final error response, or None for a cancelled request; the outcome; what the request log records).

    Plain words for the client; the details (types, reprs, paths) only in the server's log."""
    if isinstance(exc, GenerationCancelled):
        return None, "cancelled", str(exc)
    if isinstance(exc, (InvalidParameterError, InvalidImageError)):
        return _error(f"{INVALID_INPUT}: {exc}", "INVALID_ARG"), "invalid_input", str(exc)
    if isinstance(exc, ModelNotAllowedError):
        return _error(str(exc), "INVALID_ARG"), "forbidden", str(exc)
    if isinstance(exc, ServerDraining):
        return _error(str(exc), "UNAVAILABLE"), "unavailable", str(exc)
    if (isinstance(exc, PartError) and exc.out_of_memory) or _torch_out_of_memory(exc):
        where = f"the {exc.part} part" if isinstance(exc, PartError) else "the server"
        message = (
            f"{OUT_OF_MEMORY}: {where} could not allocate what this request needs (request {request_id}); its memory "
            "is released: try fewer frames, a smaller size or a smaller decode_chunk_size"
        )
        return _error(message, "INTERNAL"), "out_of_memory", str(exc)
    if isinstance(exc, PartError) and exc.lora_problem:
        message = f"{INVALID_INPUT}: the requested lora cannot be used: {exc.lora_problem}"
        return _error(message, "INVALID_ARG"), "invalid_input", str(exc)
    if isinstance(exc, PartError) and exc.process_died:
        message = (
            f"{UNAVAILABLE}: the {exc.part} part's process stopped during this request (request {request_id}); "
            "the server restarts it by itself: retry in a few seconds"
        )
        return _error(message, "UNAVAILABLE"), "unavailable", str(exc)
    if isinstance(exc, PartError) and exc.not_loaded:
        message = (
            f"{UNAVAILABLE}: the {exc.part} part is not loaded (request {request_id}): retry once it is "
            f"(i2v models load {exc.part})"
        )
        return _error(message, "UNAVAILABLE"), "unavailable", str(exc)
    where = f" in the {exc.part} part" if isinstance(exc, PartError) else ""
    message = f"generation failed{where} (request {request_id}): an internal error; the server's log has the details"
    return _error(message, "INTERNAL"), "internal", f"{type(exc).__name__}: {exc}"


def _torch_out_of_memory(exc: Exception) -> bool:
    """The BLS's own allocation failed (its tensors on the GPU): give the cached blocks back, say so."""
    if not isinstance(exc, torch.OutOfMemoryError):
        return False
    torch.cuda.empty_cache()
    return True


def _read_bytes(request, name: str) -> bytes | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy().reshape(-1)
    if array.size != 1:
        raise InvalidParameterError(f"{name} must hold exactly one element, got {array.size}")
    value = array[0]
    return value if isinstance(value, bytes) else str(value).encode()


def _error(message: str, code: str):
    try:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, getattr(pb_utils.TritonError, code)))
    except (AttributeError, TypeError):  # older backends: message only
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
