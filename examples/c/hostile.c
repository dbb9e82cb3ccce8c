/*
 * hostile.c: feeds the C ABI what an attacker (or a fuzzer) would, and checks the documented
 * answer of every call: its status, that its out-parameters hold NULL or 0 after a failure, and
 * that it wrote no byte outside the memory it was given (every host region sits between guard
 * canaries that are checked after the call).
 *
 *   - out-parameters of every kind of function are cleared on failure (they hold a sentinel
 *     before the call): typed op wrappers, reductions with an axis list, cast, info structs;
 *   - event timing across two runtimes and two devices is refused, across two queues of one
 *     device it is measured;
 *   - plugin libraries that are rejected (no entry symbol, another ABI major) and the accepted
 *     reference plugin are opened through anyaccel_runtime_load_plugin (run it under valgrind
 *     to see that opening them loses no memory);
 *   - layouts whose extent overflows 64 bits, DLPack tensors whose offsets wrap, whose ndim is
 *     negative or huge; broadcast views of 2^62 elements and more read into small host
 *     buffers.
 *
 * Exits 0 when every check passed; prints each check with the message it got.
 *
 *   ./hostile [--plugin libanyaccel_ref.so] [--rejected lib.so]...
 */
#include <anyaccel.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed = 0, failed = 0;

#define INVALID ANYACCEL_ERROR_INVALID_ARGUMENT
#define OOB ANYACCEL_ERROR_OUT_OF_BOUNDS
/* A value no call hands out: an out-parameter must not keep it after a failed call. */
#define SENTINEL ((void *)(uintptr_t)0x5a5a5a00u)

static void record(int ok, const char *what, const char *detail) {
    if (ok) {
        passed++;
        printf("ok   %-60s %s\n", what, detail ? detail : "");
    } else {
        failed++;
        printf("FAIL %-60s %s\n", what, detail ? detail : "");
    }
}

/* The call returned `got`; it must be one of `want` / `want2` (0 when only one is allowed),
 * with a message that contains `needle`; `cleared` is the check of its out-parameters. */
static void report(const char *what, anyaccel_status got, anyaccel_status want,
                   anyaccel_status want2, const char *needle, int cleared) {
    const char *msg = anyaccel_last_error_message();
    int status_ok = got == want || (want2 != 0 && got == want2);
    int msg_ok = got == ANYACCEL_OK || (msg && strstr(msg, needle) != NULL);
    char detail[1024];
    snprintf(detail, sizeof detail, "-> %s (%d)%s%s%s%s%s", anyaccel_status_name(got), got,
             got == ANYACCEL_OK ? "" : ": ", got == ANYACCEL_OK ? "" : msg,
             status_ok ? "" : " [unexpected status]", msg_ok ? "" : " [message lacks the needle]",
             cleared ? "" : " [out-parameter not cleared]");
    if (!msg_ok) {
        size_t n = strlen(detail);
        snprintf(detail + n, sizeof detail - n, " (needle: \"%s\")", needle);
    }
    record(status_ok && msg_ok && cleared, what, detail);
}

/* Makes the call first, then evaluates `cleared` (C leaves the order of a function's argument
 * evaluations unspecified, so the two must not be arguments of one call). */
#define expect(what, call, want, want2, needle, cleared)                                        \
    do {                                                                                        \
        anyaccel_status expect_status_ = (call);                                                \
        report((what), expect_status_, (want), (want2), (needle), (cleared));                   \
    } while (0)

static void check(const char *what, int cond) { record(cond, what, NULL); }

/* ---- guarded host memory: canaries before and after the region a call may touch ---------- */

enum { GUARD = 64 };
#define CANARY 0xA5
#define FILL 0xCC

typedef struct {
    unsigned char *base; /* GUARD canaries, `len` bytes of region, GUARD canaries */
    size_t len;
} guarded;

static guarded guarded_new(size_t len) {
    guarded g = {malloc(len + 2 * GUARD), len};
    if (!g.base) {
        fprintf(stderr, "out of host memory\n");
        exit(2);
    }
    memset(g.base, CANARY, GUARD);
    memset(g.base + GUARD, FILL, len);
    memset(g.base + GUARD + len, CANARY, GUARD);
    return g;
}

static void *guarded_region(guarded g) { return g.base + GUARD; }

/* The canaries are intact and, when `untouched`, so is the region. */
static int guarded_intact(guarded g, int untouched) {
    for (size_t i = 0; i < GUARD; i++)
        if (g.base[i] != CANARY || g.base[GUARD + g.len + i] != CANARY) return 0;
    if (untouched)
        for (size_t i = 0; i < g.len; i++)
            if (g.base[GUARD + i] != FILL) return 0;
    return 1;
}

static void guarded_check_free(const char *what, guarded g, int untouched) {
    char line[256];
    snprintf(line, sizeof line, "%s: guard canaries intact%s", what,
             untouched ? ", region untouched" : "");
    check(line, guarded_intact(g, untouched));
    free(g.base);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef struct {
    anyaccel_runtime_t *rt;
    anyaccel_device_t *dev;
    anyaccel_queue_t *q;
} context;

static int context_new(context *c) {
    memset(c, 0, sizeof *c);
    if (anyaccel_runtime_create_with_backends("cpu", &c->rt) != ANYACCEL_OK ||
        anyaccel_runtime_find_device(c->rt, "cpu:0", &c->dev) != ANYACCEL_OK ||
        anyaccel_queue_create(c->dev, &c->q) != ANYACCEL_OK) {
        fprintf(stderr, "setup failed: %s\n", anyaccel_last_error_message());
        return 0;
    }
    return 1;
}

static void context_free(context *c) {
    anyaccel_queue_destroy(c->q);
    anyaccel_runtime_destroy(c->rt);
}

static anyaccel_event_t *finished_event(anyaccel_queue_t *q) {
    anyaccel_event_t *e = NULL;
    if (anyaccel_queue_record_event(q, &e) != ANYACCEL_OK || anyaccel_event_wait(e) != ANYACCEL_OK)
        fprintf(stderr, "event failed: %s\n", anyaccel_last_error_message());
    return e;
}

/* ---- 1. out-parameters are cleared on failure --------------------------------------------- */

typedef anyaccel_status (*reduce_fn)(anyaccel_queue_t *, anyaccel_tensor_t *, const int64_t *,
                                     size_t, int32_t, anyaccel_tensor_t **);

static void out_parameter_checks(context *c) {
    int64_t shape[2] = {2, 3};
    anyaccel_tensor_t *x = NULL;
    if (anyaccel_tensor_alloc(c->dev, ANYACCEL_DTYPE_F32, shape, 2, &x) != ANYACCEL_OK) {
        record(0, "tensor_alloc for the out-parameter checks", anyaccel_last_error_message());
        return;
    }
    struct {
        const char *name;
        reduce_fn f;
    } reductions[] = {{"sum", anyaccel_sum}, {"mean", anyaccel_mean}, {"argmax", anyaccel_argmax}};
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++) {
        anyaccel_tensor_t *out = SENTINEL;
        char what[96];
        snprintf(what, sizeof what, "%s(axes NULL, n_axes 2) clears out", reductions[i].name);
        expect(what, reductions[i].f(c->q, x, NULL, 2, 0, &out), INVALID, 0,
               "argument `axes` is NULL but its length is 2", out == NULL);
    }
    anyaccel_tensor_t *out = SENTINEL;
    expect("cast(dtype 99) clears out", anyaccel_cast(c->q, x, 99, &out), INVALID, 0,
           "argument `dtype` is 99", out == NULL);
    out = SENTINEL;
    expect("gelu(approximate_tanh 7) clears out", anyaccel_gelu(c->q, x, 7, &out), INVALID, 0,
           "argument `approximate_tanh` is 7", out == NULL);
    out = SENTINEL;
    expect("softmax(axis 5 of 2) clears out", anyaccel_softmax(c->q, x, 5, &out), INVALID, 0,
           "axis", out == NULL);
    out = SENTINEL;
    expect("add(queue NULL) clears out", anyaccel_add(NULL, x, x, &out), INVALID, 0,
           "argument `queue` is NULL", out == NULL);
    out = SENTINEL;
    expect("matmul(2x3 @ 2x3) clears out", anyaccel_matmul(c->q, x, x, NULL, &out), INVALID, 0,
           "matmul", out == NULL);

    anyaccel_tensor_t *outs[3] = {SENTINEL, SENTINEL, SENTINEL};
    expect("op(\"no_such_op\") clears outputs", anyaccel_op(c->q, "no_such_op", &x, 1, NULL, 0,
                                                            outs, 3),
           INVALID, 0, "no_such_op", outs[0] == NULL && outs[1] == NULL && outs[2] == NULL);
    size_t n = 77;
    expect("op_output_count(\"no_such_op\") clears out",
           anyaccel_op_output_count("no_such_op", &n), INVALID, 0, "no_such_op", n == 0);

    anyaccel_runtime_t *rt = SENTINEL;
    expect("runtime_create_with_backends(\"nope\") clears out",
           anyaccel_runtime_create_with_backends("nope", &rt), INVALID, 0, "nope", rt == NULL);
    anyaccel_device_t *dev = SENTINEL;
    expect("runtime_device(999) clears out", anyaccel_runtime_device(c->rt, 999, &dev), OOB, 0,
           "index 999", dev == NULL);
    dev = SENTINEL;
    expect("runtime_find_device(\"cpu:7\") clears out",
           anyaccel_runtime_find_device(c->rt, "cpu:7", &dev), INVALID, 0, "cpu:7", dev == NULL);
    n = 77;
    expect("runtime_device_count(NULL) clears out", anyaccel_runtime_device_count(NULL, &n),
           INVALID, 0, "argument `runtime` is NULL", n == 0);
    n = 77;
    expect("runtime_backend_count(NULL) clears out", anyaccel_runtime_backend_count(NULL, &n),
           INVALID, 0, "argument `runtime` is NULL", n == 0);
    int32_t yes = 77;
    expect("device_supports_dtype(99) clears out",
           anyaccel_device_supports_dtype(c->dev, 99, &yes), INVALID, 0, "argument `dtype` is 99",
           yes == 0);
    anyaccel_queue_t *q = SENTINEL;
    expect("queue_create(NULL) clears out", anyaccel_queue_create(NULL, &q), INVALID, 0,
           "argument `device` is NULL", q == NULL);
    anyaccel_buffer_t *b = SENTINEL;
    expect("buffer_alloc(NULL) clears out", anyaccel_buffer_alloc(NULL, 16, &b), INVALID, 0,
           "argument `device` is NULL", b == NULL);
    n = 77;
    expect("buffer_size(NULL) clears out", anyaccel_buffer_size(NULL, &n), INVALID, 0,
           "argument `buffer` is NULL", n == 0);
    anyaccel_tensor_t *t = SENTINEL;
    expect("tensor_alloc(dtype 99) clears out",
           anyaccel_tensor_alloc(c->dev, 99, shape, 2, &t), INVALID, 0, "argument `dtype` is 99",
           t == NULL);
    anyaccel_event_t *e = SENTINEL;
    expect("queue_record_event(NULL) clears out", anyaccel_queue_record_event(NULL, &e), INVALID,
           0, "argument `queue` is NULL", e == NULL);
    int32_t done = 77;
    expect("event_query(NULL) clears done", anyaccel_event_query(NULL, &done), INVALID, 0,
           "argument `event` is NULL", done == 0);
    double ms = 77.0;
    expect("event_elapsed_ms(NULL, NULL) clears ms", anyaccel_event_elapsed_ms(NULL, NULL, &ms),
           INVALID, 0, "argument `start` is NULL", ms == 0.0);

    /* Info structs: every field after struct_size is cleared; nothing past the struct is
     * written. */
    guarded g = guarded_new(sizeof(anyaccel_backend_info_t));
    anyaccel_backend_info_t *bi = guarded_region(g);
    bi->struct_size = sizeof *bi;
    bi->name = SENTINEL;
    bi->reason = SENTINEL;
    bi->available = 77;
    bi->device_count = 77;
    expect("runtime_backend_info(999) clears info",
           anyaccel_runtime_backend_info(c->rt, 999, bi), OOB, 0, "index 999",
           bi->name == NULL && bi->reason == NULL && bi->available == 0 &&
               bi->device_count == 0 && bi->struct_size == sizeof *bi);
    guarded_check_free("runtime_backend_info(999)", g, 0);

    g = guarded_new(sizeof(anyaccel_device_info_t));
    anyaccel_device_info_t *di = guarded_region(g);
    memset(di, 0x77, sizeof *di);
    di->struct_size = sizeof *di;
    expect("device_info(NULL device) clears info", anyaccel_device_info(NULL, di), INVALID, 0,
           "argument `device` is NULL",
           di->id == NULL && di->name == NULL && di->driver_version == NULL &&
               di->memory_bytes == 0 && di->timestamps == 0);
    expect("device_info(cpu:0) fills it", anyaccel_device_info(c->dev, di), ANYACCEL_OK, 0, "",
           di->id != NULL && strcmp(di->id, "cpu:0") == 0);
    guarded_check_free("device_info", g, 0);

    /* A struct_size too small is refused, and nothing past struct_size is written. */
    g = guarded_new(sizeof(size_t));
    size_t *small = guarded_region(g);
    *small = sizeof(size_t);
    expect("device_info(struct_size 8) is refused",
           anyaccel_device_info(c->dev, (anyaccel_device_info_t *)small), INVALID, 0,
           "struct_size is 8", *small == sizeof(size_t));
    guarded_check_free("device_info(struct_size 8)", g, 0);

    /* Shape into too small an array: nothing written. */
    g = guarded_new(sizeof(int64_t));
    expect("tensor_shape(capacity 1 of 2) is refused",
           anyaccel_tensor_shape(x, guarded_region(g), 1), INVALID, 0, "capacity", 1);
    guarded_check_free("tensor_shape(capacity 1)", g, 1);

    anyaccel_tensor_destroy(x);
}

/* ---- 2. event timing ----------------------------------------------------------------------- */

static void elapsed_checks(context *a, const char *plugin) {
    context b;
    if (!context_new(&b)) {
        record(0, "second runtime", anyaccel_last_error_message());
        return;
    }
    anyaccel_event_t *s = finished_event(a->q), *e = finished_event(b.q);
    double ms = 77.0;
    expect("event_elapsed_ms(events of two runtimes) is refused",
           anyaccel_event_elapsed_ms(s, e, &ms), INVALID, 0,
           "event `start` is of device cpu:0 of one runtime and event `end` of device cpu:0 of "
           "another runtime",
           ms == 0.0);
    anyaccel_event_destroy(e);
    context_free(&b);

    anyaccel_queue_t *q2 = NULL;
    anyaccel_queue_create(a->dev, &q2);
    e = finished_event(q2);
    ms = -1.0;
    expect("event_elapsed_ms(two queues of one device) is measured",
           anyaccel_event_elapsed_ms(s, e, &ms), ANYACCEL_OK, 0, "", ms >= 0.0 && ms < 60000.0);
    anyaccel_event_destroy(e);
    anyaccel_queue_destroy(q2);

    if (plugin) {
        anyaccel_runtime_t *rt = a->rt;
        anyaccel_device_t *pdev = NULL;
        anyaccel_queue_t *pq = NULL;
        if (anyaccel_runtime_load_plugin(rt, plugin) != ANYACCEL_OK ||
            anyaccel_runtime_find_device(rt, "plugin:ref:0", &pdev) != ANYACCEL_OK ||
            anyaccel_queue_create(pdev, &pq) != ANYACCEL_OK) {
            record(0, "the reference plugin's device", anyaccel_last_error_message());
        } else {
            e = finished_event(pq);
            ms = 77.0;
            expect("event_elapsed_ms(events of two devices) is refused",
                   anyaccel_event_elapsed_ms(s, e, &ms), INVALID, 0,
                   "event `start` is of device cpu:0 and event `end` of device plugin:ref:0",
                   ms == 0.0);
            anyaccel_event_destroy(e);
            anyaccel_queue_destroy(pq);
        }
    } else {
        printf("skip event_elapsed_ms(events of two devices): no --plugin given\n");
    }
    anyaccel_event_destroy(s);
}

/* ---- 3. plugin libraries, rejected and accepted -------------------------------------------- */

static void plugin_checks(const char *plugin, const char **rejected, int n_rejected) {
    /* Each library is opened several times, each time in a fresh runtime: a loader that loses
     * memory per library shows under valgrind as one loss per open. */
    for (int round = 0; round < 3; round++) {
        anyaccel_runtime_t *rt = NULL;
        if (anyaccel_runtime_create_with_backends("cpu", &rt) != ANYACCEL_OK) {
            record(0, "runtime for the plugin checks", anyaccel_last_error_message());
            return;
        }
        for (int i = 0; i < n_rejected; i++) {
            char what[512];
            snprintf(what, sizeof what, "load_plugin(%s) is refused", rejected[i]);
            expect(what, anyaccel_runtime_load_plugin(rt, rejected[i]), ANYACCEL_ERROR_UNAVAILABLE,
                   0, "plugin", 1);
        }
        if (plugin) {
            expect("load_plugin(reference plugin)", anyaccel_runtime_load_plugin(rt, plugin),
                   ANYACCEL_OK, 0, "", 1);
            expect("load_plugin(reference plugin) again is refused",
                   anyaccel_runtime_load_plugin(rt, plugin), INVALID, 0, "plugin:ref", 1);
        }
        anyaccel_runtime_destroy(rt);
    }
}

/* ---- 4. layouts, DLPack and reads whose sizes overflow ------------------------------------ */

static void layout_checks(context *c) {
    enum { BYTES = 48 };
    anyaccel_buffer_t *buf = NULL;
    anyaccel_buffer_alloc(c->dev, BYTES, &buf);
    uint8_t pattern = 0x3C;
    anyaccel_queue_fill(c->q, buf, 0, BYTES, &pattern, 1);

    struct {
        const char *what;
        int64_t shape[2], strides[2];
    } layouts[] = {
        {"tensor_create([4,3] strides [INT64_MAX,1]) is refused", {4, 3}, {INT64_MAX, 1}},
        {"tensor_create([5,1] strides [2^62,1]) is refused", {5, 1}, {(int64_t)1 << 62, 1}},
        {"tensor_create([2,3] strides [INT64_MIN,1]) is refused", {2, 3}, {INT64_MIN, 1}},
    };
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        anyaccel_tensor_t *t = SENTINEL;
        anyaccel_status s = anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, layouts[i].shape,
                                                   layouts[i].strides, 2, 0, &t);
        expect(layouts[i].what, s, INVALID, OOB, "", t == NULL);
        if (s == ANYACCEL_OK) anyaccel_tensor_destroy(t);
    }
    /* No memory was touched: the buffer still holds the fill. */
    guarded g = guarded_new(BYTES);
    anyaccel_status s = anyaccel_queue_read(c->q, buf, 0, guarded_region(g), BYTES);
    int same = s == ANYACCEL_OK;
    for (size_t i = 0; same && i < BYTES; i++) same = ((uint8_t *)guarded_region(g))[i] == 0x3C;
    check("the buffer is untouched by the refused layouts", same);
    guarded_check_free("queue_read(48 bytes)", g, 0);

    /* A read range whose end wraps. */
    g = guarded_new(8);
    expect("queue_read(offset SIZE_MAX-3, 8 bytes) is refused",
           anyaccel_queue_read(c->q, buf, SIZE_MAX - 3, guarded_region(g), 8), OOB, INVALID, "",
           1);
    guarded_check_free("queue_read(offset SIZE_MAX-3)", g, 1);

    /* A broadcast view of 2^62 + 1 f32 elements (4 * (2^62 + 1) wraps to 4 bytes) read into a
     * 4-byte host buffer: refused, and no allocation of its size is attempted. */
    int64_t huge[1] = {((int64_t)1 << 62) + 1}, zero[1] = {0};
    anyaccel_tensor_t *t = NULL;
    s = anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, huge, zero, 1, 0, &t);
    if (s != ANYACCEL_OK) {
        expect("tensor_create(broadcast [2^62+1]) is refused", s, INVALID, OOB, "", t == NULL);
    } else {
        g = guarded_new(4);
        expect("tensor_read(broadcast [2^62+1] into 4 bytes) is refused",
               anyaccel_tensor_read(c->q, t, guarded_region(g), 4), INVALID, OOB, "", 1);
        guarded_check_free("tensor_read(broadcast [2^62+1])", g, 1);
        anyaccel_tensor_destroy(t);
    }
    /* Shape {2^62} of f32: 2^64 bytes, which wraps to 0; a 0-byte read must not be OK. */
    huge[0] = (int64_t)1 << 62;
    t = NULL;
    s = anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, huge, zero, 1, 0, &t);
    if (s != ANYACCEL_OK) {
        expect("tensor_create(broadcast [2^62]) is refused", s, INVALID, OOB, "", t == NULL);
    } else {
        g = guarded_new(0);
        expect("tensor_read(broadcast [2^62] into 0 bytes) is refused",
               anyaccel_tensor_read(c->q, t, guarded_region(g), 0), INVALID, OOB, "", 1);
        guarded_check_free("tensor_read(broadcast [2^62], 0 bytes)", g, 1);
        anyaccel_tensor_destroy(t);
    }
    anyaccel_buffer_free(buf);
}

typedef struct {
    DLManagedTensorVersioned managed;
    int64_t shape[2];
    int64_t strides[2];
    int deleted;
} owned_tensor;

static void owned_deleter(DLManagedTensorVersioned *self) {
    ((owned_tensor *)self->manager_ctx)->deleted++;
}

static void owned_init(owned_tensor *o, void *data) {
    memset(o, 0, sizeof *o);
    o->shape[0] = 2;
    o->shape[1] = 4;
    o->strides[0] = 4;
    o->strides[1] = 1;
    o->managed.version.major = 1;
    o->managed.manager_ctx = o;
    o->managed.deleter = owned_deleter;
    o->managed.dl_tensor.data = data;
    o->managed.dl_tensor.device.device_type = kDLCPU;
    o->managed.dl_tensor.ndim = 2;
    o->managed.dl_tensor.dtype.code = kDLFloat;
    o->managed.dl_tensor.dtype.bits = 32;
    o->managed.dl_tensor.dtype.lanes = 1;
    o->managed.dl_tensor.shape = o->shape;
    o->managed.dl_tensor.strides = o->strides;
}

static void dlpack_checks(context *c) {
    guarded g = guarded_new(32);
    void *data = guarded_region(g);
    struct {
        const char *what;
        void *data;
        uint64_t byte_offset;
    } offsets[] = {
        {"from_dlpack(byte_offset 2^63 - 4) is refused", data, ((uint64_t)1 << 63) - 4},
        {"from_dlpack(byte_offset 2^63) is refused", data, (uint64_t)1 << 63},
        {"from_dlpack(byte_offset 2^64 - 4) is refused", data, UINT64_MAX - 3},
        {"from_dlpack(data + byte_offset wraps) is refused", (void *)(uintptr_t)(UINTPTR_MAX - 15),
         64},
    };
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        owned_tensor o;
        owned_init(&o, offsets[i].data);
        o.managed.dl_tensor.byte_offset = offsets[i].byte_offset;
        anyaccel_tensor_t *t = SENTINEL;
        int32_t zero_copy = 77;
        anyaccel_status s = anyaccel_tensor_from_dlpack(c->rt, &o.managed, &t, &zero_copy);
        expect(offsets[i].what, s, INVALID, OOB, "",
               t == NULL && zero_copy == 0 && o.deleted == 0);
        if (s == ANYACCEL_OK) anyaccel_tensor_destroy(t);
    }
    int32_t ndims[] = {-1, INT32_MIN, INT32_MAX, 1 << 20};
    for (size_t i = 0; i < sizeof ndims / sizeof ndims[0]; i++) {
        owned_tensor o;
        owned_init(&o, data);
        o.managed.dl_tensor.ndim = ndims[i];
        o.managed.dl_tensor.shape = NULL;
        o.managed.dl_tensor.strides = NULL;
        anyaccel_tensor_t *t = SENTINEL;
        char what[96];
        snprintf(what, sizeof what, "from_dlpack(ndim %d, shape NULL) is refused", (int)ndims[i]);
        anyaccel_status s = anyaccel_tensor_from_dlpack(c->rt, &o.managed, &t, NULL);
        expect(what, s, INVALID, 0, "ndim", t == NULL && o.deleted == 0);
        if (s == ANYACCEL_OK) anyaccel_tensor_destroy(t);
    }
    guarded_check_free("DLPack producer memory", g, 1);
}

int main(int argc, char **argv) {
    const char *plugin = NULL;
    const char *rejected[16];
    int n_rejected = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) {
            plugin = argv[++i];
        } else if (strcmp(argv[i], "--rejected") == 0 && i + 1 < argc && n_rejected < 16) {
            rejected[n_rejected++] = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--plugin libanyaccel_ref.so] [--rejected lib.so]...\n",
                    argv[0]);
            return 2;
        }
    }
    context c;
    if (!context_new(&c)) return 1;
    printf("== out-parameters\n");
    out_parameter_checks(&c);
    printf("== event timing\n");
    elapsed_checks(&c, plugin);
    printf("== plugin libraries\n");
    plugin_checks(plugin, rejected, n_rejected);
    printf("== layouts and reads whose sizes overflow\n");
    layout_checks(&c);
    printf("== DLPack\n");
    dlpack_checks(&c);
    context_free(&c);
    printf("hostile: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
