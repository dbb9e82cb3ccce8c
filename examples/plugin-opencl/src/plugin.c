/*
 * An anyaccel plugin that implements no op: it brings a device whose runtime compiles OpenCL C
 * (here, whatever OpenCL driver the system has: PoCL on a CPU, or a vendor's) and lets anyaccel's
 * portable kernels run every op on it. It stands for a chip vendor whose runtime has a compiler
 * for a dialect that anyaccel generates (OpenCL C here; CUDA-compatible C or SPIR-V work alike).
 *
 * The table has memory, streams, events and the four kernel functions; device_info declares
 * the dialect "opencl-c" and no native ops. anyaccel's op layer then compiles, for every op call,
 * its OpenCL C kernel (a prelude, common.h and one family file, specialised with -D options),
 * hands it to module_load, and launches it with kernel_launch. See docs/writing-a-plugin.md,
 * "Two ways to bring your chip".
 *
 * Plain C11 against anyaccel_plugin.h and the OpenCL 1.2 API; one device (the first GPU of the
 * first platform that has one, else its first device of any type), one context.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anyaccel_plugin.h"

/* ---- Errors ---------------------------------------------------------------------------------- */

static _Thread_local char tl_message[4096];

static const char *api_last_error(void) {
    return tl_message;
}

static AnyaccelStatus fail(AnyaccelStatus code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_message, sizeof tl_message, fmt, ap);
    va_end(ap);
    return code;
}

/* The anyaccel error for an OpenCL error code from `what`. */
static AnyaccelStatus cl_fail(cl_int err, const char *what) {
    AnyaccelStatus code = ANYACCEL_ERROR_INTERNAL;
    switch (err) {
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_RESOURCES:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE:
        code = ANYACCEL_ERROR_OUT_OF_MEMORY;
        break;
    case CL_INVALID_KERNEL_ARGS:
    case CL_INVALID_ARG_SIZE:
    case CL_INVALID_ARG_VALUE:
    case CL_INVALID_WORK_GROUP_SIZE:
    case CL_INVALID_WORK_ITEM_SIZE:
    case CL_INVALID_GLOBAL_WORK_SIZE:
        code = ANYACCEL_ERROR_INVALID_ARGUMENT;
        break;
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST:
        code = ANYACCEL_ERROR_LAUNCH_FAILED;
        break;
    default:
        break;
    }
    return fail(code, "%s failed with OpenCL error %d", what, (int)err);
}

/* ---- The device ------------------------------------------------------------------------------ */

struct AnyaccelDevice_ {
    cl_device_id id;
    cl_context context;
    cl_uint base_align_bytes; /* CL_DEVICE_MEM_BASE_ADDR_ALIGN, in bytes */
    int fp64;
};

static struct AnyaccelDevice_ the_device;
static pthread_once_t found_once = PTHREAD_ONCE_INIT;
static AnyaccelStatus found_status;
static char found_message[1024];

static void find_device(void) {
    cl_platform_id platforms[16];
    cl_uint n = 0;
    cl_int err = clGetPlatformIDs(16, platforms, &n);
    if (err != CL_SUCCESS || n == 0) {
        found_status = ANYACCEL_ERROR_UNAVAILABLE;
        snprintf(found_message, sizeof found_message,
                 "no OpenCL platform (clGetPlatformIDs: error %d, %u platforms): is an OpenCL "
                 "driver (an ICD) installed?",
                 (int)err, (unsigned)n);
        return;
    }
    if (n > 16) n = 16;
    cl_device_id chosen = NULL;
    for (int pass = 0; pass < 2 && !chosen; pass++) {
        for (cl_uint p = 0; p < n && !chosen; p++) {
            cl_uint count = 0;
            cl_device_type type = pass == 0 ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_ALL;
            if (clGetDeviceIDs(platforms[p], type, 1, &chosen, &count) != CL_SUCCESS || count == 0)
                chosen = NULL;
        }
    }
    if (!chosen) {
        found_status = ANYACCEL_ERROR_UNAVAILABLE;
        snprintf(found_message, sizeof found_message,
                 "the OpenCL platforms have no device (%u platforms)", (unsigned)n);
        return;
    }
    cl_context context = clCreateContext(NULL, 1, &chosen, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        found_status = ANYACCEL_ERROR_UNAVAILABLE;
        snprintf(found_message, sizeof found_message, "clCreateContext failed with error %d",
                 (int)err);
        return;
    }
    cl_uint align_bits = 0;
    clGetDeviceInfo(chosen, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    char ext[8192] = {0};
    clGetDeviceInfo(chosen, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    the_device.id = chosen;
    the_device.context = context;
    the_device.base_align_bytes = align_bits / 8 ? align_bits / 8 : 1;
    the_device.fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    found_status = ANYACCEL_OK;
}

static AnyaccelStatus ensure_device(void) {
    pthread_once(&found_once, find_device);
    if (found_status) return fail(found_status, "%s", found_message);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_device_count(int32_t *count) {
    if (!count) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_count: count is NULL");
    AnyaccelStatus st = ensure_device();
    if (st) return st;
    *count = 1;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_device_open(int32_t index, AnyaccelDevice **device) {
    if (!device) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_open: device is NULL");
    AnyaccelStatus st = ensure_device();
    if (st) return st;
    if (index != 0)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_open: index %d, expected 0", (int)index);
    *device = &the_device;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_device_close(AnyaccelDevice *device) {
    if (device != &the_device)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_close: not a device of this plugin");
    /* The context stays for the life of the process (the host never unloads a plugin). */
    return ANYACCEL_OK;
}

static const char *const dialects[] = {"opencl-c", NULL};

static AnyaccelStatus api_device_info(AnyaccelDevice *device, AnyaccelDeviceInfo *info) {
    if (device != &the_device || !info)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT,
                    "device_info: expected a device of this plugin and an info struct");
    cl_device_id id = device->id;
    char text[256];
#define TEXT(field, param)                                                       \
    if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, field)) {                   \
        memset(text, 0, sizeof text);                                            \
        clGetDeviceInfo(id, param, sizeof text - 1, text, NULL);                 \
        snprintf(info->field, sizeof info->field, "%.*s", (int)sizeof info->field - 1, text[0] ? text : "?"); \
    }
    TEXT(name, CL_DEVICE_NAME)
    TEXT(vendor, CL_DEVICE_VENDOR)
    TEXT(driver_version, CL_DRIVER_VERSION)
#undef TEXT
    cl_ulong memory = 0, max_alloc = 0;
    size_t max_group = 1;
    cl_uint units = 1;
    clGetDeviceInfo(id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof memory, &memory, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
#define SET(field, value)                                     \
    if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, field)) \
        info->field = (value);
    SET(memory_bytes, memory ? (uint64_t)memory : 1)
    SET(max_buffer_bytes, max_alloc ? (uint64_t)max_alloc : 1)
    SET(max_work_group_size, max_group ? (uint64_t)max_group : 1)
    SET(compute_units, units)
    /* f16 and bf16 are stored as 16-bit words and computed in f32 by the portable kernels: they
     * need no extension. f64 needs cl_khr_fp64. */
    uint32_t mask = ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F32) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F16) |
                    ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_BF16) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I32) |
                    ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I64) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_U8) |
                    ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I8) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_BOOL);
    if (device->fp64) mask |= ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F64);
    SET(dtype_mask, mask)
    SET(timestamps, 1)
    SET(dialects, dialects)
    SET(native_ops, NULL)
#undef SET
    return ANYACCEL_OK;
}

/* ---- Memory ---------------------------------------------------------------------------------- */

struct AnyaccelBuffer_ {
    cl_mem mem;
    uint64_t size;
};

static AnyaccelStatus api_buffer_alloc(AnyaccelDevice *device, uint64_t bytes,
                                       AnyaccelBuffer **buffer) {
    if (device != &the_device || !buffer)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "buffer_alloc: bad device or NULL buffer");
    cl_ulong max_alloc = 0;
    clGetDeviceInfo(device->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    if (max_alloc && bytes > max_alloc)
        return fail(ANYACCEL_ERROR_OUT_OF_MEMORY,
                    "buffer_alloc: %llu bytes, more than the device's largest allocation (%llu)",
                    (unsigned long long)bytes, (unsigned long long)max_alloc);
    AnyaccelBuffer *b = calloc(1, sizeof *b);
    if (!b) return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "buffer_alloc: out of host memory");
    cl_int err;
    /* OpenCL has no empty buffers: a zero-byte buffer holds one byte that nothing touches. */
    b->mem = clCreateBuffer(device->context, CL_MEM_READ_WRITE, bytes ? (size_t)bytes : 1, NULL,
                            &err);
    if (err != CL_SUCCESS) {
        free(b);
        return cl_fail(err, "buffer_alloc: clCreateBuffer");
    }
    b->size = bytes;
    *buffer = b;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_buffer_free(AnyaccelDevice *device, AnyaccelBuffer *buffer) {
    if (device != &the_device || !buffer)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "buffer_free: bad device or NULL buffer");
    clReleaseMemObject(buffer->mem);
    free(buffer);
    return ANYACCEL_OK;
}

/* ---- Streams --------------------------------------------------------------------------------- */

struct AnyaccelStream_ {
    cl_command_queue queue;
};

static AnyaccelStatus api_stream_create(AnyaccelDevice *device, AnyaccelStream **stream) {
    if (device != &the_device || !stream)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_create: bad device or NULL stream");
    AnyaccelStream *s = calloc(1, sizeof *s);
    if (!s) return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "stream_create: out of host memory");
    cl_int err;
    /* Profiling gives events their device timestamps (event_elapsed_ms). */
    s->queue = clCreateCommandQueue(device->context, device->id, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        free(s);
        return cl_fail(err, "stream_create: clCreateCommandQueue");
    }
    *stream = s;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_destroy(AnyaccelStream *s) {
    if (!s) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_destroy: NULL stream");
    clFinish(s->queue);
    clReleaseCommandQueue(s->queue);
    free(s);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_synchronize(AnyaccelStream *s) {
    if (!s) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_synchronize: NULL stream");
    cl_int err = clFinish(s->queue);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "stream_synchronize: clFinish");
}

static AnyaccelStatus api_copy_h2d(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                                   const void *src, uint64_t bytes) {
    if (!s || !dst || (bytes && !src))
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_h2d: NULL argument");
    if (!bytes) return ANYACCEL_OK;
    /* Not blocking: the host keeps `src` until a later synchronization. */
    cl_int err = clEnqueueWriteBuffer(s->queue, dst->mem, CL_FALSE, (size_t)dst_offset,
                                      (size_t)bytes, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "copy_h2d: clEnqueueWriteBuffer");
}

static AnyaccelStatus api_copy_d2h(AnyaccelStream *s, void *dst, AnyaccelBuffer *src,
                                   uint64_t src_offset, uint64_t bytes) {
    if (!s || !src || (bytes && !dst))
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_d2h: NULL argument");
    if (!bytes) return ANYACCEL_OK;
    cl_int err = clEnqueueReadBuffer(s->queue, src->mem, CL_FALSE, (size_t)src_offset,
                                     (size_t)bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "copy_d2h: clEnqueueReadBuffer");
}

static AnyaccelStatus api_copy_d2d(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                                   AnyaccelBuffer *src, uint64_t src_offset, uint64_t bytes) {
    if (!s || !dst || !src) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_d2d: NULL argument");
    if (!bytes) return ANYACCEL_OK;
    cl_int err = clEnqueueCopyBuffer(s->queue, src->mem, dst->mem, (size_t)src_offset,
                                     (size_t)dst_offset, (size_t)bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "copy_d2d: clEnqueueCopyBuffer");
}

static AnyaccelStatus api_fill(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                               uint64_t bytes, const void *pattern, uint32_t pattern_size) {
    if (!s || !dst || !pattern) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "fill: NULL argument");
    if (pattern_size != 1 && pattern_size != 2 && pattern_size != 4)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "fill: pattern of %u bytes, expected 1, 2 or 4",
                    (unsigned)pattern_size);
    if (!bytes) return ANYACCEL_OK;
    cl_int err;
    if (dst_offset % pattern_size == 0) {
        err = clEnqueueFillBuffer(s->queue, dst->mem, pattern, pattern_size, (size_t)dst_offset,
                                  (size_t)bytes, 0, NULL, NULL);
        return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "fill: clEnqueueFillBuffer");
    }
    /* OpenCL fills only at offsets aligned to the pattern: write the repeated pattern. */
    unsigned char *staged = malloc((size_t)bytes);
    if (!staged) return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "fill: out of host memory");
    for (uint64_t i = 0; i < bytes; i++) staged[i] = ((const unsigned char *)pattern)[i % pattern_size];
    err = clEnqueueWriteBuffer(s->queue, dst->mem, CL_TRUE, (size_t)dst_offset, (size_t)bytes,
                               staged, 0, NULL, NULL);
    free(staged);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "fill: clEnqueueWriteBuffer");
}

/* ---- Events ---------------------------------------------------------------------------------- */

struct AnyaccelEvent_ {
    pthread_mutex_t mu;
    cl_event event; /* NULL until recorded: complete */
};

/* The event's current OpenCL event, retained (NULL when never recorded). */
static cl_event current(AnyaccelEvent *e) {
    pthread_mutex_lock(&e->mu);
    cl_event ev = e->event;
    if (ev) clRetainEvent(ev);
    pthread_mutex_unlock(&e->mu);
    return ev;
}

static AnyaccelStatus api_event_create(AnyaccelDevice *device, AnyaccelEvent **event) {
    if (device != &the_device || !event)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_create: bad device or NULL event");
    AnyaccelEvent *e = calloc(1, sizeof *e);
    if (!e) return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "event_create: out of host memory");
    pthread_mutex_init(&e->mu, NULL);
    *event = e;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_destroy(AnyaccelEvent *e) {
    if (!e) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_destroy: NULL event");
    /* OpenCL keeps a pending event alive for the commands that wait on it. */
    if (e->event) clReleaseEvent(e->event);
    pthread_mutex_destroy(&e->mu);
    free(e);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_record(AnyaccelEvent *e, AnyaccelStream *s) {
    if (!e || !s) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_record: NULL argument");
    cl_event marker;
    cl_int err = clEnqueueMarkerWithWaitList(s->queue, 0, NULL, &marker);
    if (err != CL_SUCCESS) return cl_fail(err, "event_record: clEnqueueMarkerWithWaitList");
    /* Submit it now, so that waiting on it from another thread cannot wait forever. */
    clFlush(s->queue);
    pthread_mutex_lock(&e->mu);
    cl_event old = e->event;
    e->event = marker;
    pthread_mutex_unlock(&e->mu);
    if (old) clReleaseEvent(old);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_query(AnyaccelEvent *e, int32_t *completed) {
    if (!e || !completed) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_query: NULL argument");
    cl_event ev = current(e);
    if (!ev) {
        *completed = 1;
        return ANYACCEL_OK;
    }
    cl_int status = CL_COMPLETE;
    cl_int err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    clReleaseEvent(ev);
    if (err != CL_SUCCESS) return cl_fail(err, "event_query: clGetEventInfo");
    *completed = status == CL_COMPLETE || status < 0;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_synchronize(AnyaccelEvent *e) {
    if (!e) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_synchronize: NULL event");
    cl_event ev = current(e);
    if (!ev) return ANYACCEL_OK;
    cl_int err = clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    return err == CL_SUCCESS ? ANYACCEL_OK : cl_fail(err, "event_synchronize: clWaitForEvents");
}

static AnyaccelStatus api_event_elapsed_ms(AnyaccelEvent *start, AnyaccelEvent *end, double *ms) {
    if (!start || !end || !ms)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_elapsed_ms: NULL argument");
    cl_ulong at[2];
    AnyaccelEvent *events[2] = {start, end};
    for (int i = 0; i < 2; i++) {
        cl_event ev = current(events[i]);
        cl_int status = CL_QUEUED;
        if (ev)
            clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
        cl_int err = ev && status == CL_COMPLETE
                         ? clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof at[i],
                                                   &at[i], NULL)
                         : CL_INVALID_EVENT;
        if (ev) clReleaseEvent(ev);
        if (err != CL_SUCCESS)
            return fail(ANYACCEL_ERROR_INVALID_ARGUMENT,
                        "event_elapsed_ms: the %s event was never recorded or has not completed "
                        "(OpenCL status %d); wait on both first",
                        i == 0 ? "start" : "end", (int)err);
    }
    *ms = ((double)at[1] - (double)at[0]) / 1e6;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_wait_event(AnyaccelStream *s, AnyaccelEvent *e) {
    if (!s || !e) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_wait_event: NULL argument");
    cl_event ev = current(e);
    if (!ev) return ANYACCEL_OK;
    cl_int err = clEnqueueBarrierWithWaitList(s->queue, 1, &ev, NULL);
    clReleaseEvent(ev);
    return err == CL_SUCCESS ? ANYACCEL_OK
                             : cl_fail(err, "stream_wait_event: clEnqueueBarrierWithWaitList");
}

/* ---- Kernels: the system's OpenCL compiler --------------------------------------------------- */

struct AnyaccelKernel_ {
    cl_kernel kernel;
    /* Arguments are set and the launch enqueued under this lock: a cl_kernel's arguments are
     * shared by every thread that launches it. */
    pthread_mutex_t mu;
    struct AnyaccelKernel_ *next;
};

struct AnyaccelModule_ {
    cl_program program;
    pthread_mutex_t mu;
    struct AnyaccelKernel_ *kernels; /* released with the module */
};

static AnyaccelStatus api_module_load(AnyaccelDevice *device, const AnyaccelModuleSource *source,
                                      AnyaccelModule **module) {
    if (device != &the_device || !source || !module || !source->dialect)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "module_load: bad device or NULL argument");
    if (strcmp(source->dialect, "opencl-c") != 0)
        return fail(ANYACCEL_ERROR_UNSUPPORTED, "module_load: dialect `%s`, expected opencl-c",
                    source->dialect);
    const char *text = source->data;
    size_t length = source->size;
    cl_int err;
    cl_program program = clCreateProgramWithSource(device->context, 1, &text, &length, &err);
    if (err != CL_SUCCESS) return cl_fail(err, "module_load: clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &device->id, source->options ? source->options : "", NULL,
                         NULL);
    if (err != CL_SUCCESS) {
        char log[3072] = {0};
        clGetProgramBuildInfo(program, device->id, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        clReleaseProgram(program);
        return fail(ANYACCEL_ERROR_COMPILE_FAILED, "module_load: clBuildProgram error %d: %s",
                    (int)err, log);
    }
    AnyaccelModule *m = calloc(1, sizeof *m);
    if (!m) {
        clReleaseProgram(program);
        return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "module_load: out of host memory");
    }
    m->program = program;
    pthread_mutex_init(&m->mu, NULL);
    *module = m;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_module_unload(AnyaccelModule *m) {
    if (!m) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "module_unload: NULL module");
    for (AnyaccelKernel *k = m->kernels; k;) {
        AnyaccelKernel *next = k->next;
        clReleaseKernel(k->kernel);
        pthread_mutex_destroy(&k->mu);
        free(k);
        k = next;
    }
    clReleaseProgram(m->program);
    pthread_mutex_destroy(&m->mu);
    free(m);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_kernel_get(AnyaccelModule *m, const char *name, AnyaccelKernel **kernel) {
    if (!m || !name || !kernel) return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "kernel_get: NULL argument");
    cl_int err;
    cl_kernel k = clCreateKernel(m->program, name, &err);
    if (err != CL_SUCCESS)
        return fail(err == CL_INVALID_KERNEL_NAME ? ANYACCEL_ERROR_INVALID_ARGUMENT
                                                  : ANYACCEL_ERROR_INTERNAL,
                    "kernel_get: no kernel `%s` in the module (clCreateKernel error %d)", name,
                    (int)err);
    AnyaccelKernel *out = calloc(1, sizeof *out);
    if (!out) {
        clReleaseKernel(k);
        return fail(ANYACCEL_ERROR_OUT_OF_MEMORY, "kernel_get: out of host memory");
    }
    out->kernel = k;
    pthread_mutex_init(&out->mu, NULL);
    pthread_mutex_lock(&m->mu);
    out->next = m->kernels;
    m->kernels = out;
    pthread_mutex_unlock(&m->mu);
    *kernel = out;
    return ANYACCEL_OK;
}

#define MAX_ARGS 64

static AnyaccelStatus api_kernel_launch(AnyaccelStream *s, AnyaccelKernel *k,
                                        const AnyaccelLaunch *launch) {
    if (!s || !k || !launch || (launch->num_args && !launch->args))
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "kernel_launch: NULL argument");
    if (launch->num_args > MAX_ARGS)
        return fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "kernel_launch: %zu arguments, at most %d",
                    launch->num_args, MAX_ARGS);
    size_t global[3], local[3];
    for (int d = 0; d < 3; d++) {
        global[d] = (size_t)launch->global[d];
        local[d] = launch->local[d];
        if (global[d] == 0) return ANYACCEL_OK; /* nothing runs */
    }
    cl_mem subs[MAX_ARGS];
    size_t num_subs = 0;
    AnyaccelStatus st = ANYACCEL_OK;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < launch->num_args && !st; i++) {
        /* A later host's arguments may be larger: step by its struct_size. */
        const AnyaccelKernelArg *a = ANYACCEL_ARRAY_AT(launch->args, AnyaccelKernelArg, i);
        cl_int err;
        if (a->kind == ANYACCEL_ARG_BUFFER) {
            cl_mem mem = a->buffer->mem;
            if (a->offset != 0 || a->size != a->buffer->size) {
                if (a->offset % the_device.base_align_bytes != 0 || a->size == 0) {
                    st = fail(ANYACCEL_ERROR_UNSUPPORTED,
                              "kernel_launch: argument %zu binds bytes %llu..%llu of a buffer; "
                              "this device binds views only at multiples of %u bytes (bind the "
                              "whole buffer and pass an element offset)",
                              i, (unsigned long long)a->offset,
                              (unsigned long long)(a->offset + a->size),
                              (unsigned)the_device.base_align_bytes);
                    break;
                }
                cl_buffer_region region = {(size_t)a->offset, (size_t)a->size};
                mem = clCreateSubBuffer(a->buffer->mem, CL_MEM_READ_WRITE,
                                        CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
                if (err != CL_SUCCESS) {
                    st = cl_fail(err, "kernel_launch: clCreateSubBuffer");
                    break;
                }
                subs[num_subs++] = mem;
            }
            err = clSetKernelArg(k->kernel, (cl_uint)i, sizeof mem, &mem);
        } else if (a->kind == ANYACCEL_ARG_BYTES) {
            err = clSetKernelArg(k->kernel, (cl_uint)i, (size_t)a->size, a->bytes);
        } else {
            st = fail(ANYACCEL_ERROR_INVALID_ARGUMENT, "kernel_launch: argument %zu has kind %d",
                      i, (int)a->kind);
            break;
        }
        if (err != CL_SUCCESS) st = cl_fail(err, "kernel_launch: clSetKernelArg");
    }
    if (!st) {
        cl_int err = clEnqueueNDRangeKernel(s->queue, k->kernel, 3, NULL, global,
                                            launch->has_local ? local : NULL, 0, NULL, NULL);
        if (err != CL_SUCCESS) st = cl_fail(err, "kernel_launch: clEnqueueNDRangeKernel");
    }
    pthread_mutex_unlock(&k->mu);
    /* A released sub-buffer lives until the commands that use it have completed. */
    for (size_t i = 0; i < num_subs; i++) clReleaseMemObject(subs[i]);
    return st;
}

/* ---- The table ------------------------------------------------------------------------------- */

static const AnyaccelPluginApi api = {
    .struct_size = sizeof(AnyaccelPluginApi),
    .abi_major = ANYACCEL_PLUGIN_ABI_MAJOR,
    .abi_minor = ANYACCEL_PLUGIN_ABI_MINOR,
    .name = "clfwd",
    .version = "1.0.0",
    .last_error = api_last_error,
    .device_count = api_device_count,
    .device_open = api_device_open,
    .device_close = api_device_close,
    .device_info = api_device_info,
    .buffer_alloc = api_buffer_alloc,
    .buffer_free = api_buffer_free,
    .copy_h2d = api_copy_h2d,
    .copy_d2h = api_copy_d2h,
    .copy_d2d = api_copy_d2d,
    .fill = api_fill,
    .stream_create = api_stream_create,
    .stream_destroy = api_stream_destroy,
    .stream_synchronize = api_stream_synchronize,
    .stream_wait_event = api_stream_wait_event,
    .event_create = api_event_create,
    .event_destroy = api_event_destroy,
    .event_record = api_event_record,
    .event_query = api_event_query,
    .event_synchronize = api_event_synchronize,
    .event_elapsed_ms = api_event_elapsed_ms,
    .module_load = api_module_load,
    .module_unload = api_module_unload,
    .kernel_get = api_kernel_get,
    .kernel_launch = api_kernel_launch,
    /* No native op: every op runs through anyaccel's portable OpenCL C kernels. */
    .op_supported = NULL,
    .op_execute = NULL,
};

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t host_abi_major,
                                                                        uint32_t host_abi_minor) {
    (void)host_abi_minor;
    return host_abi_major == ANYACCEL_PLUGIN_ABI_MAJOR ? &api : NULL;
}
