// Does not compile: `undefined_name` is never declared.
extern "C" __global__ void broken(float* x) {
    x[threadIdx.x] = undefined_name;
}
