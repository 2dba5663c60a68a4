"""Read a written `config.pbtxt` back through Triton's own protobuf schema, so tests check what Triton will parse."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return parse_config(path.read_text())
