// f16 storage without cl_khr_fp16: load and store halves through vload_half / vstore_half.
__kernel void half_plus_one(__global half* data, const uint n)
{
    const size_t i = get_global_id(0);
    if (i < n) {
        vstore_half(vload_half(i, data) + 1.0f, i, data);
    }
}
