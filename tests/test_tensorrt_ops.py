"""The static TensorRT operator check: real exported graphs pass, planted unsupported operators fail by name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from i2v.export.trt_ops import (
    SUPPORTED_OPS,
    TENSORRT_VERSION,
    UNSUPPORTED_OPS,
    UnsupportedOperatorError,
    check_graph,
    check_tensorrt_ops,
)
from i2v.model.parts import PART_NAMES


def tiny_model(nodes, *, opset: int = 18, functions=(), initializers=(), extra_opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "planted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=list(initializers),
    )
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_every_exported_part_uses_only_operators_tensorrt_parses(onnx_paths):
    reports = check_tensorrt_ops(onnx_paths)
    assert set(reports) == set(PART_NAMES)
    for report in reports.values():
        assert report.ok and report.opset == 18
        assert set(report.ops) <= SUPPORTED_OPS
    unet = reports["unet"].ops
    # The 5-D parts of the video UNet: GroupNorm (as InstanceNormalization over groups), attention
    # (MatMul + Softmax), the temporal convolutions, and the exact dynamic pool (Range, comparisons, Cast).
    for op in ("InstanceNormalization", "LayerNormalization", "MatMul", "Softmax", "Conv", "Range", "Cast"):
        assert unet[op] > 0, op
    model = onnx.load(str(onnx_paths["unet"]), load_external_data=False)
    kernels = [
        list(a.ints) for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "kernel_shape"
    ]
    assert [3, 1, 1] in kernels  # Conv3d over frames is really in the checked graph


def test_planted_unsupported_operators_fail_the_check_by_name(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Unique", ["a"], ["b"]),  # listed "N" in operators.md
        helper.make_node("Frobnicate", ["b"], ["c"]),  # in no table at all
        helper.make_node("FancyOp", ["c"], ["y"], domain="com.example"),  # a custom domain, no plugin
    ]
    path = save(tiny_model(nodes, extra_opsets=[helper.make_opsetid("com.example", 1)]), tmp_path / "p.onnx")
    with pytest.raises(UnsupportedOperatorError) as error:
        check_tensorrt_ops(
            {
                "planted": path,
                "fine": save(tiny_model([helper.make_node("Relu", ["x"], ["y"])]), tmp_path / "fine.onnx"),
            }
        )
    message = str(error.value)
    assert f"TensorRT {TENSORRT_VERSION}" in message and "planted:" in message
    assert "Unique (listed as unsupported, 1 node)" in message
    assert "Frobnicate (not in the support matrix, 1 node)" in message
    assert "com.example::FancyOp" in message
    assert "fine" not in message.split("\n", 1)[1]  # only the failing graph is listed
    assert [r.name for r in error.value.reports] == ["planted"]
    assert "Unique" in UNSUPPORTED_OPS and "Relu" in SUPPORTED_OPS


def test_operators_inside_branches_and_local_functions_are_checked(tmp_path):
    branch = helper.make_graph(
        [helper.make_node("NonexistentInBranch", ["x"], ["z"])],
        "then",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
    )
    function = helper.make_function(
        "local",
        "Wrapped",
        ["i"],
        ["o"],
        [helper.make_node("MatMulInteger", ["i", "i"], ["o"])],
        [helper.make_opsetid("", 18)],
    )
    nodes = [
        helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["cond"], ["a"], then_branch=branch, else_branch=branch),
        helper.make_node("Wrapped", ["a"], ["y"], domain="local"),  # expanded: its body is what TensorRT sees
    ]
    model = tiny_model(nodes, functions=[function], extra_opsets=[helper.make_opsetid("local", 1)])
    report = check_graph(save(model, tmp_path / "nested.onnx"))
    assert not report.ok
    assert any("NonexistentInBranch" in p for p in report.problems)
    assert any("MatMulInteger (listed as unsupported" in p for p in report.problems)
    assert not any("Wrapped" in p for p in report.problems)


def test_opset_outside_tensorrt_range_and_computed_reduce_axes_are_refused(tmp_path):
    old = check_graph(save(tiny_model([helper.make_node("Relu", ["x"], ["y"])], opset=8), tmp_path / "old.onnx"))
    assert any("opset 8 is outside" in p for p in old.problems)
    nodes = [
        helper.make_node("Shape", ["x"], ["axes"], start=1),
        helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1),
    ]
    computed = check_graph(save(tiny_model(nodes), tmp_path / "axes.onnx"))
    assert any("ReduceMean with computed axes" in p for p in computed.problems)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    constant = tiny_model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])], initializers=[axes])
    assert check_graph(save(constant, tmp_path / "ok.onnx")).ok


def test_external_weights_are_not_read(tmp_path):
    """The full-size UNet keeps 5.7 GB beside its graph: the check must not load them (here: not even find them)."""
    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    model = tiny_model([helper.make_node("MatMul", ["x", "w"], ["y"])], initializers=[weight])
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    (tmp_path / "big.onnx.data").unlink()
    report = check_graph(path)
    assert report.ok and report.ops == {"MatMul": 1}


FULL_SIZE_DIR = os.environ.get("I2V_FULL_SIZE_ONNX_DIR")


@pytest.mark.skipif(
    not FULL_SIZE_DIR,
    reason="set I2V_FULL_SIZE_ONNX_DIR to a folder of full-size part graphs "
    "(about 5 minutes and 9 GB of memory to export here)",
)
def test_full_size_graphs_use_only_operators_tensorrt_parses():
    paths = {name: Path(FULL_SIZE_DIR) / f"{name}.onnx" for name in PART_NAMES}
    reports = check_tensorrt_ops({name: path for name, path in paths.items() if path.exists()})
    assert "unet" in reports and all(r.ok for r in reports.values())
