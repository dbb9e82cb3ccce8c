// The tiny kernel of the launch-overhead benchmark: c = a + b over n f32 elements. anyaccel's
// OpenCL device and the raw opencl3 peer build this same source and launch it the same way.
__kernel void tiny_add(__global const float *a, __global const float *b, __global float *c,
                       uint n) {
    size_t i = get_global_id(0);
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}
