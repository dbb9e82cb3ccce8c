/* anyaccel dialect-C prelude for CUDA C, compiled by NVRTC without any CUDA toolkit header.
 *
 * The same names as prelude_opencl.h (see there), for the same kernel sources: integer
 * typedefs, KERNEL, GLOBAL, LOCAL, LOCAL_PTR, DEVICE, the work-item indices, BARRIER(),
 * ATOMIC_MIN_I32, bit casts and CLZ64. f16 is stored as u16 and converted by common.h's bit work
 * (no cuda_fp16.h). The launcher maps LaunchDims to the grid: global[d] / local[d] blocks of
 * local[d] threads in dimension d, so GLOBAL_ID(d) = blockIdx.d * blockDim.d + threadIdx.d.
 *
 * CUDA-compatible compilers (HIP's hipcc or hiprtc, and the vendor compilers derived from it)
 * take the same source: the kernels use no warp-level intrinsic and assume no warp size (32 or
 * 64 alike), only work-group (shared) memory and __syncthreads(). Under a HIP compiler
 * (__HIPCC__ or __HIP_PLATFORM_AMD__ defined) the prelude leaves out NVRTC's diagnostic pragma
 * and defines ANYACCEL_HIP.
 */
#ifndef ANYACCEL_PRELUDE
#define ANYACCEL_PRELUDE 1
#define ANYACCEL_CUDA 1
#define ANYACCEL_FP64 1

typedef signed char i8;
typedef int i32;
typedef long long i64;
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define KERNEL extern "C" __global__
#define GLOBAL
#define LOCAL __shared__
#define LOCAL_PTR
#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#define ANYACCEL_HIP 1
#else
/* Helpers that a specialisation leaves unused are expected: no warning for them. */
#pragma nv_diag_suppress 177
#endif
#define DEVICE static __device__ __forceinline__
#define RESTRICT __restrict__

DEVICE unsigned anyaccel_pick(unsigned x, unsigned y, unsigned z, int d) {
    return d == 0 ? x : (d == 1 ? y : z);
}
#define LOCAL_ID(d) ((i32)anyaccel_pick(threadIdx.x, threadIdx.y, threadIdx.z, (d)))
#define GROUP_ID(d) ((i64)anyaccel_pick(blockIdx.x, blockIdx.y, blockIdx.z, (d)))
#define LOCAL_SIZE(d) ((i32)anyaccel_pick(blockDim.x, blockDim.y, blockDim.z, (d)))
#define NUM_GROUPS(d) ((i64)anyaccel_pick(gridDim.x, gridDim.y, gridDim.z, (d)))
#define GLOBAL_ID(d) (GROUP_ID(d) * (i64)LOCAL_SIZE(d) + (i64)LOCAL_ID(d))
#define GLOBAL_SIZE(d) (NUM_GROUPS(d) * (i64)LOCAL_SIZE(d))
#define BARRIER() __syncthreads()

#define ATOMIC_MIN_I32(p, v) atomicMin((int*)(p), (int)(v))

#define f32_bits(x) __float_as_uint(x)
#define bits_f32(x) __uint_as_float(x)
#define f64_bits(x) ((u64)__double_as_longlong(x))
#define bits_f64(x) __longlong_as_double((long long)(x))
#define CLZ64(x) ((i32)__clzll((long long)(x)))

#endif
