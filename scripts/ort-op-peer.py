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
    x = np.fromfile(f"{d}/x.f32", dtype="<f4").reshape(rows, cols)
    inits = []
    out_shape = [rows, cols]
    if op == "softmax":
        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
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
    elif op == "gelu":
        node = helper.make_node("Gelu", ["x"], ["y"])
    elif op == "gelu_tanh":
        node = helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")
    elif op == "transpose":
        node = helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])
        out_shape = [cols, rows]
    else:
        sys.exit(f"ort-op-peer.py: unknown op {op}")
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    xv = ort.OrtValue.ortvalue_from_numpy(x)
    yv = ort.OrtValue.ortvalue_from_numpy(np.zeros(out_shape, dtype=np.float32))
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", xv)
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
