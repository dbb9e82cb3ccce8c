/*
 * devices_ops.c: lists the devices that anyaccel finds, then on every device runs matmul and
 * softmax (typed and through the generic anyaccel_op entry), times them with events, and checks
 * every result against values computed here in double precision. On the cpu device it also
 * exchanges tensors through DLPack, zero-copy both ways.
 *
 *   ./devices_ops                      every compiled-in backend
 *   ./devices_ops cpu                  only the named backends (a comma list)
 *   ./devices_ops --plugin LIB.so      every backend, plus a vendor plugin loaded by path
 *
 * A device that does not offer an op says so (ANYACCEL_ERROR_UNSUPPORTED, with its reason) and
 * is reported as skipped; any other failure, or a wrong value, makes the program exit 1.
 */
#include <anyaccel.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

/* Prints a failed call with the library's message and counts it. */
static int check(anyaccel_status s, const char *what) {
    if (s != ANYACCEL_OK) {
        fprintf(stderr, "FAIL %s: %s (%d): %s\n", what, anyaccel_status_name(s), s,
                anyaccel_last_error_message());
        failures++;
    }
    return s == ANYACCEL_OK;
}

/* Values in [-2, 2) from a small linear congruential generator: reproducible everywhere. */
static float next_value(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) % 4096) / 1024.0f - 2.0f;
}

static int compare(const char *what, const char *device, const float *got, const double *want,
                   size_t n, double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i]))) {
            fprintf(stderr, "FAIL %s on %s: element %zu is %.8g, expected %.8g\n", what, device,
                    i, got[i], want[i]);
            failures++;
            return 0;
        }
    }
    printf("  %-28s ok (%zu values)\n", what, n);
    return 1;
}

/* An op the device does not offer is a skip with the device's reason, not a failure. */
static int unsupported(anyaccel_status s, const char *what) {
    if (s == ANYACCEL_ERROR_UNSUPPORTED) {
        printf("  %-28s skipped: %s\n", what, anyaccel_last_error_message());
        return 1;
    }
    return 0;
}

enum { M = 33, K = 17, N = 9, ROWS = 7, COLS = 13 };

static void run_on_device(anyaccel_runtime_t *rt, anyaccel_device_t *dev, const char *id) {
    anyaccel_queue_t *q = NULL;
    anyaccel_tensor_t *a = NULL, *b = NULL, *c = NULL, *x = NULL, *y = NULL;
    anyaccel_tensor_t *outs[2] = {NULL, NULL};
    anyaccel_event_t *start = NULL, *end = NULL;
    static float ha[M * K], hb[K * N], hc[M * N], hx[ROWS * COLS], hy[ROWS * COLS];
    static double want_c[M * N], want_y[ROWS * COLS];
    unsigned seed = 42;
    const int64_t shape_a[2] = {M, K}, shape_b[2] = {K, N}, shape_x[2] = {ROWS, COLS};

    for (size_t i = 0; i < M * K; i++) ha[i] = next_value(&seed);
    for (size_t i = 0; i < K * N; i++) hb[i] = next_value(&seed);
    for (size_t i = 0; i < ROWS * COLS; i++) hx[i] = 4.0f * next_value(&seed);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (size_t k = 0; k < K; k++) acc += (double)ha[i * K + k] * hb[k * N + j];
            want_c[i * N + j] = acc;
        }
    for (size_t r = 0; r < ROWS; r++) {
        double mx = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < COLS; j++) mx = fmax(mx, hx[r * COLS + j]);
        for (size_t j = 0; j < COLS; j++) sum += exp(hx[r * COLS + j] - mx);
        for (size_t j = 0; j < COLS; j++) want_y[r * COLS + j] = exp(hx[r * COLS + j] - mx) / sum;
    }

    if (!check(anyaccel_queue_create(dev, &q), "anyaccel_queue_create")) return;
    if (!check(anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape_a, 2, &a), "alloc a") ||
        !check(anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape_b, 2, &b), "alloc b") ||
        !check(anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape_x, 2, &x), "alloc x"))
        goto done;
    if (!check(anyaccel_tensor_write(q, a, ha, sizeof ha), "write a") ||
        !check(anyaccel_tensor_write(q, b, hb, sizeof hb), "write b") ||
        !check(anyaccel_tensor_write(q, x, hx, sizeof hx), "write x"))
        goto done;
    /* The round trip itself: what was written comes back. */
    memset(hy, 0, sizeof hy);
    if (check(anyaccel_tensor_read(q, x, hy, sizeof hy), "read x")) {
        double want_x[ROWS * COLS];
        for (size_t i = 0; i < ROWS * COLS; i++) want_x[i] = hx[i];
        compare("write/read round trip", id, hy, want_x, ROWS * COLS, 0.0, 0.0);
    }

    /* matmul, timed with two events. */
    check(anyaccel_queue_record_event(q, &start), "record start");
    anyaccel_status s = anyaccel_matmul(q, a, b, NULL, &c);
    check(anyaccel_queue_record_event(q, &end), "record end");
    if (!unsupported(s, "matmul 33x17 @ 17x9") && check(s, "anyaccel_matmul")) {
        int64_t shape[2] = {0, 0};
        check(anyaccel_tensor_shape(c, shape, 2), "anyaccel_tensor_shape");
        if (shape[0] != M || shape[1] != N) {
            fprintf(stderr, "FAIL matmul shape on %s: %lldx%lld\n", id, (long long)shape[0],
                    (long long)shape[1]);
            failures++;
        } else if (check(anyaccel_tensor_read(q, c, hc, sizeof hc), "read c")) {
            compare("matmul 33x17 @ 17x9", id, hc, want_c, M * N, 1e-4, 1e-4);
            double ms = -1.0;
            if (check(anyaccel_event_wait(end), "anyaccel_event_wait") &&
                check(anyaccel_event_elapsed_ms(start, end, &ms), "anyaccel_event_elapsed_ms"))
                printf("  %-28s %.3f ms\n", "matmul time (events)", ms);
        }
    }

    /* softmax, typed. */
    s = anyaccel_softmax(q, x, -1, &y);
    if (!unsupported(s, "softmax 7x13, axis -1") && check(s, "anyaccel_softmax") &&
        check(anyaccel_tensor_read(q, y, hy, sizeof hy), "read y"))
        compare("softmax 7x13, axis -1", id, hy, want_y, ROWS * COLS, 1e-4, 1e-4);

    /* softmax again through the generic entry, with its attribute by name. */
    {
        anyaccel_attr_t axis = anyaccel_attr_int("axis", 1);
        s = anyaccel_op(q, "softmax", &x, 1, &axis, 1, outs, 2);
        if (!unsupported(s, "anyaccel_op(\"softmax\")") && check(s, "anyaccel_op softmax")) {
            if (outs[1] != NULL) {
                fprintf(stderr, "FAIL anyaccel_op left outputs[1] set\n");
                failures++;
            }
            memset(hy, 0, sizeof hy);
            if (check(anyaccel_tensor_read(q, outs[0], hy, sizeof hy), "read op output"))
                compare("anyaccel_op(\"softmax\")", id, hy, want_y, ROWS * COLS, 1e-4, 1e-4);
            check(anyaccel_tensor_destroy(outs[0]), "destroy op output");
        }
    }

    /* topk, the op with two outputs: the 3 largest of each row of x, values and indices. */
    {
        anyaccel_attr_t attrs[2] = {anyaccel_attr_int("k", 3), anyaccel_attr_int("axis", -1)};
        outs[0] = outs[1] = NULL;
        s = anyaccel_op(q, "topk", &x, 1, attrs, 2, outs, 2);
        if (!unsupported(s, "anyaccel_op(\"topk\")") && check(s, "anyaccel_op topk")) {
            float values[ROWS * 3];
            int64_t indices[ROWS * 3];
            double want_values[ROWS * 3];
            anyaccel_dtype dt = 0;
            check(anyaccel_tensor_dtype(outs[1], &dt), "topk indices dtype");
            if (dt != ANYACCEL_DTYPE_I64) {
                fprintf(stderr, "FAIL topk indices are %s, expected i64\n", anyaccel_dtype_name(dt));
                failures++;
            } else if (check(anyaccel_tensor_read(q, outs[0], values, sizeof values), "read") &&
                       check(anyaccel_tensor_read(q, outs[1], indices, sizeof indices), "read")) {
                for (size_t r = 0; r < ROWS; r++) {
                    float row[COLS];
                    memcpy(row, hx + r * COLS, sizeof row);
                    for (size_t t = 0; t < 3; t++) {
                        size_t best = 0;
                        for (size_t j = 1; j < COLS; j++)
                            if (row[j] > row[best]) best = j;
                        want_values[r * 3 + t] = row[best];
                        row[best] = -INFINITY;
                        if (hx[r * COLS + (size_t)indices[r * 3 + t]] != values[r * 3 + t]) {
                            fprintf(stderr, "FAIL topk index does not point at its value\n");
                            failures++;
                        }
                    }
                }
                compare("anyaccel_op(\"topk\"), k=3", id, values, want_values, ROWS * 3, 0, 0);
            }
        }
        for (int i = 0; i < 2; i++)
            if (outs[i]) check(anyaccel_tensor_destroy(outs[i]), "destroy topk output");
    }

    /* DLPack: export the matmul result and read it through the DLTensor, then import it back. */
    if (c != NULL) {
        DLManagedTensorVersioned *m = NULL;
        s = anyaccel_tensor_to_dlpack(c, q, &m);
        if (!unsupported(s, "DLPack export") && check(s, "anyaccel_tensor_to_dlpack")) {
            const DLTensor *t = &m->dl_tensor;
            const float *data = (const float *)((const char *)t->data + t->byte_offset);
            if (m->version.major != 1 || t->device.device_type != kDLCPU || t->ndim != 2 ||
                t->shape[0] != M || t->shape[1] != N || t->dtype.code != kDLFloat ||
                t->dtype.bits != 32 || t->strides[0] != N || t->strides[1] != 1) {
                fprintf(stderr, "FAIL DLPack export describes the tensor wrongly\n");
                failures++;
            } else {
                compare("DLPack export (kDLCPU)", id, data, want_c, M * N, 1e-4, 1e-4);
            }
            anyaccel_tensor_t *back = NULL;
            int32_t zero_copy = -1;
            if (check(anyaccel_tensor_from_dlpack(rt, m, &back, &zero_copy), "from_dlpack")) {
                /* The library owns m now; the import shares the exported memory. */
                float again[M * N];
                if (zero_copy != 1) {
                    fprintf(stderr, "FAIL DLPack re-import copied\n");
                    failures++;
                }
                if (check(anyaccel_tensor_read(q, back, again, sizeof again), "read import"))
                    compare("DLPack import (zero-copy)", id, again, want_c, M * N, 1e-4, 1e-4);
                check(anyaccel_tensor_destroy(back), "destroy import");
            } else {
                m->deleter(m);
            }
        }
    }

    /* A recorded graph: matmul then softmax captured once, replayed with a new `a`. */
    if (a != NULL && b != NULL) {
        anyaccel_graph_t *g = NULL;
        anyaccel_replay_t *r = NULL;
        anyaccel_tensor_t *gc = NULL, *gy = NULL, *a2 = NULL, *got = NULL;
        static float ha2[M * K], hgot[M * N];
        static double want_g[M * N];
        for (size_t i = 0; i < M * K; i++) ha2[i] = next_value(&seed);
        for (size_t i = 0; i < M; i++) {
            double row[N], mx = -INFINITY, sum = 0.0;
            for (size_t j = 0; j < N; j++) {
                double acc = 0.0;
                for (size_t k = 0; k < K; k++) acc += (double)ha2[i * K + k] * hb[k * N + j];
                row[j] = acc;
                mx = fmax(mx, acc);
            }
            for (size_t j = 0; j < N; j++) sum += exp(row[j] - mx);
            for (size_t j = 0; j < N; j++) want_g[i * N + j] = exp(row[j] - mx) / sum;
        }
        if (check(anyaccel_graph_capture_begin(q), "anyaccel_graph_capture_begin")) {
            anyaccel_status s1 = anyaccel_matmul(q, a, b, NULL, &gc);
            anyaccel_status s2 = s1 == ANYACCEL_OK ? anyaccel_softmax(q, gc, -1, &gy) : s1;
            check(anyaccel_graph_capture_end(q, &g), "anyaccel_graph_capture_end");
            size_t calls = 0;
            if (!unsupported(s2, "graph replay (matmul, softmax)") &&
                check(s2, "matmul and softmax while capturing") && g != NULL &&
                check(anyaccel_graph_op_count(g, &calls), "anyaccel_graph_op_count")) {
                anyaccel_tensor_t *captured[1] = {a}, *bound[1] = {NULL};
                if (calls != 2) {
                    fprintf(stderr, "FAIL graph on %s recorded %zu calls, expected 2\n", id,
                            calls);
                    failures++;
                } else if (check(anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape_a, 2, &a2),
                                 "alloc a2") &&
                           check(anyaccel_tensor_write(q, a2, ha2, sizeof ha2), "write a2") &&
                           (bound[0] = a2) != NULL &&
                           check(anyaccel_graph_replay(g, q, captured, bound, 1, &r),
                                 "anyaccel_graph_replay") &&
                           check(anyaccel_replay_get(r, gy, &got), "anyaccel_replay_get") &&
                           check(anyaccel_tensor_read(q, got, hgot, sizeof hgot), "read replay")) {
                    compare("graph replay (matmul, softmax)", id, hgot, want_g, M * N, 1e-5,
                            1e-4);
                }
            }
        }
        if (r) check(anyaccel_replay_destroy(r), "anyaccel_replay_destroy");
        if (g) check(anyaccel_graph_destroy(g), "anyaccel_graph_destroy");
        anyaccel_tensor_t *gt[] = {gc, gy, a2, got};
        for (size_t i = 0; i < 4; i++)
            if (gt[i]) check(anyaccel_tensor_destroy(gt[i]), "destroy graph tensor");
    }

done:
    if (q) check(anyaccel_queue_finish(q), "anyaccel_queue_finish");
    anyaccel_tensor_t *tensors[] = {a, b, c, x, y};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        if (tensors[i]) check(anyaccel_tensor_destroy(tensors[i]), "anyaccel_tensor_destroy");
    if (start) check(anyaccel_event_destroy(start), "anyaccel_event_destroy");
    if (end) check(anyaccel_event_destroy(end), "anyaccel_event_destroy");
    if (q) check(anyaccel_queue_destroy(q), "anyaccel_queue_destroy");
}

int main(int argc, char **argv) {
    anyaccel_runtime_t *rt = NULL;
    size_t n_backends = 0, n_devices = 0;

    printf("anyaccel %s\n", anyaccel_version());
    int plugin = argc > 2 && strcmp(argv[1], "--plugin") == 0;
    anyaccel_status s = argc > 1 && !plugin ? anyaccel_runtime_create_with_backends(argv[1], &rt)
                                            : anyaccel_runtime_create(&rt);
    if (!check(s, "anyaccel_runtime_create")) return 1;
    if (plugin && check(anyaccel_runtime_load_plugin(rt, argv[2]), "anyaccel_runtime_load_plugin"))
        printf("loaded plugin %s\n", argv[2]);

    if (!check(anyaccel_runtime_backend_count(rt, &n_backends), "backend_count")) goto out;
    printf("backends:\n");
    for (size_t i = 0; i < n_backends; i++) {
        anyaccel_backend_info_t info = {sizeof info, NULL, 0, 0, NULL};
        if (!check(anyaccel_runtime_backend_info(rt, i, &info), "backend_info")) continue;
        if (info.available)
            printf("  %-8s available, %zu device(s)\n", info.name, info.device_count);
        else
            printf("  %-8s unavailable: %s\n", info.name, info.reason);
    }

    if (!check(anyaccel_runtime_device_count(rt, &n_devices), "device_count")) goto out;
    printf("devices:\n");
    for (size_t i = 0; i < n_devices; i++) {
        anyaccel_device_t *dev = NULL;
        anyaccel_device_info_t info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (!check(anyaccel_runtime_device(rt, i, &dev), "anyaccel_runtime_device") ||
            !check(anyaccel_device_info(dev, &info), "anyaccel_device_info"))
            continue;
        printf("  %-10s %s (%s), driver %s, %llu MiB, %u compute units\n", info.id, info.name,
               info.vendor, info.driver_version,
               (unsigned long long)(info.memory_bytes >> 20), info.compute_units);
    }
    if (n_devices == 0) {
        fprintf(stderr, "FAIL no device found\n");
        failures++;
    }

    for (size_t i = 0; i < n_devices; i++) {
        anyaccel_device_t *dev = NULL;
        anyaccel_device_info_t info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (!check(anyaccel_runtime_device(rt, i, &dev), "anyaccel_runtime_device") ||
            !check(anyaccel_device_info(dev, &info), "anyaccel_device_info"))
            continue;
        printf("%s:\n", info.id);
        run_on_device(rt, dev, info.id);
    }

out:
    check(anyaccel_runtime_destroy(rt), "anyaccel_runtime_destroy");
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
