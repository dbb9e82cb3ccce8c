/*
 * anyaccel_plugin.h: the vendor plugin slot of anyaccel, ABI 1.1.
 *
 * A chip vendor adds a device to anyaccel by building a shared library that exports one
 * function, anyaccel_plugin_get_api(), returning a table of functions declared here. anyaccel
 * loads the library at run time (ANYACCEL_PLUGIN_PATH, `anyaccel conformance --plugin PATH`, or
 * anyaccel::load_plugin), checks the table, and offers each device of the plugin as a device
 * `plugin:<name>:<index>` next to its own CPU, OpenCL, Vulkan and CUDA devices. Every op of the
 * common op set (docs/ops.md) then runs on it through the plugin's native ops, and
 * `anyaccel conformance --plugin ./libmychip.so` proves that it computes what the contract says.
 *
 * This header is hand-written and is a contract: it is C11, it includes only <stddef.h> and
 * <stdint.h>, and it changes only by appending.
 *
 * ---------------------------------------------------------------------------------------------
 * Versioning
 * ---------------------------------------------------------------------------------------------
 *
 * The ABI has a major and a minor version. The host calls
 * anyaccel_plugin_get_api(host_major, host_minor); the plugin returns its table, whose
 * abi_major and abi_minor say what it was built against. The host accepts the table when the
 * majors are equal, whatever the minors. A new minor only appends fields to the end of the table
 * and of argument structs, so:
 *
 *  - every struct starts with `size_t struct_size`, set by whoever fills the struct: the plugin
 *    for AnyaccelPluginApi, the host for every argument struct it passes (AnyaccelDeviceInfo,
 *    AnyaccelTensor, AnyaccelAttr, AnyaccelOpCall, AnyaccelModuleSource, AnyaccelKernelArg,
 *    AnyaccelLaunch);
 *  - a reader reads only the fields that struct_size covers (ANYACCEL_STRUCT_HAS below) and
 *    treats the others as absent: zero, or NULL;
 *  - a NULL function pointer means "not supported". The host refuses a table in which a
 *    required function (marked REQUIRED below) is NULL, naming it; optional functions may be
 *    NULL and the feature is then reported as unsupported.
 *
 * The host refuses a table whose struct_size is smaller than the ABI 1.0 table, or whose
 * abi_major differs from its own, with both versions in the message.
 *
 * ---------------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------------------
 *
 * Every function that can fail returns an AnyaccelStatus: 0 (ANYACCEL_OK) for success, or one of
 * the error codes below, which are anyaccel's ErrorCode numbers, fixed forever. On failure the
 * plugin keeps a message that says what was wrong and what was expected, and last_error()
 * returns it on the same thread until that thread's next call into the plugin. The plugin owns
 * the message's memory. The host copies the message into the error it reports, so users see the
 * plugin's own words.
 *
 * ---------------------------------------------------------------------------------------------
 * Objects and their lifetimes
 * ---------------------------------------------------------------------------------------------
 *
 * All objects are opaque handles that the plugin defines (struct AnyaccelDevice_ and so on are
 * never defined by the host):
 *
 *  - AnyaccelDevice: opened once by device_open for each index below device_count, closed by
 *    device_close after everything made from it has been destroyed.
 *  - AnyaccelBuffer: device memory of a size given at buffer_alloc, freed by buffer_free. The
 *    host frees a buffer only after the commands that use it have completed.
 *  - AnyaccelStream: an in-order queue of commands (copies, fills, kernel launches, native ops,
 *    event records and waits), created by stream_create and destroyed by stream_destroy. The host
 *    synchronizes a stream before it destroys it.
 *  - AnyaccelEvent: a point in a stream, created by event_create, placed by event_record, and
 *    destroyed by event_destroy. event_destroy may be called while the event is still pending,
 *    or while another stream waits on it: the plugin keeps what it needs until then.
 *  - AnyaccelModule and AnyaccelKernel (optional): a loaded module and a kernel in it. A kernel
 *    lives as long as its module; the host unloads a module only after its launches completed.
 *
 * The library itself is never unloaded by the host: handles may live until the process ends.
 *
 * ---------------------------------------------------------------------------------------------
 * Streams, asynchrony and sticky errors
 * ---------------------------------------------------------------------------------------------
 *
 * Commands on one stream run in the order they were submitted. The functions that submit
 * commands (copy_*, fill, kernel_launch, op_execute, event_record, stream_wait_event) may return
 * before the command has run. Host memory passed to copy_h2d and copy_d2h must stay valid until
 * the copy completes; the host guarantees that by keeping it until a later synchronization.
 *
 * A submitting function returns an error only for what it can see at once (a bad argument).
 * A command that fails while it runs (an index out of range found by a kernel, a device fault)
 * makes the stream *failed*: the stream skips the commands after it, every event recorded after
 * it completes with that error (event_synchronize returns it), and the next stream_synchronize
 * returns the error, with its message, and clears it: the stream runs again after that.
 *
 * A plugin may also run every command before its submitting function returns (a synchronous
 * implementation); it must then still report a command's failure through the stream as above,
 * not as the submitting function's return value, except for bad arguments.
 *
 * One exception: op_execute may return ANYACCEL_ERROR_OUT_OF_BOUNDS itself for an index out of
 * range that it finds before returning (a plugin that checks indices on the host, or runs ops
 * synchronously). The host does not return it from the op call: it makes it the stream's
 * failure, reported at the next synchronization as if the stream had failed, which is what
 * docs/ops.md section 6 promises every caller. The conformance suite checks that rule (an op
 * call never returns OutOfBounds) and passes either way of reporting.
 *
 * ---------------------------------------------------------------------------------------------
 * Threads
 * ---------------------------------------------------------------------------------------------
 *
 * The host calls the plugin from many threads at once. A plugin must accept concurrent calls on
 * different objects, and event_query, event_synchronize and event_elapsed_ms on any event at any
 * time. The host never submits to or synchronizes one stream from two threads at the same time.
 * last_error() is per thread.
 *
 * ---------------------------------------------------------------------------------------------
 * Native ops
 * ---------------------------------------------------------------------------------------------
 *
 * The main road for a chip: op_supported and op_execute receive the ops of docs/ops.md by the
 * names, inputs, outputs and attributes written there. Before calling either, the host has
 * validated the call against docs/ops.md (dtypes, ranks, shapes, broadcasting, attribute kinds
 * and values, aliasing) and allocated the outputs with the shapes the contract infers, so a
 * plugin can trust the call's structure. Attributes come as the caller gave them: an attribute
 * that is absent takes its default from docs/ops.md, a Float attribute may come as an Int, an
 * Ints attribute may come as a single Int, and the host passes each name at most once.
 * Tensors are DLPack-shaped views of plugin buffers with strides in elements: any layout
 * (transposed, strided, broadcast with zero strides, at an element offset) can come in, and
 * outputs may be strided too. Index errors of index_select, embedding and gather are found while
 * the op runs and are reported through the stream as OUT_OF_BOUNDS, as docs/ops.md section 6
 * says.
 *
 * What else a plugin can rely on in a call:
 *
 *  - Inputs: inputs[i] is the i-th input of docs/ops.md, NULL for an absent optional one.
 *    Absent optional inputs at the end may be left out, so num_inputs can be smaller than the
 *    op's count of inputs: treat an index at or past num_inputs as NULL.
 *  - Rank: ndim is at most 64 (anyaccel's MAX_RANK), and 0 for a scalar, whose shape and
 *    strides must not be read. Every size and stride is >= 0, and element counts and the byte
 *    range of every tensor fit in int64 and lie inside its buffer (the host checked, with
 *    overflow checks).
 *  - Validation: the host has already refused, with InvalidArgument, everything docs/ops.md
 *    calls invalid: dtypes, ranks, shapes, attributes, aliasing, and the empty inputs that
 *    section 3 lists as errors (a max, min, argmax or argmin over zero elements, attention
 *    with no keys, ...). Every other empty input is valid: a sum over zero elements is 0, a
 *    mean NaN, as docs/ops.md says op by op; an output with zero elements gets nothing
 *    written. Only index values (and cross_entropy targets) are left to check while running.
 *  - Attributes: each name at most once; the array's stride is its struct_size
 *    (ANYACCEL_ARRAY_AT). An Int where docs/ops.md says Float is that integer's value.
 *  - fill: the `value` attribute is a Float (or an Int, meaning that integer); it converts to
 *    the output dtype as `cast` from f64 does (docs/ops.md, `fill`): for integers truncated
 *    toward zero and saturated at the dtype's range, NaN giving 0 (300.7 in u8 is 255); for
 *    bool `value != 0` (NaN is true); for floats rounded once to nearest even.
 *
 * Building a plugin: a C11 shared library whose only exported symbol is
 * anyaccel_plugin_get_api, e.g.
 *
 *   cc -std=c11 -O2 -fPIC -shared -fvisibility=hidden -I<anyaccel>/backends/plugin/include
 *      mychip.c ops.c -o libmychip.so -lm -lpthread
 *
 * (-lm and -lpthread when the plugin uses the maths library and threads, as the reference
 * plugin does).
 */

#ifndef ANYACCEL_PLUGIN_H
#define ANYACCEL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. */
#define ANYACCEL_PLUGIN_ABI_MAJOR 1
#define ANYACCEL_PLUGIN_ABI_MINOR 1

/* The name of the one exported function. */
#define ANYACCEL_PLUGIN_ENTRY "anyaccel_plugin_get_api"

/* True when the struct at `ptr` (of type `type`) has the field `field`, judging by its
 * struct_size. Use it to read, or write, a field that a later minor version appended. */
#define ANYACCEL_STRUCT_HAS(ptr, type, field) \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Element `i` of an array of versioned structs that the host passes (AnyaccelOpCall.attrs,
 * AnyaccelLaunch.args). The host lays such an array out with its own struct size as the stride,
 * and every element has that struct_size: a plugin built against an earlier minor, whose struct
 * is smaller, must step by the first element's struct_size, not by sizeof(type). The array must
 * have at least one element (check its length first). */
#define ANYACCEL_ARRAY_AT(array, type, i) \
    ((const type *)(const void *)((const char *)(array) + (size_t)(i) * (array)[0].struct_size))

/* The symbol visibility a plugin gives its entry point. */
#if defined(_WIN32)
#define ANYACCEL_PLUGIN_EXPORT __declspec(dllexport)
#else
#define ANYACCEL_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* ---- Status codes: anyaccel's ErrorCode numbers --------------------------------------------- */

/* 0 for success, otherwise one of the codes below. */
typedef int32_t AnyaccelStatus;

#define ANYACCEL_OK 0
/* An argument was wrong: a shape, a dtype, a size, a handle, a null pointer. */
#define ANYACCEL_ERROR_INVALID_ARGUMENT 1
/* A range (view, offset, index) fell outside the memory it refers to. */
#define ANYACCEL_ERROR_OUT_OF_BOUNDS 2
/* The device does not offer this op, dtype, dialect or feature. */
#define ANYACCEL_ERROR_UNSUPPORTED 3
/* The device or the vendor runtime could not be used. */
#define ANYACCEL_ERROR_UNAVAILABLE 4
/* Memory could not be allocated. */
#define ANYACCEL_ERROR_OUT_OF_MEMORY 5
/* A module failed to compile or load; the message holds the compiler's log. */
#define ANYACCEL_ERROR_COMPILE_FAILED 6
/* A kernel launch or a queued command failed. */
#define ANYACCEL_ERROR_LAUNCH_FAILED 7
/* The device stopped working. */
#define ANYACCEL_ERROR_DEVICE_LOST 8
/* A wait ran past its limit. */
#define ANYACCEL_ERROR_TIMEOUT 9
/* Incompatible ABI versions. */
#define ANYACCEL_ERROR_ABI_MISMATCH 10
/* A bug in the plugin: it should never happen. */
#define ANYACCEL_ERROR_INTERNAL 11

/* ---- dtypes -------------------------------------------------------------------------------- */

/* anyaccel's dtype codes (docs/ops.md, section 2), used in AnyaccelDeviceInfo.dtype_mask. */
#define ANYACCEL_DTYPE_F32 1
#define ANYACCEL_DTYPE_F16 2
#define ANYACCEL_DTYPE_BF16 3
#define ANYACCEL_DTYPE_F64 4
#define ANYACCEL_DTYPE_I32 5
#define ANYACCEL_DTYPE_I64 6
#define ANYACCEL_DTYPE_U8 7
#define ANYACCEL_DTYPE_BOOL 8
#define ANYACCEL_DTYPE_I8 9
/* The bit of a dtype code in a dtype mask. */
#define ANYACCEL_DTYPE_BIT(code) (1u << (code))

/* DLPack's type codes (DLDataTypeCode), used in AnyaccelDataType.code. The dtypes of
 * docs/ops.md are: f32 {FLOAT, 32, 1}, f16 {FLOAT, 16, 1}, bf16 {BFLOAT, 16, 1},
 * f64 {FLOAT, 64, 1}, i32 {INT, 32, 1}, i64 {INT, 64, 1}, u8 {UINT, 8, 1}, i8 {INT, 8, 1},
 * bool {BOOL, 8, 1}. */
#define ANYACCEL_DL_INT 0
#define ANYACCEL_DL_UINT 1
#define ANYACCEL_DL_FLOAT 2
#define ANYACCEL_DL_BFLOAT 4
#define ANYACCEL_DL_BOOL 6

/* An element type, laid out as DLPack's DLDataType. lanes is always 1 here. */
typedef struct AnyaccelDataType {
    uint8_t code;   /* ANYACCEL_DL_* */
    uint8_t bits;   /* 8, 16, 32 or 64 */
    uint16_t lanes; /* 1 */
} AnyaccelDataType;

/* ---- Opaque handles -------------------------------------------------------------------------- */

typedef struct AnyaccelDevice_ AnyaccelDevice;
typedef struct AnyaccelBuffer_ AnyaccelBuffer;
typedef struct AnyaccelStream_ AnyaccelStream;
typedef struct AnyaccelEvent_ AnyaccelEvent;
typedef struct AnyaccelModule_ AnyaccelModule;
typedef struct AnyaccelKernel_ AnyaccelKernel;

/* ---- Argument structs (struct_size set by the host) ------------------------------------------ */

/* What a device is. The host zeroes the struct, sets struct_size and calls device_info; the
 * plugin fills every field that struct_size covers. Strings are NUL-terminated and truncated to
 * their arrays. The two lists are NULL-terminated arrays of NUL-terminated strings that stay
 * valid until device_close (NULL for an empty list). */
typedef struct AnyaccelDeviceInfo {
    size_t struct_size;
    /* The device's own name, e.g. "Ascend 910B". Must not be empty. */
    char name[256];
    /* Its vendor. Must not be empty. */
    char vendor[128];
    /* Driver or runtime version. */
    char driver_version[128];
    /* Total memory in bytes (> 0). */
    uint64_t memory_bytes;
    /* The largest single allocation in bytes (> 0). */
    uint64_t max_buffer_bytes;
    /* The largest work-group (total items), 1 where the notion does not apply. */
    uint64_t max_work_group_size;
    /* Compute units (cores, SMs, AI cores). */
    uint32_t compute_units;
    /* The dtypes the device holds: ANYACCEL_DTYPE_BIT(code) for each. */
    uint32_t dtype_mask;
    /* 1 when events carry device timestamps (event_elapsed_ms is then meaningful). */
    int32_t timestamps;
    /* Kernel dialects module_load accepts: "opencl-c", "spirv", "ptx", "cuda", "wgsl", or the
     * vendor's own names. NULL when the plugin has no kernels. */
    const char *const *dialects;
    /* The ops of docs/ops.md that op_supported may accept, by name. NULL when none. */
    const char *const *native_ops;
} AnyaccelDeviceInfo;

/* A tensor, laid out as DLPack's DLTensor with the data pointer replaced by a buffer handle.
 * Element [i0, i1, ...] lives at byte byte_offset + (i0 * strides[0] + i1 * strides[1] + ...) *
 * bits / 8 of the buffer. Strides are in elements, never negative, never NULL; a stride of zero
 * repeats an element (a broadcast). A rank-0 tensor (ndim 0) has one element. */
typedef struct AnyaccelTensor {
    size_t struct_size;
    /* The buffer holding the elements. */
    AnyaccelBuffer *buffer;
    /* Bytes from the start of the buffer to element [0, 0, ...]; a multiple of the element size. */
    uint64_t byte_offset;
    /* Number of dimensions. */
    int32_t ndim;
    /* Element type. */
    AnyaccelDataType dtype;
    /* ndim sizes. */
    const int64_t *shape;
    /* ndim strides in elements. */
    const int64_t *strides;
} AnyaccelTensor;

/* The kinds of an attribute value (docs/ops.md, section 1). */
#define ANYACCEL_ATTR_INT 1
#define ANYACCEL_ATTR_FLOAT 2
#define ANYACCEL_ATTR_INTS 3
#define ANYACCEL_ATTR_STR 4

/* One attribute of an op call. Only the fields of its kind are meaningful. */
typedef struct AnyaccelAttr {
    size_t struct_size;
    /* The attribute's name, as docs/ops.md writes it (`axis`, `eps`, `approximate`, ...). */
    const char *name;
    /* ANYACCEL_ATTR_*. */
    int32_t kind;
    /* ANYACCEL_ATTR_INT: the value. */
    int64_t int_value;
    /* ANYACCEL_ATTR_FLOAT: the value. */
    double float_value;
    /* ANYACCEL_ATTR_INTS: the values (NULL when ints_len is 0). */
    const int64_t *ints;
    size_t ints_len;
    /* ANYACCEL_ATTR_STR: the NUL-terminated string and its length in bytes. */
    const char *str;
    size_t str_len;
} AnyaccelAttr;

/* One call of an op of docs/ops.md. Pointers are valid for the duration of the call only: a
 * plugin that runs the op later copies what it needs (the tensors' buffers stay alive until the
 * op completes). */
typedef struct AnyaccelOpCall {
    size_t struct_size;
    /* The op's name, e.g. "matmul". */
    const char *op;
    /* Inputs in the order of docs/ops.md; an absent optional input is NULL. */
    const AnyaccelTensor *const *inputs;
    size_t num_inputs;
    /* Outputs in the order of docs/ops.md, allocated with the shapes the contract infers. */
    const AnyaccelTensor *const *outputs;
    size_t num_outputs;
    /* Attributes, each name at most once. */
    const AnyaccelAttr *attrs;
    size_t num_attrs;
} AnyaccelOpCall;

/* The source of a module, in one of the device's dialects. */
typedef struct AnyaccelModuleSource {
    size_t struct_size;
    /* One of AnyaccelDeviceInfo.dialects. */
    const char *dialect;
    /* The module: source text (not NUL-terminated) or binary words, `size` bytes. */
    const void *data;
    size_t size;
    /* Build options (e.g. "-DTILE=16"), NUL-terminated, possibly empty. */
    const char *options;
} AnyaccelModuleSource;

/* The kinds of a kernel argument. */
#define ANYACCEL_ARG_BUFFER 1
#define ANYACCEL_ARG_BYTES 2

/* One argument of a kernel launch: a byte range of a buffer, or bytes passed by value. */
typedef struct AnyaccelKernelArg {
    size_t struct_size;
    /* ANYACCEL_ARG_*. */
    int32_t kind;
    /* ANYACCEL_ARG_BUFFER: the buffer and the range [offset, offset + size). */
    AnyaccelBuffer *buffer;
    uint64_t offset;
    /* Both kinds: the size in bytes. */
    uint64_t size;
    /* ANYACCEL_ARG_BYTES: the bytes, valid for the duration of the call. */
    const void *bytes;
} AnyaccelKernelArg;

/* A kernel launch: total work items per dimension and, optionally, the work-group size. */
typedef struct AnyaccelLaunch {
    size_t struct_size;
    uint64_t global[3];
    /* The work-group size when has_local is 1; the plugin chooses when it is 0. */
    uint32_t local[3];
    int32_t has_local;
    /* The arguments, in order. */
    const AnyaccelKernelArg *args;
    size_t num_args;
} AnyaccelLaunch;

/* ---- Collectives (ABI 1.1) ----------------------------------------------------------------- */

/* A vendor's collective library (HCCL, CNCL, ...) serving groups of this plugin's devices in one
 * process (anyaccel's DeviceGroup). The host calls each collective once for all ranks, with one
 * AnyaccelCollectiveRank per rank (an array stepped by ANYACCEL_ARRAY_AT); the plugin enqueues the
 * collective on every rank's stream and returns: asynchronous, like every command. Each rank's
 * part runs after the commands submitted to its stream before, and the commands submitted after
 * see its result. The streams are distinct (the host never puts two ranks on one stream), the
 * devices may repeat.
 *
 * Contract (checked by the host before the call: the counts, the ranges inside their buffers,
 * the dtypes and ops below):
 *  - Determinism: every rank gets the same bits, on every run (a fixed reduction order).
 *  - A dtype or op the library does not take: return ANYACCEL_ERROR_UNSUPPORTED at once,
 *    enqueueing nothing; the host then stages the collective through host memory.
 *  - A rank whose stream has failed still takes part; the collective then fails on every rank's
 *    stream (their next synchronize returns the error), and no rank blocks forever. */

/* How a reduction combines the ranks. MEAN is the SUM divided by the number of ranks. */
#define ANYACCEL_REDUCE_SUM 0
#define ANYACCEL_REDUCE_MAX 1
#define ANYACCEL_REDUCE_MIN 2
#define ANYACCEL_REDUCE_MEAN 3

typedef struct AnyaccelComm_ AnyaccelComm;

/* One rank's part of a collective (struct_size set by the host). */
typedef struct AnyaccelCollectiveRank {
    size_t struct_size;
    /* The rank's stream, of the rank's device. */
    AnyaccelStream *stream;
    /* What the rank sends (all_reduce, all_gather, reduce_scatter; broadcast: the root's data,
     * NULL on the other ranks). */
    AnyaccelBuffer *send;
    uint64_t send_offset;
    /* Where the rank receives (may be the same range as send for all_reduce and broadcast). */
    AnyaccelBuffer *recv;
    uint64_t recv_offset;
} AnyaccelCollectiveRank;

typedef struct AnyaccelCollectivesApi {
    size_t struct_size;
    /* A communicator over `count` devices of this plugin, rank r on devices[r]. */
    AnyaccelStatus (*comm_create)(AnyaccelDevice *const *devices, int32_t count,
                                  AnyaccelComm **comm);
    /* Destroys a communicator; the host has synchronized every rank's stream first. */
    AnyaccelStatus (*comm_destroy)(AnyaccelComm *comm);
    /* recv of every rank = the reduction (op) of every rank's send; `count` elements each. */
    AnyaccelStatus (*all_reduce)(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                 uint64_t count, int32_t dtype, int32_t op);
    /* recv of every rank = send of rank `root`; `count` elements. */
    AnyaccelStatus (*broadcast)(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                uint64_t count, int32_t dtype, int32_t root);
    /* recv of every rank = the sends of ranks 0, 1, ..., one after the other; `count` elements
     * a send (recv holds count * ranks). */
    AnyaccelStatus (*all_gather)(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                 uint64_t count, int32_t dtype);
    /* recv of rank r = elements r * count .. (r + 1) * count of the reduction of every rank's
     * send (which holds count * ranks). */
    AnyaccelStatus (*reduce_scatter)(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                     uint64_t count, int32_t dtype, int32_t op);
} AnyaccelCollectivesApi;

/* ---- The table ------------------------------------------------------------------------------ */

/* The function table a plugin returns. It stays valid, unchanged, until the process ends. */
typedef struct AnyaccelPluginApi {
    /* sizeof(AnyaccelPluginApi) as the plugin was built. */
    size_t struct_size;
    /* ANYACCEL_PLUGIN_ABI_MAJOR and ANYACCEL_PLUGIN_ABI_MINOR as the plugin was built. */
    uint32_t abi_major;
    uint32_t abi_minor;
    /* The plugin's short name: lower-case letters, digits, '_' and '-'. Its devices are
     * `plugin:<name>:<index>`. */
    const char *name;
    /* The plugin's own version, free text. */
    const char *version;

    /* REQUIRED. The message of the last call on this thread that returned an error. Never NULL;
     * valid until this thread's next call into the plugin. */
    const char *(*last_error)(void);

    /* -- Devices ------------------------------------------------------------------------------ */

    /* REQUIRED. The number of devices. Zero is allowed (no device present); a vendor runtime
     * that cannot be used is an error (ANYACCEL_ERROR_UNAVAILABLE) with the reason. */
    AnyaccelStatus (*device_count)(int32_t *count);
    /* REQUIRED. Opens device `index` (0 <= index < count). */
    AnyaccelStatus (*device_open)(int32_t index, AnyaccelDevice **device);
    /* REQUIRED. Closes a device opened by device_open. */
    AnyaccelStatus (*device_close)(AnyaccelDevice *device);
    /* REQUIRED. Fills `info` (see AnyaccelDeviceInfo). */
    AnyaccelStatus (*device_info)(AnyaccelDevice *device, AnyaccelDeviceInfo *info);

    /* -- Memory --------------------------------------------------------------------------------
     * Offsets and sizes are in bytes; the host checks that every range lies inside its buffer.
     * Zero-byte allocations and zero-byte copies are valid. */

    /* REQUIRED. Allocates `bytes` bytes. Too much is ANYACCEL_ERROR_OUT_OF_MEMORY, never a
     * crash. */
    AnyaccelStatus (*buffer_alloc)(AnyaccelDevice *device, uint64_t bytes, AnyaccelBuffer **buffer);
    /* REQUIRED. Frees a buffer. */
    AnyaccelStatus (*buffer_free)(AnyaccelDevice *device, AnyaccelBuffer *buffer);
    /* REQUIRED. Copies `bytes` bytes from host memory `src` into dst at dst_offset. */
    AnyaccelStatus (*copy_h2d)(AnyaccelStream *stream, AnyaccelBuffer *dst, uint64_t dst_offset,
                               const void *src, uint64_t bytes);
    /* REQUIRED. Copies `bytes` bytes of src at src_offset into host memory `dst`. */
    AnyaccelStatus (*copy_d2h)(AnyaccelStream *stream, void *dst, AnyaccelBuffer *src,
                               uint64_t src_offset, uint64_t bytes);
    /* REQUIRED. Copies between buffers of the same device. The ranges never overlap. */
    AnyaccelStatus (*copy_d2d)(AnyaccelStream *stream, AnyaccelBuffer *dst, uint64_t dst_offset,
                               AnyaccelBuffer *src, uint64_t src_offset, uint64_t bytes);
    /* REQUIRED. Fills `bytes` bytes of dst at dst_offset with a pattern of pattern_size bytes
     * (1, 2 or 4; bytes is a multiple of it; the offset need not be aligned). The pattern is
     * copied before the call returns. */
    AnyaccelStatus (*fill)(AnyaccelStream *stream, AnyaccelBuffer *dst, uint64_t dst_offset,
                           uint64_t bytes, const void *pattern, uint32_t pattern_size);

    /* -- Streams ------------------------------------------------------------------------------ */

    /* REQUIRED. Creates an in-order stream. */
    AnyaccelStatus (*stream_create)(AnyaccelDevice *device, AnyaccelStream **stream);
    /* REQUIRED. Destroys a stream (the host synchronizes it first). */
    AnyaccelStatus (*stream_destroy)(AnyaccelStream *stream);
    /* REQUIRED. Waits until every command submitted so far has completed. Returns the error of
     * a command that failed since the last synchronize, and clears it. */
    AnyaccelStatus (*stream_synchronize)(AnyaccelStream *stream);
    /* REQUIRED. Makes later commands of `stream` wait until `event` (of any stream of any
     * device of this plugin) completes. An event that was never recorded is complete. If the
     * work before the event failed, the stream fails with that error. */
    AnyaccelStatus (*stream_wait_event)(AnyaccelStream *stream, AnyaccelEvent *event);

    /* -- Events ------------------------------------------------------------------------------- */

    /* REQUIRED. Creates an event (complete until it is recorded). */
    AnyaccelStatus (*event_create)(AnyaccelDevice *device, AnyaccelEvent **event);
    /* REQUIRED. Destroys an event, possibly still pending (see above). */
    AnyaccelStatus (*event_destroy)(AnyaccelEvent *event);
    /* REQUIRED. Places the event after every command submitted to `stream` so far. */
    AnyaccelStatus (*event_record)(AnyaccelEvent *event, AnyaccelStream *stream);
    /* REQUIRED. Sets *completed to 1 when the recorded point has been reached (the work before
     * it succeeded or failed), else 0. Does not wait. */
    AnyaccelStatus (*event_query)(AnyaccelEvent *event, int32_t *completed);
    /* REQUIRED. Waits until the event completes. Returns the error of the work before it, if
     * that failed. */
    AnyaccelStatus (*event_synchronize)(AnyaccelEvent *event);
    /* Optional. Milliseconds between two completed events of the same device. An event that
     * was never recorded, or has not completed, is ANYACCEL_ERROR_INVALID_ARGUMENT naming it
     * (the host checks neither). */
    AnyaccelStatus (*event_elapsed_ms)(AnyaccelEvent *start, AnyaccelEvent *end, double *ms);

    /* -- Kernels (optional: all four, or none) ------------------------------------------------ */

    /* Loads a module from source or binary. A compile error is ANYACCEL_ERROR_COMPILE_FAILED
     * with the compiler's log as the message; a dialect the device does not accept is
     * ANYACCEL_ERROR_UNSUPPORTED. */
    AnyaccelStatus (*module_load)(AnyaccelDevice *device, const AnyaccelModuleSource *source,
                                  AnyaccelModule **module);
    /* Unloads a module (its launches have completed). */
    AnyaccelStatus (*module_unload)(AnyaccelModule *module);
    /* The kernel called `name` in a module. */
    AnyaccelStatus (*kernel_get)(AnyaccelModule *module, const char *name, AnyaccelKernel **kernel);
    /* Launches a kernel on a stream. */
    AnyaccelStatus (*kernel_launch)(AnyaccelStream *stream, AnyaccelKernel *kernel,
                                    const AnyaccelLaunch *launch);

    /* -- Native ops (optional: both, or neither) ---------------------------------------------- */

    /* 1 when the device runs this call (its op, dtypes, layouts and attributes), else 0. Must
     * not fail and must not block. Called before every op_execute. */
    int32_t (*op_supported)(AnyaccelDevice *device, const AnyaccelOpCall *call);
    /* Runs an op on a stream, writing every element of every output and nothing outside them. */
    AnyaccelStatus (*op_execute)(AnyaccelStream *stream, const AnyaccelOpCall *call);

    /* -- ABI 1.1: appended (read only when struct_size covers them) ---------------------------- */

    /* Optional. Copies `bytes` bytes from `src` at src_offset, a buffer of one device of this
     * plugin, to `dst` at dst_offset, a buffer of another device of this plugin, over the chip's
     * own link, as a command of `stream` (a stream of dst's device). The host has checked both
     * ranges and orders the copy: `stream` waits on an event recorded on the source's queue
     * first, and the source's queue waits on an event recorded after the copy. NULL: copies
     * between this plugin's devices are staged through host memory. */
    AnyaccelStatus (*copy_peer)(AnyaccelStream *stream, AnyaccelBuffer *dst, uint64_t dst_offset,
                                AnyaccelBuffer *src, uint64_t src_offset, uint64_t bytes);
    /* Optional. The plugin's collective library (see "Collectives" above): NULL, or a table
     * with every function set, valid until the process ends. */
    const AnyaccelCollectivesApi *collectives;
    /* Optional, for devices whose memory is host memory (a chip that computes in host RAM, or
     * shares it): sets *ptr to the host address of byte 0 of `buffer`, valid until buffer_free.
     * The host then reads and writes the bytes itself, only while no command of any stream uses
     * them (it synchronizes the stream first and submits nothing meanwhile); a copy between such
     * a device and any other takes one copy instead of two. Setting *ptr to NULL says that this
     * buffer is not host memory. */
    AnyaccelStatus (*buffer_host_ptr)(AnyaccelBuffer *buffer, void **ptr);
} AnyaccelPluginApi;

/* The one symbol a plugin exports. Returns the plugin's table, or NULL when the plugin cannot
 * serve a host of this ABI version (the host then reports the plugin as unavailable). The host
 * calls it once, from one thread, before any other call. */
typedef const AnyaccelPluginApi *(*AnyaccelPluginGetApiFn)(uint32_t host_abi_major,
                                                         uint32_t host_abi_minor);

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t host_abi_major,
                                                                        uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* ANYACCEL_PLUGIN_H */
