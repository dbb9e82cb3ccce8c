// y[i] = a * x[i] + y[i] for i < n. The grid may be larger than n (rounded up to a work-group).
__kernel void saxpy(__global float* y, __global const float* x, const float a, const uint n)
{
    const size_t i = get_global_id(0);
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}

// out[i] = in[i] * 2 for i < n, with an element offset into `in`: how the op layer passes
// tensors that do not start at the beginning of their buffer.
__kernel void double_at(__global int* out, __global const int* in, const ulong in_offset,
                        const uint n)
{
    const size_t i = get_global_id(0);
    if (i < n) {
        out[i] = in[in_offset + i] * 2;
    }
}

// Writes, for each item of a 2-D grid, its linear index.
__kernel void grid_index(__global uint* out)
{
    const size_t x = get_global_id(0);
    const size_t y = get_global_id(1);
    out[y * get_global_size(0) + x] = (uint)(y * get_global_size(0) + x);
}
