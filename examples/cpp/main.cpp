// main.cpp: anyaccel's C ABI from C++, with the handles held by RAII owners and failures
// turned into exceptions that carry the library's message.
//
// Lists the devices, then on every device runs matmul (with a bias), softmax and layer_norm,
// and checks each result against values computed here in double precision. A device that does
// not offer an op reports it as skipped with its reason; any other failure exits 1.
//
//   ./anyaccel_cpp            every compiled-in backend
//   ./anyaccel_cpp cpu        only the named backends (a comma list)

#include <anyaccel.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A failed call: its status and the library's message, which names the function, e.g.
// "invalid argument: anyaccel_matmul: matmul: a is 2x3 but b is 2x3: inner dimensions must match".
struct Error : std::runtime_error {
    anyaccel_status status;
    explicit Error(anyaccel_status s)
        : std::runtime_error(std::string(anyaccel_status_name(s)) + ": " +
                             anyaccel_last_error_message()),
          status(s) {}
};

void check(anyaccel_status s) {
    if (s != ANYACCEL_OK) throw Error(s);
}

// Owners for each kind of handle; destruction cannot fail for a live handle.
struct RuntimeDeleter {
    void operator()(anyaccel_runtime_t *p) const { anyaccel_runtime_destroy(p); }
};
struct QueueDeleter {
    void operator()(anyaccel_queue_t *p) const { anyaccel_queue_destroy(p); }
};
struct TensorDeleter {
    void operator()(anyaccel_tensor_t *p) const { anyaccel_tensor_destroy(p); }
};
using Runtime = std::unique_ptr<anyaccel_runtime_t, RuntimeDeleter>;
using Queue = std::unique_ptr<anyaccel_queue_t, QueueDeleter>;
using Tensor = std::unique_ptr<anyaccel_tensor_t, TensorDeleter>;

Tensor upload(anyaccel_device_t *dev, anyaccel_queue_t *q, const std::vector<float> &data,
              std::vector<int64_t> shape) {
    anyaccel_tensor_t *t = nullptr;
    check(anyaccel_tensor_alloc(dev, ANYACCEL_DTYPE_F32, shape.data(), shape.size(), &t));
    Tensor owned(t);
    check(anyaccel_tensor_write(q, t, data.data(), data.size() * sizeof(float)));
    return owned;
}

std::vector<float> download(anyaccel_queue_t *q, anyaccel_tensor_t *t) {
    size_t n = 0;
    check(anyaccel_tensor_numel(t, &n));
    std::vector<float> out(n);
    check(anyaccel_tensor_read(q, t, out.data(), n * sizeof(float)));
    return out;
}

int failures = 0;

void compare(const char *what, const std::vector<float> &got, const std::vector<double> &want,
             double atol, double rtol) {
    if (got.size() != want.size()) {
        std::printf("FAIL %s: %zu values, expected %zu\n", what, got.size(), want.size());
        failures++;
        return;
    }
    for (size_t i = 0; i < got.size(); i++) {
        double err = std::fabs(got[i] - want[i]);
        if (!(err <= atol + rtol * std::fabs(want[i]))) {
            std::printf("FAIL %s: element %zu is %.8g, expected %.8g\n", what, i, got[i], want[i]);
            failures++;
            return;
        }
    }
    std::printf("  %-26s ok (%zu values)\n", what, got.size());
}

// Runs one op; Unsupported is a skip, any other error propagates.
template <typename F> void op(const char *what, F &&body) {
    try {
        body();
    } catch (const Error &e) {
        if (e.status != ANYACCEL_ERROR_UNSUPPORTED) throw;
        std::printf("  %-26s skipped: %s\n", what, anyaccel_last_error_message());
    }
}

std::vector<float> values(size_t n, unsigned seed) {
    std::vector<float> v(n);
    for (auto &x : v) {
        seed = seed * 1664525u + 1013904223u;
        x = static_cast<float>((seed >> 8) % 4096) / 1024.0f - 2.0f;
    }
    return v;
}

void run_on_device(anyaccel_device_t *dev) {
    anyaccel_queue_t *raw_q = nullptr;
    check(anyaccel_queue_create(dev, &raw_q));
    Queue q(raw_q);

    const size_t m = 5, k = 31, n = 6;
    auto ha = values(m * k, 1), hb = values(k * n, 2), hbias = values(n, 3);
    auto a = upload(dev, raw_q, ha, {int64_t(m), int64_t(k)});
    auto b = upload(dev, raw_q, hb, {int64_t(k), int64_t(n)});
    auto bias = upload(dev, raw_q, hbias, {int64_t(n)});

    op("matmul 5x31 @ 31x6 + bias", [&] {
        anyaccel_tensor_t *c = nullptr;
        check(anyaccel_matmul(raw_q, a.get(), b.get(), bias.get(), &c));
        Tensor owned(c);
        std::vector<double> want(m * n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double acc = hbias[j];
                for (size_t p = 0; p < k; p++) acc += double(ha[i * k + p]) * hb[p * n + j];
                want[i * n + j] = acc;
            }
        compare("matmul 5x31 @ 31x6 + bias", download(raw_q, c), want, 1e-4, 1e-4);
    });

    op("softmax 5x31, axis 0", [&] {
        anyaccel_tensor_t *y = nullptr;
        check(anyaccel_softmax(raw_q, a.get(), 0, &y));
        Tensor owned(y);
        std::vector<double> want(m * k);
        for (size_t j = 0; j < k; j++) {
            double mx = -INFINITY, sum = 0;
            for (size_t i = 0; i < m; i++) mx = std::fmax(mx, ha[i * k + j]);
            for (size_t i = 0; i < m; i++) sum += std::exp(ha[i * k + j] - mx);
            for (size_t i = 0; i < m; i++) want[i * k + j] = std::exp(ha[i * k + j] - mx) / sum;
        }
        compare("softmax 5x31, axis 0", download(raw_q, y), want, 1e-4, 1e-4);
    });

    op("layer_norm 5x31 (generic)", [&] {
        // Through the generic entry, with a Float attribute by name.
        anyaccel_attr_t eps = anyaccel_attr_float("eps", 1e-5);
        anyaccel_tensor_t *in[1] = {a.get()};
        anyaccel_tensor_t *out[1] = {nullptr};
        check(anyaccel_op(raw_q, "layer_norm", in, 1, &eps, 1, out, 1));
        Tensor owned(out[0]);
        std::vector<double> want(m * k);
        for (size_t i = 0; i < m; i++) {
            double mean = 0, var = 0;
            for (size_t j = 0; j < k; j++) mean += ha[i * k + j];
            mean /= k;
            for (size_t j = 0; j < k; j++) var += (ha[i * k + j] - mean) * (ha[i * k + j] - mean);
            var /= k;
            for (size_t j = 0; j < k; j++)
                want[i * k + j] = (ha[i * k + j] - mean) / std::sqrt(var + 1e-5);
        }
        compare("layer_norm 5x31 (generic)", download(raw_q, out[0]), want, 1e-4, 1e-4);
    });

    check(anyaccel_queue_finish(raw_q));
}

}  // namespace

int main(int argc, char **argv) {
    try {
        anyaccel_runtime_t *raw = nullptr;
        check(argc > 1 ? anyaccel_runtime_create_with_backends(argv[1], &raw)
                       : anyaccel_runtime_create(&raw));
        Runtime rt(raw);

        size_t count = 0;
        check(anyaccel_runtime_device_count(raw, &count));
        if (count == 0) throw std::runtime_error("no device found");
        std::printf("anyaccel %s, %zu device(s)\n", anyaccel_version(), count);
        for (size_t i = 0; i < count; i++) {
            anyaccel_device_t *dev = nullptr;
            check(anyaccel_runtime_device(raw, i, &dev));
            anyaccel_device_info_t info{};
            info.struct_size = sizeof info;
            check(anyaccel_device_info(dev, &info));
            std::printf("%s: %s (%s)\n", info.id, info.name, info.backend);
            run_on_device(dev);
        }

        // The error path from C++: a mismatched matmul throws with the library's message.
        anyaccel_device_t *cpu = nullptr;
        check(anyaccel_runtime_find_device(raw, "cpu:0", &cpu));
        anyaccel_queue_t *raw_q = nullptr;
        check(anyaccel_queue_create(cpu, &raw_q));
        Queue q(raw_q);
        auto x = upload(cpu, raw_q, values(6, 4), {2, 3});
        try {
            anyaccel_tensor_t *bad = nullptr;
            check(anyaccel_matmul(raw_q, x.get(), x.get(), nullptr, &bad));
            std::printf("FAIL a 2x3 @ 2x3 matmul succeeded\n");
            failures++;
        } catch (const Error &e) {
            bool ok = e.status == ANYACCEL_ERROR_INVALID_ARGUMENT &&
                      std::string(e.what()).find("inner dimensions") != std::string::npos;
            std::printf("%s 2x3 @ 2x3 throws: %s\n", ok ? "ok  " : "FAIL", e.what());
            failures += ok ? 0 : 1;
        }
    } catch (const std::exception &e) {
        std::printf("FAIL %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
