#!/usr/bin/env python3
"""onnxruntime's CPU Conv as a benchmark peer of `anyaccel bench --op conv2d --peers`.

Usage: ort-conv-peer.py DIR N C H W O KH KW STRIDE PAD THREADS

Reads DIR/x.f32 ([N, C, H, W]) and DIR/w.f32 ([O, C, KH, KW]), little-endian f32, builds a
one-node ONNX model (Conv, the given stride and symmetric padding, no bias) and an
onnxruntime session on THREADS intra-op threads, runs it once, prints "ready", then for each
line "run" on standard input runs it once and prints "ok". On "save" it writes the output to
DIR/out.f32 and prints "saved"; on end of input it exits.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper
import onnxruntime as ort


def main() -> None:
    d = sys.argv[1]
    n, c, h, w, o, kh, kw, stride, pad, threads = (int(v) for v in sys.argv[2:12])
    x = np.fromfile(f"{d}/x.f32", dtype="<f4").reshape(n, c, h, w)
    wt = np.fromfile(f"{d}/w.f32", dtype="<f4").reshape(o, c, kh, kw)
    node = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        strides=[stride, stride],
        pads=[pad, pad, pad, pad],
        kernel_shape=[kh, kw],
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, wt.shape, wt.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    y = sess.run(None, {"x": x})[0]
    print(f"ready onnxruntime {ort.__version__}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            y = sess.run(None, {"x": x})[0]
            print("ok", flush=True)
        elif cmd == "save":
            y.astype("<f4").tofile(f"{d}/out.f32")
            print("saved", flush=True)


if __name__ == "__main__":
    main()
