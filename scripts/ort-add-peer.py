#!/usr/bin/env python3
"""onnxruntime's one-element Add as the CPU peer of `anyaccel bench --op dispatch --peers`.

Usage: ort-add-peer.py DIR A B

Builds a one-node ONNX model (Add of two f32 tensors of shape [1]) and an onnxruntime session on
one intra-op thread, binds its inputs (A and B) and its output to OrtValues in host memory once
(`io_binding`), runs it once and prints "ready <version>". Then for each line "time K" on standard
input it runs `run_with_iobinding` K times, timing each run with `time.perf_counter_ns`, and
prints the K times in nanoseconds on one line; on "value" it prints the output element; on end of
input it exits.
"""

import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper
import onnxruntime as ort


def main() -> None:
    a_value, b_value = float(sys.argv[2]), float(sys.argv[3])
    node = helper.make_node("Add", ["a", "b"], ["c"])
    graph = helper.make_graph(
        [node],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    a = ort.OrtValue.ortvalue_from_numpy(np.array([a_value], dtype=np.float32))
    b = ort.OrtValue.ortvalue_from_numpy(np.array([b_value], dtype=np.float32))
    c = ort.OrtValue.ortvalue_from_numpy(np.zeros([1], dtype=np.float32))
    binding = sess.io_binding()
    binding.bind_ortvalue_input("a", a)
    binding.bind_ortvalue_input("b", b)
    binding.bind_ortvalue_output("c", c)
    sess.run_with_iobinding(binding)
    print(f"ready onnxruntime {ort.__version__}", flush=True)
    clock = time.perf_counter_ns
    for line in sys.stdin:
        cmd = line.split()
        if len(cmd) == 2 and cmd[0] == "time":
            times = []
            for _ in range(int(cmd[1])):
                t0 = clock()
                sess.run_with_iobinding(binding)
                times.append(clock() - t0)
            print(" ".join(str(t) for t in times), flush=True)
        elif cmd == ["value"]:
            print(repr(float(c.numpy()[0])), flush=True)


if __name__ == "__main__":
    main()
