/*
 * bad_input.c: feeds the C ABI what a careless program would, and checks that every call
 * returns the right status with a message that says what was wrong, and that nothing crashes:
 * NULL in every pointer argument, double destroy, use after destroy, handles of the wrong type
 * and values that are no handle, wrong dtypes, mismatched shapes, objects of another device,
 * bad op names and attributes, and bad DLPack tensors (with ownership left to the caller on
 * failure, and the deleter called exactly once on success). Also checks that the error message
 * is per thread.
 *
 * Exits 0 when every check passed; prints each check with the message it got.
 *
 *   ./bad_input              the other-device checks use every compiled-in backend
 *   ./bad_input cpu,vulkan   ... only the named backends
 */
#include <anyaccel.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed = 0, failed = 0;

/* The call must return `want`, and the thread's message must contain `needle`. */
static void expect(const char *what, anyaccel_status got, anyaccel_status want,
                   const char *needle) {
    const char *msg = anyaccel_last_error_message();
    int ok = got == want && (want == ANYACCEL_OK || (msg && strstr(msg, needle) != NULL));
    if (ok) {
        passed++;
        if (want == ANYACCEL_OK)
            printf("ok   %-52s -> ok\n", what);
        else
            printf("ok   %-52s -> %s: %s\n", what, anyaccel_status_name(got), msg);
    } else {
        failed++;
        printf("FAIL %-52s -> %s (%d), expected %s (%d) with \"%s\"; message: %s\n", what,
               anyaccel_status_name(got), got, anyaccel_status_name(want), want, needle,
               msg ? msg : "(NULL)");
    }
}

static void expect_true(const char *what, int cond) {
    if (cond) {
        passed++;
        printf("ok   %s\n", what);
    } else {
        failed++;
        printf("FAIL %s\n", what);
    }
}

#define INVALID ANYACCEL_ERROR_INVALID_ARGUMENT

/* A C-owned DLPack tensor: counts deleter calls. */
typedef struct {
    DLManagedTensorVersioned managed;
    int64_t shape[2];
    int64_t strides[2];
    int deleted;
} owned_tensor;

static void owned_deleter(DLManagedTensorVersioned *self) {
    ((owned_tensor *)self->manager_ctx)->deleted++;
}

static void owned_init(owned_tensor *o, void *data, int64_t rows, int64_t cols) {
    memset(o, 0, sizeof *o);
    o->shape[0] = rows;
    o->shape[1] = cols;
    o->strides[0] = cols;
    o->strides[1] = 1;
    o->managed.version.major = 1;
    o->managed.version.minor = 0;
    o->managed.manager_ctx = o;
    o->managed.deleter = owned_deleter;
    o->managed.dl_tensor.data = data;
    o->managed.dl_tensor.device.device_type = kDLCPU;
    o->managed.dl_tensor.device.device_id = 0;
    o->managed.dl_tensor.ndim = 2;
    o->managed.dl_tensor.dtype.code = kDLFloat;
    o->managed.dl_tensor.dtype.bits = 32;
    o->managed.dl_tensor.dtype.lanes = 1;
    o->managed.dl_tensor.shape = o->shape;
    o->managed.dl_tensor.strides = o->strides;
    o->managed.dl_tensor.byte_offset = 0;
}

static void *other_thread(void *arg) {
    (void)arg;
    anyaccel_status s = anyaccel_buffer_size(NULL, NULL);
    int *ok = malloc(sizeof *ok);
    if (ok) *ok = s == INVALID && strstr(anyaccel_last_error_message(), "anyaccel_buffer_size");
    return ok;
}

static void dlpack_checks(anyaccel_runtime_t *rt, anyaccel_queue_t *q) {
    /* 8-byte aligned host data: imported without a copy, and shared. */
    static double storage[4]; /* 32 bytes, 8-aligned */
    float *data = (float *)storage;
    for (int i = 0; i < 8; i++) data[i] = (float)i;
    owned_tensor o;
    anyaccel_tensor_t *t = NULL;
    int32_t zero_copy = -1;

    expect("from_dlpack(NULL runtime)", anyaccel_tensor_from_dlpack(NULL, NULL, &t, NULL), INVALID,
           "runtime");
    expect("from_dlpack(src NULL)", anyaccel_tensor_from_dlpack(rt, NULL, &t, NULL), INVALID,
           "src");
    owned_init(&o, data, 2, 4);
    expect("from_dlpack(out NULL)", anyaccel_tensor_from_dlpack(rt, &o.managed, NULL, NULL),
           INVALID, "out");

    owned_init(&o, data, 2, 4);
    o.managed.version.major = 2;
    expect("from_dlpack(DLPack major 2)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           ANYACCEL_ERROR_ABI_MISMATCH, "major version 1");
    owned_init(&o, data, 2, 4);
    o.managed.dl_tensor.device.device_type = kDLCUDA;
    expect("from_dlpack(kDLCUDA memory)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           ANYACCEL_ERROR_UNSUPPORTED, "kDLCUDA");
    owned_init(&o, data, 2, 4);
    o.managed.dl_tensor.dtype.code = kDLComplex;
    expect("from_dlpack(complex dtype)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           ANYACCEL_ERROR_UNSUPPORTED, "dtype");
    owned_init(&o, data, 2, 4);
    o.managed.dl_tensor.dtype.lanes = 4;
    expect("from_dlpack(4 lanes)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           ANYACCEL_ERROR_UNSUPPORTED, "lanes 4");
    owned_init(&o, data, 2, 4);
    o.strides[1] = -1;
    expect("from_dlpack(negative stride)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           ANYACCEL_ERROR_UNSUPPORTED, "negative");
    owned_init(&o, data, 2, 4);
    o.managed.dl_tensor.shape = NULL;
    expect("from_dlpack(shape NULL)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           INVALID, "shape");
    owned_init(&o, NULL, 2, 4);
    expect("from_dlpack(data NULL)", anyaccel_tensor_from_dlpack(rt, &o.managed, &t, NULL),
           INVALID, "data is NULL");
    expect_true("failed imports leave the tensor to the caller (deleter not called)",
                o.deleted == 0 && t == NULL);

    /* Zero-copy import: writes through anyaccel land in the caller's memory. */
    owned_init(&o, data, 2, 4);
    expect("from_dlpack(aligned f32 2x4)",
           anyaccel_tensor_from_dlpack(rt, &o.managed, &t, &zero_copy), ANYACCEL_OK, "");
    expect_true("aligned host memory is imported without a copy", zero_copy == 1);
    {
        float twos[8] = {2, 2, 2, 2, 2, 2, 2, 2};
        expect("tensor_write into imported memory", anyaccel_tensor_write(q, t, twos, sizeof twos),
               ANYACCEL_OK, "");
        expect("queue_finish", anyaccel_queue_finish(q), ANYACCEL_OK, "");
        expect_true("the write is visible in the caller's array", data[0] == 2 && data[7] == 2);
    }
    expect_true("the deleter waits while the tensor lives", o.deleted == 0);
    expect("tensor_destroy(imported)", anyaccel_tensor_destroy(t), ANYACCEL_OK, "");
    expect_true("destroying the import calls the deleter once", o.deleted == 1);

    /* Unaligned data: copied once, and the deleter is called right away. */
    {
        owned_tensor u;
        anyaccel_tensor_t *c = NULL;
        owned_init(&u, (char *)storage + 4, 1, 4);
        expect("from_dlpack(data not 8-aligned)",
               anyaccel_tensor_from_dlpack(rt, &u.managed, &c, &zero_copy), ANYACCEL_OK, "");
        expect_true("unaligned memory is copied and released at once",
                    zero_copy == 0 && u.deleted == 1);
        float got[4] = {0};
        expect("tensor_read(copied import)", anyaccel_tensor_read(q, c, got, sizeof got),
               ANYACCEL_OK, "");
        expect_true("the copy holds the caller's values", got[0] == 2 && got[3] == 2);
        expect("tensor_destroy(copied import)", anyaccel_tensor_destroy(c), ANYACCEL_OK, "");
    }

    /* A read-only import is an input, never an output. */
    {
        owned_tensor r;
        anyaccel_tensor_t *ro = NULL, *sum = NULL;
        owned_init(&r, data, 2, 4);
        r.managed.flags = DLPACK_FLAG_BITMASK_READ_ONLY;
        expect("from_dlpack(read-only)", anyaccel_tensor_from_dlpack(rt, &r.managed, &ro, NULL),
               ANYACCEL_OK, "");
        float v[8] = {0};
        expect("tensor_write(read-only import)", anyaccel_tensor_write(q, ro, v, sizeof v),
               INVALID, "read-only");
        expect("add(read-only, read-only) as inputs", anyaccel_add(q, ro, ro, &sum), ANYACCEL_OK,
               "");
        expect("add_into(out = read-only import)", anyaccel_add_into(q, sum, sum, ro), INVALID,
               "read-only");
        anyaccel_buffer_t *rb = NULL;
        expect("tensor_buffer(read-only import)", anyaccel_tensor_buffer(ro, &rb), ANYACCEL_OK,
               "");
        expect("queue_fill(read-only buffer)",
               anyaccel_queue_fill(q, rb, 0, 32, (const uint8_t[]){0}, 1), INVALID, "read-only");
        anyaccel_buffer_free(rb);
        anyaccel_tensor_destroy(sum);
        anyaccel_tensor_destroy(ro);
        /* Queued commands hold the memory until they have run. */
        expect("queue_finish", anyaccel_queue_finish(q), ANYACCEL_OK, "");
        expect_true("read-only import released once", r.deleted == 1);
    }

    expect("to_dlpack(NULL tensor)", anyaccel_tensor_to_dlpack(NULL, q, NULL), INVALID, "out");
    {
        DLManagedTensorVersioned *m = NULL;
        expect("to_dlpack(NULL tensor, out given)", anyaccel_tensor_to_dlpack(NULL, NULL, &m),
               INVALID, "tensor");
        expect_true("out is NULL after a failed export", m == NULL);
    }
}

/* A buffer and a tensor of a second device (vulkan:0, opencl:0, ...) used with a cpu queue. */
static void other_device_checks(const char *backends, anyaccel_queue_t *cpu_queue,
                                anyaccel_tensor_t *cpu_tensor) {
    anyaccel_runtime_t *rt = NULL;
    size_t n = 0;
    anyaccel_status s = backends ? anyaccel_runtime_create_with_backends(backends, &rt)
                                 : anyaccel_runtime_create(&rt);
    expect("runtime for the other-device checks", s, ANYACCEL_OK, "");
    if (s != ANYACCEL_OK) return;
    anyaccel_runtime_device_count(rt, &n);
    int tested = 0;
    for (size_t i = 0; i < n && !tested; i++) {
        anyaccel_device_t *dev = NULL;
        anyaccel_device_info_t info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (anyaccel_runtime_device(rt, i, &dev) != ANYACCEL_OK ||
            anyaccel_device_info(dev, &info) != ANYACCEL_OK || strcmp(info.backend, "cpu") == 0)
            continue;
        anyaccel_buffer_t *buf = NULL;
        anyaccel_tensor_t *t = NULL, *out = NULL;
        const int64_t shape[2] = {3, 2};
        uint8_t bytes[8] = {0};
        char what[128];
        if (anyaccel_buffer_alloc(dev, 8, &buf) != ANYACCEL_OK ||
            anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape, 2, &t) != ANYACCEL_OK) {
            expect("alloc on the other device", ANYACCEL_ERROR_INTERNAL, ANYACCEL_OK, "");
        } else {
            snprintf(what, sizeof what, "queue_write(cpu queue, buffer of %s)", info.id);
            expect(what, anyaccel_queue_write(cpu_queue, buf, 0, bytes, 8), INVALID,
                   "but the queue is on cpu:0");
            snprintf(what, sizeof what, "matmul(cpu 2x3 @ %s 3x2)", info.id);
            expect(what, anyaccel_matmul(cpu_queue, cpu_tensor, t, NULL, &out), INVALID,
                   "but the queue is on cpu:0");
            tested = 1;
        }
        if (buf) anyaccel_buffer_free(buf);
        if (t) anyaccel_tensor_destroy(t);
    }
    if (!tested) printf("skip objects of another device: this runtime has no device but cpu\n");
    anyaccel_runtime_destroy(rt);
}

int main(int argc, char **argv) {
    anyaccel_runtime_t *rt = NULL, *rt2 = NULL;
    anyaccel_device_t *dev = NULL, *dev2 = NULL;
    anyaccel_buffer_t *buf = NULL, *buf2 = NULL;
    anyaccel_queue_t *q = NULL;
    anyaccel_event_t *ev = NULL;
    anyaccel_tensor_t *a = NULL, *b = NULL, *ti = NULL, *out = NULL, *t2 = NULL;
    size_t n = 0;
    const int64_t shape23[2] = {2, 3}, shape45[2] = {4, 5}, shape32[2] = {3, 2};

    expect_true("anyaccel_last_error_message() is \"\" before any failure",
                strcmp(anyaccel_last_error_message(), "") == 0);
    expect_true("anyaccel_status_name(42) is \"unknown status\"",
                strcmp(anyaccel_status_name(42), "unknown status") == 0);

    /* Runtimes. */
    expect("runtime_create(NULL)", anyaccel_runtime_create(NULL), INVALID, "`out` is NULL");
    expect("runtime_create_with_backends(NULL names)",
           anyaccel_runtime_create_with_backends(NULL, &rt), INVALID, "names");
    expect("runtime_create_with_backends(\"nope\")",
           anyaccel_runtime_create_with_backends("nope", &rt), INVALID, "not compiled in");
    expect("runtime_create_with_backends(\"cpu\")",
           anyaccel_runtime_create_with_backends("cpu", &rt), ANYACCEL_OK, "");
    expect("runtime_create_with_backends(\"cpu\") again",
           anyaccel_runtime_create_with_backends("cpu", &rt2), ANYACCEL_OK, "");
    expect("runtime_destroy(NULL)", anyaccel_runtime_destroy(NULL), INVALID, "NULL");
    expect("runtime_backend_count(NULL, &n)", anyaccel_runtime_backend_count(NULL, &n), INVALID,
           "runtime");
    expect("runtime_backend_count(rt, NULL)", anyaccel_runtime_backend_count(rt, NULL), INVALID,
           "out");
    expect("runtime_backend_info(rt, 0, NULL)", anyaccel_runtime_backend_info(rt, 0, NULL), INVALID,
           "info");
    {
        anyaccel_backend_info_t info = {0, NULL, 0, 0, NULL};
        expect("runtime_backend_info(struct_size 0)", anyaccel_runtime_backend_info(rt, 0, &info),
               INVALID, "struct_size");
        info.struct_size = sizeof info;
        expect("runtime_backend_info(index 99)", anyaccel_runtime_backend_info(rt, 99, &info),
               ANYACCEL_ERROR_OUT_OF_BOUNDS, "out of range");
    }
    expect("runtime_load_plugin(rt, NULL)", anyaccel_runtime_load_plugin(rt, NULL), INVALID, "path");
    expect("runtime_load_plugin(NULL, path)",
           anyaccel_runtime_load_plugin(NULL, "/nonexistent/libnochip.so"), INVALID, "runtime");
    expect("runtime_load_plugin(rt, missing file)",
           anyaccel_runtime_load_plugin(rt, "/nonexistent/libnochip.so"), ANYACCEL_ERROR_UNAVAILABLE,
           "/nonexistent/libnochip.so");
    {
        /* The failed plugin is listed, unavailable, with the loader's reason. */
        size_t nb = 0;
        int listed = 0;
        anyaccel_runtime_backend_count(rt, &nb);
        for (size_t i = 0; i < nb; i++) {
            anyaccel_backend_info_t info = {sizeof info, NULL, 0, 0, NULL};
            if (anyaccel_runtime_backend_info(rt, i, &info) == ANYACCEL_OK &&
                strncmp(info.name, "plugin:", 7) == 0 && !info.available && info.reason != NULL)
                listed = 1;
        }
        expect_true("the plugin that failed to load is listed as unavailable, with a reason",
                    listed);
    }
    expect("runtime_device_count(rt, NULL)", anyaccel_runtime_device_count(rt, NULL), INVALID,
           "out");
    expect("runtime_device(rt, 99, &dev)", anyaccel_runtime_device(rt, 99, &dev),
           ANYACCEL_ERROR_OUT_OF_BOUNDS, "out of range");
    expect("runtime_device(rt, 0, NULL)", anyaccel_runtime_device(rt, 0, NULL), INVALID, "out");
    expect("runtime_find_device(rt, NULL, &dev)", anyaccel_runtime_find_device(rt, NULL, &dev),
           INVALID, "id");
    expect("runtime_find_device(rt, \"tpu:7\")", anyaccel_runtime_find_device(rt, "tpu:7", &dev),
           INVALID, "not found");
    expect("runtime_find_device(rt, \"cpu:0\")", anyaccel_runtime_find_device(rt, "cpu:0", &dev),
           ANYACCEL_OK, "");
    expect("runtime_find_device(rt2, \"cpu:0\")",
           anyaccel_runtime_find_device(rt2, "cpu:0", &dev2), ANYACCEL_OK, "");
    expect("device_info(NULL, &info)", anyaccel_device_info(NULL, NULL), INVALID, "info");
    {
        anyaccel_device_info_t info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        expect("device_info(NULL device)", anyaccel_device_info(NULL, &info), INVALID, "device");
    }
    expect("device_supports_dtype(dtype 0)", anyaccel_device_supports_dtype(dev, 0, (int32_t[]){0}),
           INVALID, "dtype");

    /* Buffers. */
    expect("buffer_alloc(NULL device)", anyaccel_buffer_alloc(NULL, 16, &buf), INVALID, "device");
    expect("buffer_alloc(dev, 16, NULL)", anyaccel_buffer_alloc(dev, 16, NULL), INVALID, "out");
    expect("buffer_alloc(dev, SIZE_MAX)", anyaccel_buffer_alloc(dev, SIZE_MAX, &buf),
           ANYACCEL_ERROR_OUT_OF_MEMORY, "bytes");
    expect_true("out is NULL after a failed alloc", buf == NULL);
    expect("buffer_alloc(dev, 16)", anyaccel_buffer_alloc(dev, 16, &buf), ANYACCEL_OK, "");
    expect("buffer_alloc(dev2, 16)", anyaccel_buffer_alloc(dev2, 16, &buf2), ANYACCEL_OK, "");
    expect("buffer_size(buf, NULL)", anyaccel_buffer_size(buf, NULL), INVALID, "out");
    expect("buffer_size(NULL, &n)", anyaccel_buffer_size(NULL, &n), INVALID, "buffer");

    /* Queues and events. */
    expect("queue_create(NULL, &q)", anyaccel_queue_create(NULL, &q), INVALID, "device");
    expect("queue_create(dev, NULL)", anyaccel_queue_create(dev, NULL), INVALID, "out");
    expect("queue_create(dev, &q)", anyaccel_queue_create(dev, &q), ANYACCEL_OK, "");
    {
        uint8_t bytes[16] = {0};
        expect("queue_write(NULL queue)", anyaccel_queue_write(NULL, buf, 0, bytes, 16), INVALID,
               "queue");
        expect("queue_write(NULL buffer)", anyaccel_queue_write(q, NULL, 0, bytes, 16), INVALID,
               "buffer");
        expect("queue_write(src NULL, 16 bytes)", anyaccel_queue_write(q, buf, 0, NULL, 16),
               INVALID, "src");
        expect("queue_write(bytes 8..24 of 16)", anyaccel_queue_write(q, buf, 8, bytes, 16),
               ANYACCEL_ERROR_OUT_OF_BOUNDS, "16-byte buffer");
        expect("queue_read(dst NULL, 16 bytes)", anyaccel_queue_read(q, buf, 0, NULL, 16),
               INVALID, "dst");
        expect("queue_copy(overlapping ranges)", anyaccel_queue_copy(q, buf, 0, buf, 4, 8),
               INVALID, "overlap");
        expect("queue_fill(3-byte pattern)", anyaccel_queue_fill(q, buf, 0, 12, bytes, 3),
               INVALID, "1, 2 or 4");
        expect("queue_fill(pattern NULL)", anyaccel_queue_fill(q, buf, 0, 16, NULL, 4), INVALID,
               "pattern");
        expect("queue_write(buffer of another runtime's cpu:0)",
               anyaccel_queue_write(q, buf2, 0, bytes, 16), INVALID, "another runtime");
        expect("queue_copy(dst of another runtime)", anyaccel_queue_copy(q, buf, 0, buf2, 0, 16),
               INVALID, "another runtime");
    }
    expect("queue_record_event(q, NULL)", anyaccel_queue_record_event(q, NULL), INVALID, "out");
    expect("queue_record_event(q, &ev)", anyaccel_queue_record_event(q, &ev), ANYACCEL_OK, "");
    expect("event_query(ev, NULL)", anyaccel_event_query(ev, NULL), INVALID, "done");
    expect("event_query(NULL, &done)", anyaccel_event_query(NULL, (int32_t[]){0}), INVALID,
           "event");
    expect("event_elapsed_ms(ev, ev, NULL)", anyaccel_event_elapsed_ms(ev, ev, NULL), INVALID, "ms");
    expect("event_elapsed_ms(NULL, ev)", anyaccel_event_elapsed_ms(NULL, ev, (double[]){0}),
           INVALID, "start");
    expect("queue_wait_event(q, NULL)", anyaccel_queue_wait_event(q, NULL), INVALID, "event");

    /* Handles of the wrong type, and values that are no handle. */
    expect("queue_finish(a buffer handle cast to a queue)",
           anyaccel_queue_finish((anyaccel_queue_t *)buf), INVALID, "buffer handle, expected a queue");
    expect("tensor_destroy(a pointer from malloc)",
           anyaccel_tensor_destroy((anyaccel_tensor_t *)(uintptr_t)0x5555deadbe00u), INVALID,
           "not a handle");
    {
        void *p = malloc(64);
        expect("buffer_free(a real heap pointer)", anyaccel_buffer_free((anyaccel_buffer_t *)p),
               INVALID, "not a handle");
        free(p);
    }

    /* Tensors. */
    expect("tensor_create(NULL buffer)",
           anyaccel_tensor_create(NULL, ANYACCEL_DTYPE_F32, shape23, NULL, 2, 0, &a), INVALID,
           "buffer");
    expect("tensor_create(dtype 99)", anyaccel_tensor_create(buf, 99, shape23, NULL, 2, 0, &a),
           INVALID, "dtype");
    expect("tensor_create(shape NULL, ndim 2)",
           anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, NULL, NULL, 2, 0, &a), INVALID, "shape");
    expect("tensor_create(shape {2, -3})",
           anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, (int64_t[]){2, -3}, NULL, 2, 0, &a),
           INVALID, "shape[1] is -3");
    expect("tensor_create(2x3 f32 in 16 bytes)",
           anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, shape23, NULL, 2, 0, &a),
           ANYACCEL_ERROR_OUT_OF_BOUNDS, "needs 24 bytes");
    expect("tensor_create(out NULL)",
           anyaccel_tensor_create(buf, ANYACCEL_DTYPE_F32, (int64_t[]){4}, NULL, 1, 0, NULL),
           INVALID, "out");
    expect("tensor_alloc(dev, f32, 2x3)",
           anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape23, 2, &a), ANYACCEL_OK, "");
    expect("tensor_alloc(dev, f32, 4x5)",
           anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape45, 2, &b), ANYACCEL_OK, "");
    expect("tensor_alloc(dev, i32, 3x2)",
           anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_I32, shape32, 2, &ti), ANYACCEL_OK, "");
    expect("tensor_alloc(dev2, f32, 3x2)",
           anyaccel_tensor_alloc(dev2, ANYACCEL_DTYPE_F32, shape32, 2, &t2), ANYACCEL_OK, "");
    {
        int64_t dims[1];
        expect("tensor_shape(capacity 1 for 2 dims)", anyaccel_tensor_shape(a, dims, 1), INVALID,
               "capacity");
        expect("tensor_shape(out NULL)", anyaccel_tensor_shape(a, NULL, 2), INVALID, "out");
        float small[2];
        expect("tensor_write(4 bytes into 24)", anyaccel_tensor_write(q, a, small, 4), INVALID,
               "holds 24 bytes");
        expect("tensor_read(dst NULL)", anyaccel_tensor_read(q, a, NULL, 24), INVALID, "dst");
    }

    /* Ops: wrong dtype, mismatched shapes, another device, bad names and attributes. */
    expect("matmul(q, a, b, NULL, NULL)", anyaccel_matmul(q, a, b, NULL, NULL), INVALID, "out");
    expect("matmul(NULL a)", anyaccel_matmul(q, NULL, b, NULL, &out), INVALID, "`a` is NULL");
    expect("matmul(f32 2x3 @ f32 4x5)", anyaccel_matmul(q, a, b, NULL, &out), INVALID,
           "inner dimensions");
    expect("matmul(f32 2x3 @ i32 3x2)", anyaccel_matmul(q, a, ti, NULL, &out), INVALID, "i32");
    expect("matmul(i32 @ i32: wrong dtype)", anyaccel_matmul(q, ti, ti, NULL, &out), INVALID,
           "i32");
    expect("softmax(i32: wrong dtype)", anyaccel_softmax(q, ti, -1, &out), INVALID, "i32");
    expect("softmax(axis 5 of a rank-2 tensor)", anyaccel_softmax(q, a, 5, &out), INVALID,
           "out of range");
    expect("add(f32 2x3 + f32 4x5: no broadcast)", anyaccel_add(q, a, b, &out), INVALID, "2x3");
    expect("matmul(b of another runtime's cpu:0)", anyaccel_matmul(q, a, t2, NULL, &out), INVALID,
           "another runtime");
    expect_true("out stays NULL after failed ops", out == NULL);
    expect("softmax_into(out of the wrong shape)", anyaccel_softmax_into(q, a, -1, b), INVALID,
           "output 0");
    {
        anyaccel_tensor_t *outs[2] = {NULL, NULL};
        anyaccel_tensor_t *in[1] = {a};
        anyaccel_attr_t k = anyaccel_attr_int("k", 2);
        anyaccel_attr_t bad = anyaccel_attr_int("axis", 0);
        bad.kind = 77;
        anyaccel_attr_t noname = anyaccel_attr_int(NULL, 1);
        anyaccel_attr_t unknown = anyaccel_attr_int("colour", 1);
        expect("op(NULL name)", anyaccel_op(q, NULL, in, 1, NULL, 0, outs, 2), INVALID, "op");
        expect("op(\"conv9\")", anyaccel_op(q, "conv9", in, 1, NULL, 0, outs, 2), INVALID,
               "not an op");
        expect("op(outputs NULL)", anyaccel_op(q, "relu", in, 1, NULL, 0, NULL, 1), INVALID,
               "outputs");
        expect("op(inputs NULL, n_inputs 1)", anyaccel_op(q, "relu", NULL, 1, NULL, 0, outs, 1),
               INVALID, "inputs");
        expect("op(attrs NULL, n_attrs 1)", anyaccel_op(q, "topk", in, 1, NULL, 1, outs, 2),
               INVALID, "attrs");
        expect("op(\"topk\", room for 1 output of 2)",
               anyaccel_op(q, "topk", in, 1, &k, 1, outs, 1), INVALID, "2 outputs");
        expect("op(attr kind 77)", anyaccel_op(q, "softmax", in, 1, &bad, 1, outs, 1), INVALID,
               "kind 77");
        expect("op(attr name NULL)", anyaccel_op(q, "softmax", in, 1, &noname, 1, outs, 1),
               INVALID, "name");
        expect("op(\"softmax\", unknown attribute)",
               anyaccel_op(q, "softmax", in, 1, &unknown, 1, outs, 1), INVALID, "colour");
        expect("op(\"fill\" without its attributes)", anyaccel_op(q, "fill", NULL, 0, NULL, 0, outs, 1),
               INVALID, "required");
        expect("op(\"topk\" without k)", anyaccel_op(q, "topk", in, 1, NULL, 0, outs, 2), INVALID,
               "`k`");
        expect_true("outputs stay NULL after failed ops", outs[0] == NULL && outs[1] == NULL);
        expect("op_into(outputs NULL)", anyaccel_op_into(q, "relu", in, 1, NULL, 0, NULL, 1),
               INVALID, "outputs");
        expect("op_output_count(\"topk\")", anyaccel_op_output_count("topk", &n), ANYACCEL_OK, "");
        expect_true("topk has 2 outputs", n == 2);
        expect("op_output_count(NULL, &n)", anyaccel_op_output_count(NULL, &n), INVALID, "op");
    }

    /* Recorded graphs: captures out of order, bad handles and bindings. */
    {
        anyaccel_graph_t *g = NULL;
        anyaccel_replay_t *r = NULL;
        anyaccel_tensor_t *y = NULL, *got = NULL;
        expect("graph_capture_end(without a begin)", anyaccel_graph_capture_end(q, &g), INVALID,
               "not capturing");
        expect("graph_capture_begin(NULL queue)", anyaccel_graph_capture_begin(NULL), INVALID,
               "queue");
        expect("graph_capture_begin(q)", anyaccel_graph_capture_begin(q), ANYACCEL_OK, "");
        expect("graph_capture_begin(q) again", anyaccel_graph_capture_begin(q), INVALID,
               "already capturing");
        expect("relu(a) while capturing", anyaccel_relu(q, a, &y), ANYACCEL_OK, "");
        expect("graph_capture_end(q, NULL out)", anyaccel_graph_capture_end(q, NULL), INVALID,
               "out");
        expect("graph_capture_end(q)", anyaccel_graph_capture_end(q, &g), ANYACCEL_OK, "");
        expect("graph_op_count(g)", anyaccel_graph_op_count(g, &n), ANYACCEL_OK, "");
        expect_true("the graph holds one call", n == 1);
        anyaccel_tensor_t *cap[1] = {a}, *bad[1] = {b}, *none[1] = {NULL};
        expect("graph_replay(binding of another shape)",
               anyaccel_graph_replay(g, q, cap, bad, 1, &r), INVALID, "captured layout");
        expect("graph_replay(bound NULL)", anyaccel_graph_replay(g, q, cap, none, 1, &r), INVALID,
               "bound[0]");
        expect("graph_replay(captured NULL, n_bindings 1)",
               anyaccel_graph_replay(g, q, NULL, bad, 1, &r), INVALID, "captured");
        expect("graph_replay(y is no input)", anyaccel_graph_replay(g, q, &y, cap, 1, &r), INVALID,
               "not an input");
        expect("graph_replay(tensor as graph)",
               anyaccel_graph_replay((anyaccel_graph_t *)a, q, NULL, NULL, 0, &r), INVALID,
               "graph");
        expect_true("replay stays NULL after failed replays", r == NULL);
        expect("graph_replay(no bindings)", anyaccel_graph_replay(g, q, NULL, NULL, 0, &r),
               ANYACCEL_OK, "");
        expect("replay_get(b, never seen)", anyaccel_replay_get(r, b, &got), INVALID,
               "neither an input");
        expect("replay_get(y)", anyaccel_replay_get(r, y, &got), ANYACCEL_OK, "");
        expect("replay_destroy(r)", anyaccel_replay_destroy(r), ANYACCEL_OK, "");
        expect("replay_destroy(r) again", anyaccel_replay_destroy(r), INVALID, "already destroyed");
        expect("graph_destroy(g)", anyaccel_graph_destroy(g), ANYACCEL_OK, "");
        expect("graph_replay(g after destroy)", anyaccel_graph_replay(g, q, NULL, NULL, 0, &r),
               INVALID, "already destroyed");
        anyaccel_tensor_destroy(got);
        anyaccel_tensor_destroy(y);
    }

    other_device_checks(argc > 1 ? argv[1] : NULL, q, a);

    /* Use after destroy and double destroy, for every kind of handle. */
    expect("tensor_destroy(a)", anyaccel_tensor_destroy(a), ANYACCEL_OK, "");
    expect("tensor_destroy(a) again", anyaccel_tensor_destroy(a), INVALID, "already destroyed");
    expect("softmax(a after destroy)", anyaccel_softmax(q, a, -1, &out), INVALID,
           "already destroyed");
    expect("tensor_ndim(a after destroy)", anyaccel_tensor_ndim(a, &n), INVALID, "stale");
    expect("event_destroy(ev)", anyaccel_event_destroy(ev), ANYACCEL_OK, "");
    expect("event_destroy(ev) again", anyaccel_event_destroy(ev), INVALID, "already destroyed");
    expect("event_wait(ev after destroy)", anyaccel_event_wait(ev), INVALID, "already destroyed");
    expect("buffer_free(buf)", anyaccel_buffer_free(buf), ANYACCEL_OK, "");
    expect("buffer_free(buf) again", anyaccel_buffer_free(buf), INVALID, "already destroyed");
    expect("queue_fill(buf after free)", anyaccel_queue_fill(q, buf, 0, 4, (uint8_t[]){1}, 1),
           INVALID, "already destroyed");

    dlpack_checks(rt, q);

    /* The message is per thread: another thread's failure does not replace this one's. */
    expect("buffer_free(buf) once more, on this thread", anyaccel_buffer_free(buf), INVALID,
           "anyaccel_buffer_free");
    {
        pthread_t th;
        void *res = NULL;
        if (pthread_create(&th, NULL, other_thread, NULL) == 0 && pthread_join(th, &res) == 0) {
            expect_true("another thread sees its own message", res && *(int *)res);
            free(res);
        } else {
            expect_true("pthread_create", 0);
        }
        expect_true("this thread's message is unchanged",
                    strstr(anyaccel_last_error_message(), "anyaccel_buffer_free") != NULL);
    }

    expect("queue_destroy(q)", anyaccel_queue_destroy(q), ANYACCEL_OK, "");
    expect("queue_destroy(q) again", anyaccel_queue_destroy(q), INVALID, "already destroyed");
    expect("queue_finish(q after destroy)", anyaccel_queue_finish(q), INVALID, "already destroyed");
    expect("tensor_destroy(b)", anyaccel_tensor_destroy(b), ANYACCEL_OK, "");
    expect("tensor_destroy(ti)", anyaccel_tensor_destroy(ti), ANYACCEL_OK, "");
    expect("tensor_destroy(t2)", anyaccel_tensor_destroy(t2), ANYACCEL_OK, "");
    expect("buffer_free(buf2)", anyaccel_buffer_free(buf2), ANYACCEL_OK, "");
    expect("runtime_destroy(rt)", anyaccel_runtime_destroy(rt), ANYACCEL_OK, "");
    expect("runtime_destroy(rt) again", anyaccel_runtime_destroy(rt), INVALID, "already destroyed");
    expect("buffer_alloc(device of a destroyed runtime)", anyaccel_buffer_alloc(dev, 4, &buf),
           INVALID, "already destroyed");
    expect("runtime_destroy(rt2)", anyaccel_runtime_destroy(rt2), ANYACCEL_OK, "");

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
