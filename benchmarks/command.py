"""`i2v bench`: the served path against the in-process loop and plain diffusers, on one grid, in one run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from i2v.arguments import EXIT_OK, add_api_key_argument, at_least
from i2v.endpoints import GRPC_PORT, GRPC_URL
from i2v.model.info import FULL_SIZE_RANDOM_MODEL, NO_COMPILE, TINY_MODEL
from i2v.model.repository_layout import is_exported, part_graphs, pipeline_dir
from i2v.params import InvalidParameterError, parameter

# The in-process torch runners and how each runs the UNet (`i2v.model.info.TORCH_COMPILE_MODES`); a served
# runtime of the same name is the torch runtime exported with that mode, so served/in-process pairs by name.
TORCH_RUNNER_COMPILE_MODES = {
    "torch": NO_COMPILE,
    "torch-synced": NO_COMPILE,
    "torch-compile": "default",
    "torch-cuda-graphs": "cuda-graphs",
}
RUNNERS = ("served", "onnxruntime", *TORCH_RUNNER_COMPILE_MODES, "diffusers", "diffusers-compile")
# (grid, steps) when not given: the tiny model on a CPU in about a minute; any other model on a GPU at the
# sizes people deploy.
TINY_DEFAULTS = ("64x64x8,64x96x16", "10")
FULL_SIZE_DEFAULTS = ("512x512x16,768x768x16,704x1280x16", "25")
DEFAULT_RUNNERS = {"cpu": "served,onnxruntime,torch,diffusers", "cuda": "served,torch,diffusers"}
LOCAL_RESULTS = Path("benchmarks/results/local")  # a run's results unless --output says otherwise (not in git)
# The GPU proof (`make gpu-proof`): one command on a bare GPU host; with --device cpu, its dry run on the tiny model.
GPU_SUITE_RUNNERS = ("served", "torch", "torch-synced", "torch-compile", "diffusers")
SERVED_NEEDS = ("pytriton", "tritonclient", "av")  # the embedded server, its client, the MP4 encoder
# What `--suite lora` takes: it measures the UNet part's swaps on the CPU with its own sizes and repeats.
LORA_SUITE_OPTIONS = ("model", "output")


def add_bench_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `bench` subcommand to the `i2v` parser."""
    bench = commands.add_parser(
        "bench", help="measure latency and memory per resolution, frames and steps", formatter_class=formatter_class
    )
    bench.add_argument(
        "--model",
        default=TINY_MODEL,
        help=f"'{TINY_MODEL}', '{FULL_SIZE_RANDOM_MODEL}', a diffusers folder or hub id",
    )
    bench.add_argument(
        "--suite",
        choices=["gpu", "lora"],
        default=None,
        help="gpu: the GPU proof: the full-size architecture (whatever --model says) at "
        f"{FULL_SIZE_DEFAULTS[0].replace(',', ', ')}, {FULL_SIZE_DEFAULTS[1]} steps, runners "
        f"{','.join(GPU_SUITE_RUNNERS)} (served only where "
        f"{', '.join(SERVED_NEEDS)} are installed), results in benchmarks/results/<gpu>-full-size-<date>/; "
        "with --device cpu a dry run of it on the tiny model; "
        "lora: the UNet part's LoRA swap cost per runtime (first use, switch, back to none) and memory after 50 "
        "switches (benchmarks/lora_swap.py), on the CPU: takes --model and --output only",
    )
    bench.add_argument(
        "--grid",
        type=grid_argument,
        default=None,
        help=f"HEIGHTxWIDTHxFRAMES points, comma-separated: {_shape_ranges()}; height and width multiples of "
        f"the model's size step (default: {TINY_DEFAULTS[0]} for the tiny model, {FULL_SIZE_DEFAULTS[0]} otherwise)",
    )
    bench.add_argument(
        "--steps",
        type=steps_argument,
        default=None,
        help=f"denoising steps, comma-separated, each {parameter('num_inference_steps').describe_range()} "
        f"(default: {TINY_DEFAULTS[1]} tiny, {FULL_SIZE_DEFAULTS[1]} otherwise)",
    )
    bench.add_argument(
        "--runners",
        default=None,
        help=f"any of {', '.join(RUNNERS)} (default: {DEFAULT_RUNNERS['cpu']} on a CPU; "
        f"{DEFAULT_RUNNERS['cuda']} on a GPU)",
    )
    bench.add_argument(
        "--served-runtimes",
        default=None,
        help="runtimes to serve on the embedded server, each exported into its own repository: onnxruntime, "
        "torch, or torch-compile / torch-cuda-graphs (the torch runtime's UNet compiled so, as the in-process "
        "runner of that name) (default: onnxruntime on a CPU, torch on a GPU)",
    )
    bench.add_argument(
        "--url",
        default=None,
        help="measure a server already running here instead (e.g. NVIDIA's Triton image serving "
        f"TensorRT engines: --url {GRPC_URL} --served-runtimes tensorrt names its rows)",
    )
    add_api_key_argument(bench, "key for a --url server that restricts inference")
    bench.add_argument("--warmup", type=at_least(0), default=1, help="untimed runs per point and runner")
    bench.add_argument("--repeats", type=at_least(1), default=3, help="timed runs per point and runner")
    bench.add_argument(
        "--concurrency", type=at_least(0), default=2, help="clients for the served throughput run (0: skip)"
    )
    bench.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="device of the in-process runners and the torch runtime (auto: cuda if present)",
    )
    bench.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="serve this exported repository instead of exporting one per runtime",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results folder: results.json, results.md and plots (default {LOCAL_RESULTS}/<model>-<date>; "
        "--suite lora: <model>-lora-<date>, no plots)",
    )
    bench.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in OUTPUT/results.json for other grid points (one point per call: the GPU "
        "proof's calls each stay under 10 minutes); --suite gpu appends",
    )
    bench.set_defaults(run=run_bench, parser=bench)


def _shape_ranges() -> str:
    """'height and width 64 to 1280, frames 8 to 32': the parameter table's ranges of a grid point."""
    sizes, frames = parameter("height").describe_range(), parameter("num_frames").describe_range()
    return f"height and width {sizes}, frames {frames}"


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'64x64x8,64x96x16' -> [(64, 64, 8), (64, 96, 16)], each within the parameter table's ranges; a
    `ValueError` names the point and what is allowed."""
    shapes = []
    for item in (i.strip() for i in text.split(",")):
        try:
            height, width, frames = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(
                f"expected HEIGHTxWIDTHxFRAMES points, comma-separated, such as {TINY_DEFAULTS[0]} "
                f"({_shape_ranges()}), got {item!r}"
            ) from None
        for name, value in (("height", height), ("width", width), ("num_frames", frames)):
            try:
                parameter(name).check(value, size_multiple=1)  # the size step is the model's: `check_size_step`
            except InvalidParameterError as exc:
                raise ValueError(f"{item}: {exc}") from None
        shapes.append((height, width, frames))
    return shapes


def grid_argument(text: str) -> str:
    """`--grid`: the points checked against the parameter table, written back in the form the results keep."""
    try:
        return ",".join(f"{h}x{w}x{f}" for h, w, f in parse_shapes(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def steps_argument(text: str) -> str:
    """`--steps`: comma-separated step counts within the parameter table's range."""
    steps = parameter("num_inference_steps")
    expected = f"denoising step counts, comma-separated, each {steps.describe_range()}, such as 10,25"
    try:
        counts = [int(item) for item in text.split(",")]
        for count in counts:
            steps.check(count)
    except ValueError:  # not a number, or outside the range (InvalidParameterError)
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return ",".join(str(c) for c in counts)


def run_bench(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from i2v.benchmarks import measure, report
    from i2v.benchmarks.harness import run_grid
    from i2v.benchmarks.runners import DiffusersRunner, GridPoint, InProcessRunner, ServedRunner
    from i2v.examples import lighthouse_image
    from i2v.export.sources import load_pipeline
    from i2v.model.parts import vae_scale_factor

    if args.suite == "lora":
        return run_lora_suite(args)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.suite == "gpu":
        apply_gpu_suite(args, device)
    check_size_step(args)
    names = [n.strip() for n in (args.runners or DEFAULT_RUNNERS[device]).split(",") if n.strip()]
    unknown = sorted(set(names) - set(RUNNERS))
    if unknown:
        raise SystemExit(f"error: unknown runners {unknown}; choose from {', '.join(RUNNERS)}")
    if "onnxruntime" in names and device == "cuda":
        print("note: the in-process onnxruntime runner runs on the CPU (the CPU onnxruntime package)")
    grid, steps = TINY_DEFAULTS if str(args.model) == TINY_MODEL else FULL_SIZE_DEFAULTS
    step_counts = [int(s) for s in (args.steps or steps).split(",")]
    points = [GridPoint(h, w, f, s) for h, w, f in parse_shapes(args.grid or grid) for s in step_counts]
    output = args.output or LOCAL_RESULTS / f"{Path(str(args.model)).name}-{time.strftime('%Y%m%d')}"
    repositories = served_repositories(args, device, output) if "served" in names and not args.url else []
    pipe = load_pipeline(args.model)
    with lighthouse_image() as path:
        image = Image.open(path).convert("RGB")

    machine = measure.machine_info()
    unet_config, vae_scale = dict(pipe.unet.config), vae_scale_factor(pipe)
    extra: dict = {
        "unet_tflops_per_step": {
            p.shape_label: measure.unet_flops_per_step(unet_config, p.height, p.width, p.frames, vae_scale) / 1e12
            for p in points
        },
        "gpu_peak_tflops": measure.gpu_peak_tflops(machine.get("gpu")),
    }
    settings = {
        "model": str(args.model),
        "grid": args.grid or grid,
        "steps": args.steps or steps,
        "runners": names,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "device": device,
    }

    previous = report.read_results(output) if args.append else None
    if previous is not None and (previous["settings"]["model"], previous["settings"]["device"]) != (
        settings["model"],
        device,
    ):
        raise SystemExit(f"error: {output} holds results of another model or device: choose another --output")

    def results_of(rows_so_far) -> dict:
        current = report.to_json(rows_so_far, machine, settings, extra)
        return report.merge_results(previous, current) if previous is not None else current

    def write_partial(rows_so_far) -> None:
        """Results so far, after every row: a stopped run (a GPU lease running out) keeps what it measured."""
        report.write_results(results_of(rows_so_far), output, plots=False)

    runners = []
    try:
        for name in names:
            if name == "served" and args.url:
                runtime = args.served_runtimes or "remote"
                runners.append(ServedRunner(url=args.url, runtime=runtime, api_key=args.api_key))
            elif name == "served":
                runners += [ServedRunner(repository, runtime=runtime) for runtime, repository in repositories]
            elif name.startswith("diffusers"):
                runners.append(DiffusersRunner(pipe, device, compile=name == "diffusers-compile"))
            else:
                served = [repository for _, repository in repositories]
                repository = in_process_repository(name, pipe, args.model, output, served)
                compile_mode = TORCH_RUNNER_COMPILE_MODES.get(name, NO_COMPILE)
                in_process_device = "cpu" if name == "onnxruntime" else device
                runners.append(InProcessRunner(name, repository, pipe, in_process_device, compile_mode))
        settings["served_runtimes"] = [r.name.removeprefix("served-") for r in runners if r.name.startswith("served-")]
        rows = run_grid(runners, points, image, warmup=args.warmup, repeats=args.repeats, on_row=write_partial)
        served = next((r for r in runners if r.name.startswith("served-")), None)
        if served is not None and args.concurrency > 0:
            point = points[0]
            requests = max(4, 2 * args.concurrency)
            extra["throughput"] = {
                "runner": served.name,
                "concurrency": args.concurrency,
                "requests": requests,
                "point": point.label,
                "requests_per_s": served.throughput(image, point, args.concurrency, requests),
            }
    finally:
        for runner in runners:
            runner.close()
    result = results_of(rows)
    paths = report.write_results(result, output)
    print(report.markdown_table(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def run_lora_suite(args: argparse.Namespace) -> int:
    """`--suite lora`: the swap costs per runtime, printed and written to the results folder (JSON and markdown).
    The options it would ignore are refused: it runs on the CPU, at the sizes and repeats of its own."""
    ignored = ("grid", "steps", "runners", "served_runtimes", "url", "model_repository", "warmup", "repeats")
    ignored += ("concurrency", "append")
    given = [f"--{d.replace('_', '-')}" for d in ignored if getattr(args, d) != args.parser.get_default(d)]
    if args.device == "cuda":
        given.append("--device cuda")
    if given:
        takes = " and ".join(f"--{o}" for o in LORA_SUITE_OPTIONS)
        args.parser.error(
            f"--suite lora measures the UNet part's LoRA swaps on the CPU at sizes of its own: it takes {takes}, "
            f"not {', '.join(given)}"
        )
    from i2v.benchmarks import lora_swap, measure
    from i2v.export.sources import load_pipeline

    output = args.output or LOCAL_RESULTS / f"{Path(str(args.model)).name}-lora-{time.strftime('%Y%m%d')}"
    results = lora_swap.measure_lora_swaps(load_pipeline(args.model))
    settings = {"suite": "lora", "model": str(args.model), "device": "cpu", "switches": lora_swap.SWITCHES}
    result = {"machine": measure.machine_info(), "settings": settings, "runtimes": results}
    paths = lora_swap.write_results(result, output)
    print(lora_swap.report(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def check_size_step(args: argparse.Namespace) -> None:
    """Refuse, before anything is exported or loaded, grid sizes that are not multiples of the size step of the
    model measured or of the repository served, where their configs say it (a --url server checks its own)."""
    from i2v.model.info import MODEL_INFO_FILE, ModelInfo

    steps = {}
    if args.model_repository is not None:
        pipeline = pipeline_dir(args.model_repository)
        if (pipeline / MODEL_INFO_FILE).is_file():
            steps[f"the repository {args.model_repository}"] = ModelInfo.load(pipeline).size_multiple
    model_step = model_size_step(str(args.model))
    if model_step is not None:
        steps[f"model {args.model}"] = model_step
    grid = args.grid or (TINY_DEFAULTS if str(args.model) == TINY_MODEL else FULL_SIZE_DEFAULTS)[0]
    for height, width, frames in parse_shapes(grid):
        for whose, step in steps.items():
            for name, value in (("height", height), ("width", width)):
                if value % step:
                    args.parser.error(
                        f"argument --grid: {height}x{width}x{frames}: {name} must be a multiple of {step} "
                        f"(the size step of {whose}), got {value}"
                    )


def model_size_step(model: str) -> int | None:
    """What `--model`'s height and width must be multiples of, from its UNet and VAE configs alone (no weights
    loaded); None where they cannot be read (a hub id with no network: loading it fails later, saying so)."""
    from types import SimpleNamespace

    from diffusers import AutoencoderKL, I2VGenXLUNet

    from i2v.export.sources import full_size_configs, tiny_resolved
    from i2v.model.parts import size_multiple

    if model == FULL_SIZE_RANDOM_MODEL:
        configs = full_size_configs()
    else:
        source = str(tiny_resolved(model))  # where `load_pipeline` keeps the tiny model
        try:
            configs = {
                "unet": I2VGenXLUNet.load_config(source, subfolder="unet"),
                "vae": AutoencoderKL.load_config(source, subfolder="vae"),
            }
        except (OSError, ValueError):
            return None
    # `size_multiple` reads `pipe.<part>.config`: the configs, shaped as a pipeline's, say the same number
    parts = {name: SimpleNamespace(config=SimpleNamespace(**configs[name])) for name in ("unet", "vae")}
    return size_multiple(SimpleNamespace(**parts))


def apply_gpu_suite(args: argparse.Namespace, device: str) -> None:
    """The GPU proof's settings: on a GPU, the full-size model at the sizes people deploy, results in a folder
    named after the GPU and the date, ready to commit; on a CPU, the same runners on the tiny model, small and
    quick (CI runs it). --grid, --steps, --runners, --served-runtimes and --output given on the command line
    win; the model, repeats and concurrency are the suite's (the folder is named full-size whatever the model)."""
    import importlib.util

    import torch

    cuda = device == "cuda"
    missing = [name for name in SERVED_NEEDS if importlib.util.find_spec(name) is None]
    runners = [r for r in GPU_SUITE_RUNNERS if r != "served" or not missing]
    if missing:
        print(f"note: no served rows: {', '.join(missing)} not installed (the wheelhouse's served part)")
    args.model = FULL_SIZE_RANDOM_MODEL if cuda else TINY_MODEL
    args.grid = args.grid or (FULL_SIZE_DEFAULTS[0] if cuda else "64x64x8")
    args.steps = args.steps or (FULL_SIZE_DEFAULTS[1] if cuda else TINY_DEFAULTS[1])
    args.runners = args.runners or ",".join(runners)
    args.served_runtimes = args.served_runtimes or "torch"
    args.concurrency = 0  # one video at a time: the figures are latency and memory
    args.append = True  # `make gpu-proof` measures one resolution per call
    args.repeats = 2 if cuda else 1  # with one warm-up: each size's call stays under 10 minutes on one GPU
    if args.output is None and cuda:
        gpu = torch.cuda.get_device_name(0).lower().replace(" ", "-")
        args.output = Path("benchmarks/results") / f"{gpu}-full-size-{time.strftime('%Y-%m-%d')}"


def served_repositories(args: argparse.Namespace, device: str, output: Path) -> list[tuple[str | None, Path]]:
    """The repositories to serve and their rows' runtime names: the one given (named by its own model info),
    or one per runtime exported under `output`."""
    from i2v.export.pipeline import export_model_repository

    if args.model_repository is not None:
        return [(None, args.model_repository)]
    if args.served_runtimes:
        runtimes = [r.strip() for r in args.served_runtimes.split(",") if r.strip()]
    else:
        runtimes = ["torch" if device == "cuda" else "onnxruntime"]
    if "tensorrt" in runtimes:
        raise SystemExit(
            "error: the embedded tritonserver has no TensorRT backend; serve the tensorrt repository "
            f"with NVIDIA's Triton image (docker-compose.yml) and measure it with --url HOST:{GRPC_PORT}"
        )
    servable = ["onnxruntime", *(r for r in TORCH_RUNNER_COMPILE_MODES if r != "torch-synced")]
    unknown = sorted(set(runtimes) - set(servable))
    if unknown:
        raise SystemExit(f"error: unknown served runtimes {unknown}; choose from {', '.join(servable)}")
    repositories = []
    for runtime in runtimes:
        repository = output / f"model_repository-{runtime}"
        if not is_exported(repository):
            export_model_repository(
                args.model,
                repository,
                check=False,
                runtime="onnxruntime" if runtime == "onnxruntime" else "torch",
                device="gpu" if device == "cuda" else "cpu",
                torch_compile=TORCH_RUNNER_COMPILE_MODES.get(runtime, NO_COMPILE),
            )
        repositories.append((runtime, repository))
    return repositories


def in_process_repository(runner: str, pipe, model: str, output: Path, served: list[Path]) -> Path:
    """The in-process loop reads the pipeline assets of any repository, the onnxruntime runner also its graphs:
    a served one where it fits; else, for torch, the pipeline assets alone (the modules are `pipe`'s: no
    weights written, no ONNX export of a full-size model), and for onnxruntime an ONNX export under `output`."""
    from i2v.export.pipeline import export_model_repository
    from i2v.export.repository import write_bls_pipeline

    for repository in served:
        if runner != "onnxruntime" or part_graphs(repository):
            return repository
    if runner != "onnxruntime":
        repository = output / "pipeline-torch"
        write_bls_pipeline(pipe, repository, source=str(model), runtime="torch")
        return repository
    repository = output / "model_repository-onnxruntime"
    if not is_exported(repository):
        export_model_repository(model, repository, check=False)
    return repository
