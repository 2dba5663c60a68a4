"""The code's structure holds: one parameter table feeds every consumer, dependencies point one way, and the
serving code does not drag in the exporter.

The parameter test adds a parameter in one place (a fixture extending `i2v.params.PARAMETERS`) and finds it in
the BLS config, the server's reading, the client's tensors, the CLI and the UI, without touching any of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from i2v import params
from i2v.params import GenerationParams, InvalidParameterError, Parameter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def motion_strength(monkeypatch) -> Parameter:
    """A parameter that exists only in this test: one entry in the table, nothing else changed."""
    entry = Parameter(
        "motion_strength",
        float,
        "FP32",
        1.0,
        "how much the picture moves",
        range=(0.0, 2.0),
        label="Motion strength",
        ui="slider",
        ui_step=0.1,
    )
    monkeypatch.setattr(params, "PARAMETERS", (*params.PARAMETERS, entry))
    return entry


def test_a_new_parameter_reaches_the_bls_config(motion_strength, tiny_pipeline, tmp_path):
    from model_configs import read_config
    from tritonclient.grpc import model_config_pb2

    from i2v.export.repository import write_model_repository

    repository = write_model_repository(tiny_pipeline, {}, tmp_path, source="tiny", runtime="torch")
    config = read_config(repository / "i2vgen_xl" / "config.pbtxt")
    entry = next(t for t in config.input if t.name == "motion_strength")
    assert entry.data_type == model_config_pb2.TYPE_FP32 and entry.optional
    assert config.parameters["default.motion_strength"].string_value == "1.0"


def test_a_new_parameter_is_read_and_checked_by_the_server(motion_strength):
    from i2v.serving.request import read_parameters

    arrays = {"prompt": np.array([b"waves"], dtype=np.object_), "motion_strength": np.array([1.5], np.float32)}
    assert read_parameters(arrays, {}, size_multiple=16).motion_strength == 1.5
    assert read_parameters({"prompt": arrays["prompt"]}, {}, size_multiple=16).motion_strength == 1.0
    with pytest.raises(InvalidParameterError, match="motion_strength must be between 0 and 2, got 3.0"):
        read_parameters({**arrays, "motion_strength": np.array([3.0], np.float32)}, {}, size_multiple=16)


def test_a_new_parameter_is_sent_by_the_client(motion_strength):
    from i2v.client.grpc_client import build_inputs, parse_served_model
    from i2v.client.types import GenerationRequest

    request = GenerationRequest(image=b"png", prompt="waves", motion_strength=0.5).validate()
    tensor = next(t for t in build_inputs(request) if t.name() == "motion_strength")
    assert tensor.datatype() == "FP32" and tensor.shape() == [1]
    config = {"parameters": {"default.motion_strength": {"string_value": "0.25"}}}
    assert parse_served_model(config).defaults["motion_strength"] == 0.25
    with pytest.raises(InvalidParameterError, match="motion_strength must be between 0 and 2"):
        GenerationRequest(image=b"png", prompt="waves", motion_strength=5.0).validate()


def test_a_new_parameter_is_a_cli_flag(motion_strength, tmp_path):
    from i2v.cli import build_parser
    from i2v.client.command import generation_values

    args = build_parser().parse_args(["generate", "--image", "x.png", "--prompt", "waves", "--motion-strength", "1.5"])
    assert generation_values(args) == {"prompt": "waves", "motion_strength": 1.5}
    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    assert "--motion-strength X" in help_text and "how much the picture moves (0 to 2)" in help_text


def test_a_new_parameter_is_a_ui_control(motion_strength):
    pytest.importorskip("gradio", reason="the UI needs gradio")
    from i2v.ui.app import MODEL_DEFAULT, build_app, build_request

    app = build_app("127.0.0.1:1")
    controls = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert type(controls["motion_strength"]).__name__ == "Slider"
    assert (controls["motion_strength"].minimum, controls["motion_strength"].maximum) == (0.0, 2.0)
    image = ROOT / "examples" / "lighthouse.png"
    request = build_request(str(image), MODEL_DEFAULT, True, prompt="waves", motion_strength=1.25)
    assert request.motion_strength == 1.25


def test_unknown_parameter_names_are_refused_naming_the_known_ones():
    from i2v.client.types import GenerationRequest

    with pytest.raises(InvalidParameterError, match=r"unknown parameter 'num_frame'; the parameters are: prompt"):
        GenerationRequest(image=b"png", prompt="waves", num_frame=16)
    with pytest.raises(InvalidParameterError, match="unknown parameter 'steps'"):
        GenerationParams(prompt="waves", steps=10)


# ---------------------------------------------------------------------------------------------------------
# Dependencies.

# Each package and the root modules, in layers: a module may import its own layer's package and those below.
LAYERS = [
    {"i2v.params", "i2v.video", "i2v.arguments", "i2v.examples", "i2v.endpoints"},  # the core: no torch, no server
    {"i2v.model"},  # what export and serving share
    {"i2v.client", "i2v.serving", "i2v.export", "i2v.gateway"},  # the sides, independent of each other
    {"i2v.ui", "i2v.benchmarks"},
    {"i2v.cli"},  # the command that ties them together
]
FOLDERS = {
    "i2v": "i2v",
    "i2v.client": "client",
    "i2v.ui": "ui",
    "i2v.serving": "serving",
    "i2v.export": "export",
    "i2v.benchmarks": "benchmarks",
    "i2v.examples": "examples",
    "i2v.gateway": "gateway",
}


def _unit(module: str) -> str:
    """The layer unit of a module: its subpackage, or the root module itself (i2v.params, i2v.cli, ...)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _imports() -> dict[str, set[str]]:
    """unit -> units it imports, from every import statement (at module level or inside functions)."""
    graph: dict[str, set[str]] = {}
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            module = ".".join([package, *relative.parts]).removesuffix(".__init__")
            source = _unit(module)
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    if name.startswith("i2v.") and _unit(name) != source:
                        graph.setdefault(source, set()).add(_unit(name))
    return graph


def test_every_package_is_in_a_layer():
    layered = set().union(*LAYERS)
    assert set(_imports()) <= layered
    assert {target for targets in _imports().values() for target in targets} <= layered


def test_dependencies_point_down_the_layers_only():
    layer_of = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    upward = [
        f"{source} -> {target}"
        for source, targets in _imports().items()
        for target in targets
        if layer_of[target] > layer_of[source] or (layer_of[target] == layer_of[source] and layer_of[source] == 2)
    ]
    assert not upward, f"imports against the layering: {upward}"


def test_the_import_graph_between_packages_has_no_cycle():
    graph = _imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for target in graph.get(start, ()):
            if target == goal or (target not in seen and reaches(target, goal, seen | {target})):
                return True
        return False

    assert not [unit for unit in graph if reaches(unit, unit, {unit})]


def test_serving_code_loads_neither_onnx_nor_onnxscript():
    """The BLS, the part runner and the torch part modules, imported as Triton's Python backend imports them
    (its own triton_python_backend_utils on the path)."""
    import pytriton

    backend = Path(pytriton.__file__).parent / "tritonserver" / "backends" / "python"
    code = (
        f"import sys; sys.path.insert(0, {str(backend)!r}); "
        "import i2v.serving.generator, i2v.serving.part_runner, i2v.serving.bls, i2v.model.modules; "
        "print(sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime', 'onnx_ir') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_an_onnxruntime_part_and_the_lora_listing_load_neither_torch_nor_diffusers():
    """What an ONNX Runtime part runs (the part runner, its ONNX Runtime session, the LoRA choice it reads from
    every request) and the LoRA listing model, imported as the Python backend imports them: torch and diffusers
    (3 s and about 300 MB per process) come only with a LoRA actually read."""
    import pytriton

    backend = Path(pytriton.__file__).parent / "tritonserver" / "backends" / "python"
    code = (
        f"import sys; sys.path.insert(0, {str(backend)!r}); "
        "import i2v.serving.part_runner, i2v.serving.onnxruntime_session, i2v.serving.lora_runtime, "
        "i2v.serving.lora_listing; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
