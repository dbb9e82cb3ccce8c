/* anyaccel dialect-C prelude for OpenCL C 1.2.
 *
 * The kernels of ops/kernels/c/ are written once, in a small C dialect made of the macros and
 * functions below; prelude_cuda.h defines the same names for CUDA C (NVRTC). The op layer builds
 * a program as: this prelude, then common.h, then one family file, and specialises it with -D
 * options (dtypes, op, rank, tile sizes).
 *
 * Provided: integer typedefs (i32 i64 u8 u16 u32 u64), KERNEL, GLOBAL (pointer qualifier of
 * device memory), LOCAL (declaration of work-group memory), LOCAL_PTR (pointer qualifier of
 * work-group memory), DEVICE (helper functions), GLOBAL_ID / LOCAL_ID / GROUP_ID / LOCAL_SIZE /
 * NUM_GROUPS / GLOBAL_SIZE (dimension 0, 1 or 2), BARRIER() (work-group barrier over local and
 * global memory), ATOMIC_MIN_I32, f32/f64 bit casts, CLZ64, and the f16 storage type with its
 * load and store (vload_half / vstore_half_rte, which need no cl_khr_fp16).
 */
#ifndef ANYACCEL_PRELUDE
#define ANYACCEL_PRELUDE 1
#define ANYACCEL_OPENCL 1

#if defined(cl_khr_fp64) && !defined(ANYACCEL_NO_FP64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define ANYACCEL_FP64 1
#endif

/* f16 is computed in f32 and rounded once, as docs/ops.md specifies, with or without
 * cl_khr_fp16: for the correctly rounded ops (+ - * / sqrt, max, min, ...) that is bit-identical
 * to half arithmetic (f32 has more than 2 * 11 + 2 bits), and ops that accumulate must use f32
 * anyway. The loads and stores below need no extension. */

typedef char i8;
typedef int i32;
typedef long i64;
typedef uchar u8;
typedef ushort u16;
typedef uint u32;
typedef ulong u64;

#define KERNEL __kernel
#define GLOBAL __global
#define LOCAL __local
#define LOCAL_PTR __local
#define DEVICE static inline
#define RESTRICT restrict

#define GLOBAL_ID(d) ((i64)get_global_id(d))
#define LOCAL_ID(d) ((i32)get_local_id(d))
#define GROUP_ID(d) ((i64)get_group_id(d))
#define LOCAL_SIZE(d) ((i32)get_local_size(d))
#define NUM_GROUPS(d) ((i64)get_num_groups(d))
#define GLOBAL_SIZE(d) ((i64)get_global_size(d))
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)

#define ATOMIC_MIN_I32(p, v) atomic_min((volatile GLOBAL int*)(p), (int)(v))

#define f32_bits(x) as_uint(x)
#define bits_f32(x) as_float(x)
#ifdef ANYACCEL_FP64
#define f64_bits(x) as_ulong(x)
#define bits_f64(x) as_double(x)
#endif
#define CLZ64(x) ((i32)clz((ulong)(x)))

/* The C99 float names the kernels use, on OpenCL's overloaded built-ins. */
#define expf(x) exp((float)(x))
#define logf(x) log((float)(x))
#define sqrtf(x) sqrt((float)(x))
#define sinf(x) sin((float)(x))
#define cosf(x) cos((float)(x))
#define tanhf(x) tanh((float)(x))
#define erff(x) erf((float)(x))
#define log1pf(x) log1p((float)(x))
#define expm1f(x) expm1((float)(x))
#define tanf(x) tan((float)(x))
#define atanf(x) atan((float)(x))
#define asinf(x) asin((float)(x))
#define acosf(x) acos((float)(x))
#define sinhf(x) sinh((float)(x))
#define coshf(x) cosh((float)(x))
#define asinhf(x) asinh((float)(x))
#define acoshf(x) acosh((float)(x))
#define atanhf(x) atanh((float)(x))
#define atan2f(y, x) atan2((float)(y), (float)(x))
#define fmodf(x, y) fmod((float)(x), (float)(y))
#define frexpf(x, e) frexp((float)(x), (e))
#define floorf(x) floor((float)(x))
#define ceilf(x) ceil((float)(x))
#define truncf(x) trunc((float)(x))
#define rintf(x) rint((float)(x))
#define powf(x, y) pow((float)(x), (float)(y))
#define fabsf(x) fabs((float)(x))
#define ldexpf(x, e) ldexp((float)(x), (int)(e))
#define fmaf(a, b, c) fma((float)(a), (float)(b), (float)(c))
#define ilogbf(x) ilogb((float)(x))

/* f16 storage: `half` buffers, read and written through vload_half / vstore_half_rte (one
 * rounding to nearest even; exact widening), which OpenCL 1.2 provides without cl_khr_fp16.
 * With -DANYACCEL_SOFT_HALF, common.h's bit-work conversions (those of CUDA) are used instead,
 * on u16 buffers: the tests use it to check them against the host. */
#ifndef ANYACCEL_SOFT_HALF
#define ANYACCEL_HAS_HALF_IO 1
typedef half st_f16;
DEVICE float ld_f16(GLOBAL const half* p, i64 i) { return vload_half((size_t)i, p); }
DEVICE void sv_f16(GLOBAL half* p, i64 i, float v) { vstore_half_rte(v, (size_t)i, p); }
#endif

#endif
