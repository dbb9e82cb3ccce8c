// Writes through a pointer that the caller makes invalid: the launch faults on the device.
extern "C" __global__ void fault(float* p) {
    p[threadIdx.x] = 1.0f;
}
