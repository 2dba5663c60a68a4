"""The written model repository: every config parses as Triton's ModelConfig and declares the parts' tensors."""

from __future__ import annotations

import json

from model_configs import read_config
from tritonclient.grpc import model_config_pb2

from i2v.model.info import ModelInfo
from i2v.model.parts import PART_NAMES, specs_for_pipeline


def test_every_part_config_declares_the_exported_names_types_and_dims(model_repository, tiny_pipeline):
    specs = specs_for_pipeline(tiny_pipeline)
    for name in PART_NAMES:
        config = read_config(model_repository / name / "config.pbtxt")
        assert config.name == name and config.backend == "python"
        assert config.parameters["RUNTIME"].string_value == "onnxruntime"
        assert (model_repository / name / "1" / "model.onnx").stat().st_size > 0
        for declared, spec in [(config.input, specs[name].inputs), (config.output, specs[name].outputs)]:
            assert [t.name for t in declared] == [t.name for t in spec]
            for tensor, tensor_spec in zip(declared, spec, strict=True):
                type_name = model_config_pb2.DataType.Name(tensor.data_type)
                assert type_name == {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}[tensor_spec.dtype]
                assert list(tensor.dims) == [d if isinstance(d, int) else -1 for d in tensor_spec.dims]


def test_bls_config_is_decoupled_with_optional_parameters(model_repository):
    config = read_config(model_repository / "i2vgen_xl" / "config.pbtxt")
    assert config.model_transaction_policy.decoupled
    required = {t.name for t in config.input if not t.optional}
    assert required == {"image", "prompt"}
    assert {t.name for t in config.output} == {"progress", "video", "metadata", "frames"}


def test_pipeline_assets_hold_what_the_loop_needs(model_repository):
    pipeline = model_repository / "i2vgen_xl" / "1" / "pipeline"
    info = ModelInfo.load(pipeline)
    assert (info.vae_scale_factor, info.size_multiple, info.latent_channels) == (8, 16, 4)
    assert info.defaults["height"] == 64 and info.defaults["num_frames"] == 16
    scheduler = json.loads((pipeline / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler"
    assert (pipeline / "tokenizer" / "tokenizer_config.json").exists()
    assert (pipeline / "feature_extractor" / "preprocessor_config.json").exists()
