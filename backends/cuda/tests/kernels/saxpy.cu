// y = a * x + y over n elements; one thread per element.
extern "C" __global__ void saxpy(const float* x, float* y, unsigned int n, float a) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}
