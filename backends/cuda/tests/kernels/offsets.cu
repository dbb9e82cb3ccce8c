// out[i] = in[i] + k for n elements; the buffers are views at any element offset.
extern "C" __global__ void add_k(const int* in, int* out, unsigned int n, int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = in[i] + k;
    }
}
