"""Where each file of the Triton model repository lives (model_repository/README.md shows the tree).

`i2v export` writes these paths; the models Triton loads, `i2v serve`, the CLI and the benchmark read them. Each
name is declared here once, so a change to the layout is made in one place.
"""

from __future__ import annotations

from pathlib import Path

from i2v.params import MODEL_NAME

MODEL_VERSION = "1"  # the one version folder `i2v export` writes for each model
CONFIG_FILE = "config.pbtxt"  # beside the version folders: Triton's model configuration
PYTHON_MODEL_FILE = "model.py"  # a Python-backend model's module in its version folder
GRAPH_FILE = "model.onnx"  # a part's ONNX graph (the onnxruntime runtime; TensorRT's UNet keeps it beside its engine)
ENGINE_FILE = "model.plan"  # a part's TensorRT engine, where Triton's TensorRT backend looks for it
WEIGHTS_FOLDER = "weights"  # the torch runtime's part weights (`save_pretrained`)
LORA_TARGETS_FILE = "lora_targets.json"  # in the UNet's version folder: the layers a LoRA adapter may adapt
LORA_BASE_FILE = "lora_base.safetensors"  # beside it for the graph runtimes: the adaptable layers' base weights
PIPELINE_FOLDER = "pipeline"  # in the BLS model's version folder: what the loop reads besides the parts
# In that folder, each component's `save_pretrained` output (model_info.json is `i2v.model.info`'s)
TOKENIZER_FOLDER, IMAGE_PROCESSOR_FOLDER, SCHEDULER_FOLDER = "tokenizer", "feature_extractor", "scheduler"

# What each runtime puts in a part's version folder (the export removes the other runtimes' leftovers)
PART_ARTIFACTS = {
    "onnxruntime": (PYTHON_MODEL_FILE, GRAPH_FILE, LORA_TARGETS_FILE, LORA_BASE_FILE),
    "torch": (PYTHON_MODEL_FILE, WEIGHTS_FOLDER, LORA_TARGETS_FILE),
    "tensorrt": (ENGINE_FILE,),  # Triton's TensorRT backend: no LoRA adapters
    # the UNet that takes LoRA adapters on TensorRT: its refittable engine in the part runner, the graph beside it
    "tensorrt-lora": (PYTHON_MODEL_FILE, ENGINE_FILE, GRAPH_FILE, LORA_TARGETS_FILE, LORA_BASE_FILE),
}


def part_runtime(version: str | Path) -> str:
    """What serves a part, from the files of its version folder (`PART_ARTIFACTS`): an engine is TensorRT's,
    a graph without one ONNX Runtime's, neither the torch runtime's weights."""
    if (Path(version) / ENGINE_FILE).is_file():
        return "tensorrt"
    return "onnxruntime" if (Path(version) / GRAPH_FILE).is_file() else "torch"


def version_dir(repository: str | Path, model: str) -> Path:
    """`<repository>/<model>/1`: the version folder export writes."""
    return Path(repository) / model / MODEL_VERSION


def pipeline_dir(repository: str | Path) -> Path:
    """`<repository>/i2vgen_xl/1/pipeline`: the tokenizer, image processor, scheduler and model_info.json."""
    return version_dir(repository, MODEL_NAME) / PIPELINE_FOLDER


def part_graphs(repository: str | Path) -> dict[str, Path]:
    """Each part's ONNX graph in an exported repository, by model name (none for the torch runtime)."""
    found = sorted(Path(repository).glob(f"*/{MODEL_VERSION}/{GRAPH_FILE}"))
    return {path.parent.parent.name: path for path in found}


def served_version_dir(repository: str | Path, model: str) -> Path | None:
    """The version folder of `model` that Triton serves: the highest numbered one (its default version policy);
    None where the model has none."""
    folder = Path(repository) / model
    versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return max(versions, key=lambda p: int(p.name), default=None)


def served_pipeline_dir(repository: str | Path) -> Path:
    """The pipeline folder of the BLS version Triton serves (the export's own where there is none yet)."""
    version = served_version_dir(repository, MODEL_NAME)
    return version / PIPELINE_FOLDER if version else pipeline_dir(repository)


def is_exported(repository: str | Path) -> bool:
    """Whether `i2v export` wrote this repository (the BLS model's configuration comes after every part's)."""
    return (Path(repository) / MODEL_NAME / CONFIG_FILE).is_file()
