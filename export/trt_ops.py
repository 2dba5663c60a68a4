"""A static check that TensorRT's ONNX parser can take every exported graph, without TensorRT.

TensorRT cannot be installed on every machine that exports (not on a CPU-only one, not from PyPI without
NVIDIA's index), and an engine build that fails on a GPU host after a long export is an expensive way to learn
that a graph holds an operator the parser does not know. So every node of every graph -- the main graph,
subgraphs of If/Loop/Scan, and model-local functions, expanded where they are called -- is checked here
against the operator support matrix of onnx-tensorrt, along with the opset and a few restrictions that matter
for graphs like ours. The weights are not loaded (`load_external_data=False`), so the full-size UNet (5.7 GB
of external data) is checked in seconds and a few MB of memory.

The tables below are the "Supported" column of `docs/operators.md` in github.com/onnx/onnx-tensorrt, as it
reads for **TensorRT 10.15** ("TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset
24"). Engines are built by the TensorRT of the serving container, so a much older TensorRT (8.x: no
LayerNormalization before 8.6, no GroupNormalization) may still refuse a graph this check passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx

TENSORRT_VERSION = "10.15"
OPERATORS_DOC = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md"
OPSET_RANGE = (9, 24)  # inclusive, for the default ("" / "ai.onnx") domain
DEFAULT_DOMAINS = ("", "ai.onnx")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Rows marked "Y" in operators.md (TensorRT 10.15).
SUPPORTED_OPS = _names(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
    Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike
    Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign
    RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
    Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """
)

# Rows marked "N": named so that the error can say "listed as unsupported" rather than "not listed".
UNSUPPORTED_OPS = _names(
    """
    AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
    ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
    MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
    OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
    SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
    StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
    """
)

# Operators whose `axes` input "must be an initializer" (a Constant node's output is one to the parser).
# Squeeze/Unsqueeze axes need only be "resolvable to a constant", which the parser may manage by folding:
# not checked here, so that the check never refuses a graph TensorRT would take.
CONSTANT_AXES_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Reduce"))
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


class UnsupportedOperatorError(RuntimeError):
    """A graph holds operators (or an opset) that TensorRT's ONNX parser does not support."""

    def __init__(self, reports: Iterable[OpReport]) -> None:
        self.reports = [r for r in reports if not r.ok]
        lines = [f"  {r.name}: {'; '.join(r.problems)}" for r in self.reports]
        super().__init__(
            f"the ONNX graphs use what TensorRT {TENSORRT_VERSION}'s ONNX parser does not support "
            f"(operators.md: {OPERATORS_DOC}):\n" + "\n".join(lines)
        )


@dataclass
class OpReport:
    """What one graph uses, and what of it TensorRT's parser would refuse."""

    name: str
    opset: int | None
    ops: Counter = field(default_factory=Counter)  # op name ("domain::Op" outside the ONNX domain) -> count
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph alone: external weights stay on disk (the full-size UNet's 5.7 GB)."""
    return onnx.load(str(path), load_external_data=False)


def check_model(model: onnx.ModelProto, name: str = "model") -> OpReport:
    """Every operator of `model`, with the problems TensorRT's parser would have with them."""
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    report = OpReport(name, opset)
    low, high = OPSET_RANGE
    if opset is None or not low <= opset <= high:
        report.problems.append(f"opset {opset} is outside TensorRT's supported range {low}-{high}")

    functions = {(f.domain, f.name): f for f in model.functions}
    unsupported: Counter = Counter()
    restrictions: list[str] = []
    for node, constants in _walk(model.graph, functions, set()):
        if node.domain in DEFAULT_DOMAINS:
            report.ops[node.op_type] += 1
            if node.op_type not in SUPPORTED_OPS:
                unsupported[node.op_type] += 1
            else:
                restrictions += _restriction_problems(node, constants)
        else:
            key = f"{node.domain}::{node.op_type}"
            report.ops[key] += 1
            unsupported[key] += 1
    for op, count in sorted(unsupported.items()):
        why = "listed as unsupported" if op in UNSUPPORTED_OPS else "not in the support matrix"
        report.problems.append(f"{op} ({why}, {count} node{'s' if count > 1 else ''})")
    report.problems += sorted(set(restrictions))
    return report


def check_graph(path: Path, name: str | None = None) -> OpReport:
    return check_model(load_graph(Path(path)), name or Path(path).stem)


def check_tensorrt_ops(paths: Mapping[str, Path]) -> dict[str, OpReport]:
    """Check every part's graph; raise `UnsupportedOperatorError` naming each part's unsupported operators."""
    reports = {name: check_graph(path, name) for name, path in paths.items()}
    if any(not r.ok for r in reports.values()):
        raise UnsupportedOperatorError(reports.values())
    return reports


def format_reports(reports: Iterable[OpReport], *, show_ops: bool = False) -> str:
    """One line per graph (opset, node count, verdict); `show_ops` adds each graph's operator counts."""
    lines = []
    for r in reports:
        verdict = "ok" if r.ok else "UNSUPPORTED: " + "; ".join(r.problems)
        lines.append(f"{r.name} (opset {r.opset}, {sum(r.ops.values())} nodes, {len(r.ops)} op types): {verdict}")
        if show_ops:
            lines.append("    " + ", ".join(f"{op} x{n}" for op, n in sorted(r.ops.items())))
    return "\n".join(lines)


def _walk(graph: onnx.GraphProto, functions: dict, active: set):
    """(node, constant names in scope) for every node, subgraphs and called local functions included."""
    constants = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS for o in n.output}
    yield from _walk_nodes(graph.node, constants, functions, active)


def _walk_nodes(nodes, constants: set, functions: dict, active: set):
    for node in nodes:
        key = (node.domain, node.op_type)
        if key in functions:  # a model-local function: the parser inlines it, so its body is what counts
            if key in active:
                continue  # recursion cannot happen in a valid model; do not loop on an invalid one
            body = functions[key]
            inner = {o for n in body.node if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS for o in n.output}
            yield from _walk_nodes(body.node, inner, functions, active | {key})
            continue
        yield node, constants
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                sub = _walk(subgraph, functions, active)
                yield from ((n, c | constants) for n, c in sub)


def _restriction_problems(node: onnx.NodeProto, constants: set) -> list[str]:
    """The operators.md restrictions that graphs exported from diffusers models can run into."""
    problems = []
    axes = node.input[1] if node.op_type in CONSTANT_AXES_OPS and len(node.input) > 1 else ""
    if axes and axes not in constants:
        problems.append(f"{node.op_type} with computed axes (TensorRT needs them constant): {node.name}")
    if node.op_type == "Resize":
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mode = _text(attributes.get("mode", b"nearest"))
        coordinates = _text(attributes.get("coordinate_transformation_mode", b"half_pixel"))
        if mode not in RESIZE_MODES:
            problems.append(f"Resize mode {mode!r} (TensorRT: nearest, linear): {node.name}")
        if coordinates not in RESIZE_COORDINATES:
            problems.append(f"Resize coordinate_transformation_mode {coordinates!r}: {node.name}")
        if attributes.get("antialias", 0):
            problems.append(f"Resize with antialias (unsupported): {node.name}")
    return problems


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
