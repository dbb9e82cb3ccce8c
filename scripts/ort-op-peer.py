#!/usr/bin/env python3
"""onnxruntime's CPU kernels as the peer of `anyaccel bench --op softmax,layer_norm,... --peers`.

Usage: ort-op-peer.py DIR OP ROWS COLS THREADS

Reads DIR/x.f32 ([ROWS, COLS], little-endian f32; for `layer_norm` and `rms_norm` also DIR/w.f32
and, for `layer_norm`, DIR/b.f32, each [COLS]) and builds a one-node ONNX model of OP:

  softmax     Softmax over the last axis
  layer_norm  LayerNormalization over the last axis, weight and bias
  rms_norm    SimplifiedLayerNormalization over the last axis (onnxruntime's RMS norm), weight
  exp, tanh   Exp, Tanh
  gelu        Gelu (the erf form, opset 20)
  gelu_tanh   Gelu with approximate="tanh"
  transpose   Transpose with perm [1, 0] (the output is [COLS, ROWS])
  sum         ReduceSum over every element to a scalar
  attention   Attention of opset 23 on q = DIR/x.f32, k = DIR/k.f32, v = DIR/v.f32, each
              [1, 8, ROWS, COLS] (8 heads of ROWS queries and keys, head dimension COLS)
  attention_causal
              the same with is_causal = 1

on an onnxruntime session of THREADS intra-op threads, binds the input and a preallocated output
once (`io_binding`, so that no run allocates), runs it once and prints "ready <version>". Then
for each line "run" on standard input it runs once and prints "ok"; on "save" it writes the
output to DIR/out.f32 and prints "saved"; on end of input it exits.
"""

import sys

import numpy as np
from onnx import TensorProto, helper
import onnxruntime as ort


def main() -> None:
    d, op = sys.argv[1], sys.argv[2]
    rows, cols, threads = (int(v) for v in sys.argv[3:6])
    in_shape = [1, 8, rows, cols] if op.startswith("attention") else [rows, cols]
    x = np.fromfile(f"{d}/x.f32", dtype="<f4").reshape(in_shape)
    inits = []
    inputs = ["x"]
    out_shape = in_shape
    feeds = {"x": x}
    if op in ("attention", "attention_causal"):
        feeds["k"] = np.fromfile(f"{d}/k.f32", dtype="<f4").reshape(in_shape)
        feeds["v"] = np.fromfile(f"{d}/v.f32", dtype="<f4").reshape(in_shape)
        inputs = ["x", "k", "v"]
        node = helper.make_node(
            "Attention", inputs, ["y"], is_causal=int(op == "attention_causal")
        )
    elif op == "softmax":
        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    elif op == "log_softmax":
        node = helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1)
    elif op in ("layer_norm", "rms_norm"):
        w = np.fromfile(f"{d}/w.f32", dtype="<f4")
        inits.append(helper.make_tensor("w", TensorProto.FLOAT, [cols], w))
        if op == "layer_norm":
            b = np.fromfile(f"{d}/b.f32", dtype="<f4")
            inits.append(helper.make_tensor("b", TensorProto.FLOAT, [cols], b))
            node = helper.make_node(
                "LayerNormalization", ["x", "w", "b"], ["y"], axis=-1, epsilon=1e-5
            )
        else:
            node = helper.make_node(
                "SimplifiedLayerNormalization", ["x", "w"], ["y"], axis=-1, epsilon=1e-5
            )
    elif op == "exp":
        node = helper.make_node("Exp", ["x"], ["y"])
    elif op == "tanh":
        node = helper.make_node("Tanh", ["x"], ["y"])
    elif op == "sigmoid":
        node = helper.make_node("Sigmoid", ["x"], ["y"])
    elif op == "silu":
        # ONNX has no SiLU: x * Sigmoid(x), as onnxruntime's default graph optimisations
        # leave or fuse it (into QuickGelu with alpha 1, where they match the pair).
        nodes = [
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("Mul", ["x", "s"], ["y"]),
        ]
    elif op == "gelu":
        node = helper.make_node("Gelu", ["x"], ["y"])
    elif op == "gelu_tanh":
        node = helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")
    elif op == "sum":
        node = helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)
        out_shape = []
    elif op == "transpose":
        node = helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])
        out_shape = [cols, rows]
    else:
        sys.exit(f"ort-op-peer.py: unknown op {op}")
    graph = helper.make_graph(
        nodes if op == "silu" else [node],
        op,
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, in_shape) for i in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    values = {n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in feeds.items()}
    yv = ort.OrtValue.ortvalue_from_numpy(np.zeros(out_shape, dtype=np.float32))
    binding = sess.io_binding()
    for n, v in values.items():
        binding.bind_ortvalue_input(n, v)
    binding.bind_ortvalue_output("y", yv)
    sess.run_with_iobinding(binding)
    print(f"ready onnxruntime {ort.__version__}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            sess.run_with_iobinding(binding)
            print("ok", flush=True)
        elif cmd == "save":
            yv.numpy().astype("<f4").tofile(f"{d}/out.f32")
            print("saved", flush=True)


if __name__ == "__main__":
    main()
