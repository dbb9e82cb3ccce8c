// The tiny kernel of the launch-overhead benchmark: c = a + b over n f32 elements. anyaccel's
// CUDA device and the raw cudarc peer compile this same source with NVRTC and launch it the
// same way.
extern "C" __global__ void tiny_add(const float *a, const float *b, float *c, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}
