/*
 * The anyaccel reference plugin: a device in host memory that implements anyaccel_plugin.h in
 * plain C11 (with POSIX threads), for chip vendors to copy. Replace the memcpy calls with your
 * runtime's copies, the worker threads with your runtime's streams, and the op kernels in
 * ops_*.c with calls into your operator library; keep the structure.
 *
 *  - Memory: malloc'd host memory.
 *  - Streams: a worker thread each, running a FIFO of commands in order. The submitting
 *    functions return at once; stream_synchronize waits for the FIFO to drain. A command that
 *    fails (an index out of range in an op) makes the stream failed: later commands are skipped,
 *    events recorded after it complete with its error, and the next stream_synchronize returns
 *    the error and clears it.
 *  - Events: reference-counted, so that a stream can still complete or wait on an event that
 *    the host has already destroyed. They carry the host clock at completion as timestamps.
 *  - Native ops: every op of docs/ops.md, computed on the host in double (integers in int64),
 *    each output rounded once to its dtype; quantize follows the f32 steps of its contract.
 *
 * Build: make -C examples/plugin-c (gives build/libanyaccel_ref.so).
 */

#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ref.h"

/* The plugin's name: its devices are plugin:<name>:<index>. Test builds override it. */
#ifndef REF_PLUGIN_NAME
#define REF_PLUGIN_NAME "ref"
#endif

#define REF_MESSAGE_SIZE 2048

/* ---- Errors: one message per thread ------------------------------------------------------ */

static _Thread_local char tl_message[REF_MESSAGE_SIZE];

AnyaccelStatus ref_error(AnyaccelStatus code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_message, sizeof tl_message, fmt, ap);
    va_end(ap);
    return code;
}

const char *ref_last_error(void) {
    return tl_message;
}

static const char *api_last_error(void) {
    return tl_message;
}

/* ---- The devices ----------------------------------------------------------------------------- */

/* One device unless ANYACCEL_REF_DEVICES lists several: a comma-separated list of speeds, one
 * device each, in MB/s (10^6 bytes a second) of op operands (every input and output of an op,
 * counted once). A device with a speed takes at least (operand bytes / speed) for each op: a
 * slow and a fast "chip" in one process, to test work balancing across devices. 0 is as fast as
 * the host. Copies are not paced. */
#define REF_MAX_DEVICES 16

struct AnyaccelDevice_ {
    int index;
    double bytes_per_second; /* 0: not paced */
};

static struct AnyaccelDevice_ the_devices[REF_MAX_DEVICES];
static int device_total;
static char devices_error[256];
static pthread_once_t devices_once = PTHREAD_ONCE_INIT;

static void devices_init(void) {
    device_total = 1;
    the_devices[0].index = 0;
    const char *list = getenv("ANYACCEL_REF_DEVICES");
    if (!list || !*list) return;
    int n = 0;
    const char *p = list;
    for (;;) {
        char *end = NULL;
        double mbps = strtod(p, &end);
        if (end == p || !(mbps >= 0) || mbps > 1e12 || n == REF_MAX_DEVICES ||
            (*end != ',' && *end != '\0')) {
            snprintf(devices_error, sizeof devices_error,
                     "ANYACCEL_REF_DEVICES=\"%.64s\": expected up to %d comma-separated speeds "
                     "in MB/s (0: not paced), e.g. \"40,10\"",
                     list, REF_MAX_DEVICES);
            return;
        }
        the_devices[n].index = n;
        the_devices[n].bytes_per_second = mbps * 1e6;
        n++;
        if (*end == '\0') break;
        p = end + 1;
    }
    device_total = n;
}

/* The device `d` points to, or NULL when it is not one of this plugin's open devices. */
static const struct AnyaccelDevice_ *device_of(const AnyaccelDevice *d) {
    pthread_once(&devices_once, devices_init);
    for (int i = 0; i < device_total; i++)
        if (d == &the_devices[i]) return d;
    return NULL;
}

static uint64_t host_memory_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return (uint64_t)1 << 32;
    return (uint64_t)pages * (uint64_t)page;
}

static AnyaccelStatus api_device_count(int32_t *count) {
    if (!count) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_count: count is NULL");
    pthread_once(&devices_once, devices_init);
    if (devices_error[0]) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s", devices_error);
    *count = device_total;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_device_open(int32_t index, AnyaccelDevice **device) {
    if (!device) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_open: device is NULL");
    pthread_once(&devices_once, devices_init);
    if (index < 0 || index >= device_total)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "device_open: index %d, expected 0 to %d (this plugin has %d device%s)",
                         (int)index, device_total - 1, device_total, device_total == 1 ? "" : "s");
    *device = &the_devices[index];
    return ANYACCEL_OK;
}

static AnyaccelStatus api_device_close(AnyaccelDevice *device) {
    if (!device_of(device))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "device_close: not a device of this plugin");
    return ANYACCEL_OK;
}

static void copy_text(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src);
}

static AnyaccelStatus api_device_info(AnyaccelDevice *device, AnyaccelDeviceInfo *info) {
    const struct AnyaccelDevice_ *d = device_of(device);
    if (!d || !info)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "device_info: expected a device of this plugin and an info struct");
    /* Fill only what the host's struct has room for: a later minor may append fields. */
#define SET(field, value)                                    \
    do {                                                     \
        if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, field)) \
            info->field = (value);                           \
    } while (0)
    if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, name)) {
        char name[128];
        if (d->bytes_per_second > 0)
            snprintf(name, sizeof name, "anyaccel reference plugin (host memory, %g MB/s)",
                     d->bytes_per_second / 1e6);
        else
            snprintf(name, sizeof name, "anyaccel reference plugin (host memory)");
        copy_text(info->name, sizeof info->name, name);
    }
    if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, vendor))
        copy_text(info->vendor, sizeof info->vendor, "anyaccel");
    if (ANYACCEL_STRUCT_HAS(info, AnyaccelDeviceInfo, driver_version))
        copy_text(info->driver_version, sizeof info->driver_version, "1.0.0");
    uint64_t memory = host_memory_bytes();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    SET(memory_bytes, memory);
    SET(max_buffer_bytes, memory);
    SET(max_work_group_size, 1);
    SET(compute_units, (uint32_t)(cpus > 0 ? cpus : 1));
    SET(dtype_mask, ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F32) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F16) |
                        ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_BF16) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F64) |
                        ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I32) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I64) |
                        ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_U8) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_I8) |
                        ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_BOOL));
    SET(timestamps, 1);
    SET(dialects, NULL); /* no kernels: everything runs as native ops */
    SET(native_ops, ref_native_ops);
#undef SET
    return ANYACCEL_OK;
}

/* ---- Memory ---------------------------------------------------------------------------------- */

static AnyaccelStatus api_buffer_alloc(AnyaccelDevice *device, uint64_t bytes,
                                       AnyaccelBuffer **buffer) {
    if (!device_of(device) || !buffer)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "buffer_alloc: expected a device of this plugin and a buffer pointer");
    uint64_t limit = host_memory_bytes();
    if (bytes > limit || bytes > (uint64_t)SIZE_MAX)
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY,
                         "buffer_alloc: %llu bytes requested, the device has %llu bytes",
                         (unsigned long long)bytes, (unsigned long long)limit);
    AnyaccelBuffer *b = malloc(sizeof *b);
    if (!b) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "buffer_alloc: out of host memory");
    b->size = bytes;
    b->data = NULL;
    if (bytes > 0) {
        b->data = malloc((size_t)bytes);
        if (!b->data) {
            free(b);
            return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY,
                             "buffer_alloc: malloc of %llu bytes failed",
                             (unsigned long long)bytes);
        }
    }
    *buffer = b;
    return ANYACCEL_OK;
}

/* ABI 1.1: the buffers are host memory; the host may use them directly between commands. */
static AnyaccelStatus api_buffer_host_ptr(AnyaccelBuffer *buffer, void **ptr) {
    if (!buffer || !ptr)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "buffer_host_ptr: NULL argument");
    *ptr = buffer->data;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_buffer_free(AnyaccelDevice *device, AnyaccelBuffer *buffer) {
    (void)device;
    if (!buffer) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "buffer_free: buffer is NULL");
    free(buffer->data);
    free(buffer);
    return ANYACCEL_OK;
}

/* `what`: [offset, offset + bytes) must lie inside the buffer. */
static AnyaccelStatus check_range(const char *what, const AnyaccelBuffer *b, uint64_t offset,
                                  uint64_t bytes) {
    if (!b) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: buffer is NULL", what);
    if (offset > b->size || bytes > b->size - offset)
        return ref_error(ANYACCEL_ERROR_OUT_OF_BOUNDS,
                         "%s: bytes %llu..%llu of a %llu-byte buffer", what,
                         (unsigned long long)offset, (unsigned long long)(offset + bytes),
                         (unsigned long long)b->size);
    return ANYACCEL_OK;
}

/* ---- Events ---------------------------------------------------------------------------------- */

struct AnyaccelEvent_ {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;           /* the host's reference and one per queued command naming it */
    uint64_t recorded;  /* how many times it was recorded */
    uint64_t completed; /* the last recording that completed */
    AnyaccelStatus error;
    char message[REF_MESSAGE_SIZE];
    struct timespec when;
};

static void event_release(AnyaccelEvent *e) {
    pthread_mutex_lock(&e->mu);
    int refs = --e->refs;
    pthread_mutex_unlock(&e->mu);
    if (refs == 0) {
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
        free(e);
    }
}

static void event_retain(AnyaccelEvent *e) {
    pthread_mutex_lock(&e->mu);
    e->refs++;
    pthread_mutex_unlock(&e->mu);
}

/* Completes recording `gen` of the event, with the stream's error at that point. */
static void event_complete(AnyaccelEvent *e, uint64_t gen, AnyaccelStatus error,
                           const char *message) {
    pthread_mutex_lock(&e->mu);
    if (gen > e->completed) {
        e->completed = gen;
        e->error = error;
        snprintf(e->message, sizeof e->message, "%s", error ? message : "");
        clock_gettime(CLOCK_MONOTONIC, &e->when);
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Waits until recording `gen` has completed; returns its error and copies its message. */
static AnyaccelStatus event_wait_for(AnyaccelEvent *e, uint64_t gen, char *message, size_t size) {
    pthread_mutex_lock(&e->mu);
    while (e->completed < gen) pthread_cond_wait(&e->cv, &e->mu);
    AnyaccelStatus error = e->error;
    if (error && message) snprintf(message, size, "%s", e->message);
    pthread_mutex_unlock(&e->mu);
    return error;
}

static AnyaccelStatus api_event_create(AnyaccelDevice *device, AnyaccelEvent **event) {
    if (!device_of(device) || !event)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "event_create: expected a device of this plugin and an event pointer");
    AnyaccelEvent *e = calloc(1, sizeof *e);
    if (!e) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "event_create: out of host memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->refs = 1;
    clock_gettime(CLOCK_MONOTONIC, &e->when);
    *event = e;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_destroy(AnyaccelEvent *event) {
    if (!event) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_destroy: event is NULL");
    event_release(event);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_query(AnyaccelEvent *event, int32_t *completed) {
    if (!event || !completed)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_query: NULL argument");
    pthread_mutex_lock(&event->mu);
    *completed = event->completed >= event->recorded;
    pthread_mutex_unlock(&event->mu);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_event_synchronize(AnyaccelEvent *event) {
    if (!event)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_synchronize: event is NULL");
    pthread_mutex_lock(&event->mu);
    uint64_t gen = event->recorded;
    pthread_mutex_unlock(&event->mu);
    char message[REF_MESSAGE_SIZE];
    AnyaccelStatus error = event_wait_for(event, gen, message, sizeof message);
    return error ? ref_error(error, "%s", message) : ANYACCEL_OK;
}

static AnyaccelStatus api_event_elapsed_ms(AnyaccelEvent *start, AnyaccelEvent *end, double *ms) {
    if (!start || !end || !ms)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_elapsed_ms: NULL argument");
    struct timespec t[2];
    AnyaccelEvent *ev[2] = {start, end};
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&ev[i]->mu);
        int done = ev[i]->recorded > 0 && ev[i]->completed >= ev[i]->recorded;
        t[i] = ev[i]->when;
        pthread_mutex_unlock(&ev[i]->mu);
        if (!done)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "event_elapsed_ms: the %s event has not completed (or was never "
                             "recorded); wait on both first",
                             i == 0 ? "start" : "end");
    }
    *ms = (double)(t[1].tv_sec - t[0].tv_sec) * 1e3 + (double)(t[1].tv_nsec - t[0].tv_nsec) / 1e6;
    return ANYACCEL_OK;
}

/* ---- Streams: a worker thread each ----------------------------------------------------------- */

typedef enum { CMD_COPY, CMD_FILL, CMD_OP, CMD_RECORD, CMD_WAIT, CMD_COLLECTIVE } CommandKind;

struct Rendezvous;

typedef struct Command {
    CommandKind kind;
    struct Command *next;
    unsigned char *dst; /* CMD_COPY, CMD_FILL */
    const unsigned char *src;
    uint64_t bytes;
    unsigned char pattern[4]; /* CMD_FILL */
    uint32_t pattern_size;
    RefCall *call;        /* CMD_OP */
    AnyaccelEvent *event; /* CMD_RECORD, CMD_WAIT: one reference held */
    uint64_t gen;
    struct Rendezvous *rendezvous; /* CMD_COLLECTIVE: one reference held */
    int rank;
} Command;

static AnyaccelStatus rendezvous_arrive(struct Rendezvous *rv, int rank, int failed, char *message,
                                        size_t size);

struct AnyaccelStream_ {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on new work and on progress */
    Command *head, *tail;
    uint64_t submitted, completed;
    int stop;
    AnyaccelStatus error; /* the first failure since the last synchronize */
    char message[REF_MESSAGE_SIZE];
    pthread_t thread;
    const struct AnyaccelDevice_ *device;
};

/* The bytes of every input and output of `c`, each counted once. */
static double operand_bytes(const RefCall *c) {
    double bytes = 0;
    for (size_t i = 0; i < c->num_inputs; i++)
        if (c->inputs[i].present)
            bytes += (double)ref_numel(&c->inputs[i]) * (double)ref_dtype_size(c->inputs[i].dtype);
    for (size_t i = 0; i < c->num_outputs; i++)
        if (c->outputs[i].present)
            bytes += (double)ref_numel(&c->outputs[i]) * (double)ref_dtype_size(c->outputs[i].dtype);
    return bytes;
}

/* Sleeps until `seconds` after `start` (a paced device's op takes at least its modelled time). */
static void sleep_until(const struct timespec *start, double seconds) {
    struct timespec until = *start;
    double whole = (double)(time_t)seconds;
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) != 0) {
    }
}

static void run_command(AnyaccelStream *s, Command *c, int failed) {
    AnyaccelStatus status = ANYACCEL_OK;
    char message[REF_MESSAGE_SIZE];
    message[0] = '\0';
    switch (c->kind) {
    case CMD_COPY:
        if (!failed && c->bytes) memcpy(c->dst, c->src, (size_t)c->bytes);
        break;
    case CMD_FILL:
        if (!failed)
            for (uint64_t i = 0; i < c->bytes; i += c->pattern_size)
                memcpy(c->dst + i, c->pattern, c->pattern_size);
        break;
    case CMD_OP:
        if (!failed) {
            struct timespec start;
            clock_gettime(CLOCK_MONOTONIC, &start);
            status = ref_call_run(c->call);
            if (status) snprintf(message, sizeof message, "%s", ref_last_error());
            double rate = s->device->bytes_per_second;
            if (rate > 0) sleep_until(&start, operand_bytes(c->call) / rate);
        }
        ref_call_free(c->call);
        break;
    case CMD_RECORD: {
        pthread_mutex_lock(&s->mu);
        AnyaccelStatus error = s->error;
        char copy[REF_MESSAGE_SIZE];
        snprintf(copy, sizeof copy, "%s", s->message);
        pthread_mutex_unlock(&s->mu);
        event_complete(c->event, c->gen, error, copy);
        event_release(c->event);
        break;
    }
    case CMD_WAIT:
        if (!failed) status = event_wait_for(c->event, c->gen, message, sizeof message);
        event_release(c->event);
        break;
    case CMD_COLLECTIVE:
        /* A failed stream still arrives, so that the other ranks do not wait forever. */
        status = rendezvous_arrive(c->rendezvous, c->rank, failed, message, sizeof message);
        break;
    }
    pthread_mutex_lock(&s->mu);
    if (status && !s->error) {
        s->error = status;
        snprintf(s->message, sizeof s->message, "%s", message);
    }
    s->completed++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(c);
}

static void *stream_worker(void *arg) {
    AnyaccelStream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head) break; /* stopped and drained */
        Command *c = s->head;
        s->head = c->next;
        if (!s->head) s->tail = NULL;
        int failed = s->error != ANYACCEL_OK;
        pthread_mutex_unlock(&s->mu);
        run_command(s, c, failed);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static Command *new_command(CommandKind kind) {
    Command *c = calloc(1, sizeof *c);
    if (c) c->kind = kind;
    return c;
}

static AnyaccelStatus submit(AnyaccelStream *s, Command *c) {
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->submitted++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_create(AnyaccelDevice *device, AnyaccelStream **stream) {
    if (!device_of(device) || !stream)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "stream_create: expected a device of this plugin and a stream pointer");
    AnyaccelStream *s = calloc(1, sizeof *s);
    if (!s) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "stream_create: out of host memory");
    s->device = device_of(device);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = pthread_create(&s->thread, NULL, stream_worker, s);
    if (rc != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY,
                         "stream_create: cannot start the stream's thread (error %d)", rc);
    }
    *stream = s;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_destroy(AnyaccelStream *s) {
    if (!s) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_destroy: stream is NULL");
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL); /* the worker drains the FIFO before it stops */
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_stream_synchronize(AnyaccelStream *s) {
    if (!s) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_synchronize: stream is NULL");
    pthread_mutex_lock(&s->mu);
    while (s->completed < s->submitted) pthread_cond_wait(&s->cv, &s->mu);
    AnyaccelStatus error = s->error;
    if (error) ref_error(error, "%s", s->message);
    s->error = ANYACCEL_OK; /* reported: the stream runs again */
    s->message[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    return error;
}

static AnyaccelStatus api_stream_wait_event(AnyaccelStream *s, AnyaccelEvent *event) {
    if (!s || !event)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "stream_wait_event: NULL argument");
    pthread_mutex_lock(&event->mu);
    uint64_t gen = event->recorded;
    pthread_mutex_unlock(&event->mu);
    if (gen == 0) return ANYACCEL_OK; /* never recorded: complete */
    Command *c = new_command(CMD_WAIT);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "stream_wait_event: out of host memory");
    event_retain(event);
    c->event = event;
    c->gen = gen;
    return submit(s, c);
}

static AnyaccelStatus api_event_record(AnyaccelEvent *event, AnyaccelStream *s) {
    if (!s || !event)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "event_record: NULL argument");
    Command *c = new_command(CMD_RECORD);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "event_record: out of host memory");
    pthread_mutex_lock(&event->mu);
    c->gen = ++event->recorded;
    event->refs++;
    pthread_mutex_unlock(&event->mu);
    c->event = event;
    return submit(s, c);
}

static AnyaccelStatus api_copy_h2d(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                                   const void *src, uint64_t bytes) {
    AnyaccelStatus st = check_range("copy_h2d", dst, dst_offset, bytes);
    if (st) return st;
    if (!s || (!src && bytes))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_h2d: NULL stream or source");
    Command *c = new_command(CMD_COPY);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "copy_h2d: out of host memory");
    c->dst = dst->data + dst_offset;
    c->src = src;
    c->bytes = bytes;
    return submit(s, c);
}

static AnyaccelStatus api_copy_d2h(AnyaccelStream *s, void *dst, AnyaccelBuffer *src,
                                   uint64_t src_offset, uint64_t bytes) {
    AnyaccelStatus st = check_range("copy_d2h", src, src_offset, bytes);
    if (st) return st;
    if (!s || (!dst && bytes))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_d2h: NULL stream or destination");
    Command *c = new_command(CMD_COPY);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "copy_d2h: out of host memory");
    c->dst = dst;
    c->src = src->data + src_offset;
    c->bytes = bytes;
    return submit(s, c);
}

static AnyaccelStatus api_copy_d2d(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                                   AnyaccelBuffer *src, uint64_t src_offset, uint64_t bytes) {
    AnyaccelStatus st = check_range("copy_d2d dst", dst, dst_offset, bytes);
    if (!st) st = check_range("copy_d2d src", src, src_offset, bytes);
    if (st) return st;
    if (!s) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_d2d: stream is NULL");
    Command *c = new_command(CMD_COPY);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "copy_d2d: out of host memory");
    c->dst = dst->data + dst_offset;
    c->src = src->data + src_offset;
    c->bytes = bytes;
    return submit(s, c);
}

/* ABI 1.1: a copy between two devices of this plugin. Both live in host memory, so the "link"
 * is a memcpy on the destination's stream; a chip's plugin uses its device-to-device path. */
static AnyaccelStatus api_copy_peer(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                                    AnyaccelBuffer *src, uint64_t src_offset, uint64_t bytes) {
    AnyaccelStatus st = check_range("copy_peer dst", dst, dst_offset, bytes);
    if (!st) st = check_range("copy_peer src", src, src_offset, bytes);
    if (st) return st;
    if (!s) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "copy_peer: stream is NULL");
    if (dst == src)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "copy_peer: source and destination are one buffer: expected buffers of "
                         "two devices");
    Command *c = new_command(CMD_COPY);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "copy_peer: out of host memory");
    c->dst = dst->data + dst_offset;
    c->src = src->data + src_offset;
    c->bytes = bytes;
    return submit(s, c);
}

static AnyaccelStatus api_fill(AnyaccelStream *s, AnyaccelBuffer *dst, uint64_t dst_offset,
                               uint64_t bytes, const void *pattern, uint32_t pattern_size) {
    AnyaccelStatus st = check_range("fill", dst, dst_offset, bytes);
    if (st) return st;
    if (!s || !pattern || (pattern_size != 1 && pattern_size != 2 && pattern_size != 4) ||
        bytes % pattern_size != 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "fill: pattern of %u bytes for %llu bytes, expected a 1-, 2- or 4-byte "
                         "pattern dividing the length",
                         (unsigned)pattern_size, (unsigned long long)bytes);
    Command *c = new_command(CMD_FILL);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "fill: out of host memory");
    c->dst = dst->data + dst_offset;
    c->bytes = bytes;
    memcpy(c->pattern, pattern, pattern_size);
    c->pattern_size = pattern_size;
    return submit(s, c);
}

/* ---- Native ops ------------------------------------------------------------------------------ */

static int32_t api_op_supported(AnyaccelDevice *device, const AnyaccelOpCall *call) {
    return device_of(device) ? ref_op_supported(call) : 0;
}

static AnyaccelStatus api_op_execute(AnyaccelStream *s, const AnyaccelOpCall *call) {
    if (!s || !call) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "op_execute: NULL argument");
#ifdef REF_CRASH_OP
    /* A test build: crash in this op, to prove that the host isolates a crashing plugin. */
    if (call->op && strcmp(call->op, REF_CRASH_OP) == 0) abort();
#endif
    RefCall *copy = NULL;
    AnyaccelStatus st = ref_call_copy(call, &copy);
    if (st) return st;
#ifdef REF_GARBAGE_OP
    /* A test build: declare the op but compute it wrongly (as `sub`), to prove that conformance
     * diagnoses a plugin that returns garbage. */
    if (strcmp(copy->op, REF_GARBAGE_OP) == 0) {
        free(copy->op);
        copy->op = malloc(4);
        if (!copy->op) {
            ref_call_free(copy);
            return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "op_execute: out of host memory");
        }
        memcpy(copy->op, "sub", 4);
    }
#endif
    Command *c = new_command(CMD_OP);
    if (!c) {
        ref_call_free(copy);
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "op_execute: out of host memory");
    }
    c->call = copy;
    return submit(s, c);
}

/* ---- Collectives (ABI 1.1) ------------------------------------------------------------------ */

/* The reference plugin's collective library. A collective is one command on every rank's stream;
 * each rank's command waits at a rendezvous until every rank's stream has reached it (so every
 * input is ready), and the last to arrive computes the whole collective for all ranks: floats
 * combined in double in rank order and rounded once, integers wrapping, as anyaccel's host path
 * does, so every rank gets the same bits. A stream that had failed arrives too; the collective is
 * then skipped and fails on every rank. */

enum { COLL_ALL_REDUCE, COLL_BROADCAST, COLL_ALL_GATHER, COLL_REDUCE_SCATTER };

struct AnyaccelComm_ {
    int ranks;
    const struct AnyaccelDevice_ *devices[REF_MAX_DEVICES * 4];
};

typedef struct RankIo {
    const unsigned char *send;
    unsigned char *recv;
} RankIo;

typedef struct Rendezvous {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kind, ranks, arrived, released, done, failed_rank;
    RefDType dtype;
    uint64_t count;
    int32_t op_or_root;
    RankIo io[];
} Rendezvous;

static double reduce_pair(double a, double x, int32_t op) {
    if (op == ANYACCEL_REDUCE_SUM || op == ANYACCEL_REDUCE_MEAN) return a + x;
    if (a != a || x != x) return NAN;
    if (op == ANYACCEL_REDUCE_MAX) return x > a ? x : a;
    return x < a ? x : a;
}

static int64_t reduce_pair_i(int64_t a, int64_t x, int32_t op) {
    if (op == ANYACCEL_REDUCE_MAX) return x > a ? x : a;
    if (op == ANYACCEL_REDUCE_MIN) return x < a ? x : a;
    return (int64_t)((uint64_t)a + (uint64_t)x);
}

/* Element `i` of the reduction of every rank's send at element offset `at`, stored at `out`. */
static void reduce_element(const Rendezvous *rv, uint64_t at, unsigned char *out) {
    size_t size = ref_dtype_size(rv->dtype);
    if (ref_is_float(rv->dtype)) {
        double acc = ref_load_f(rv->dtype, rv->io[0].send + at * size);
        for (int r = 1; r < rv->ranks; r++)
            acc = reduce_pair(acc, ref_load_f(rv->dtype, rv->io[r].send + at * size), rv->op_or_root);
        if (rv->op_or_root == ANYACCEL_REDUCE_MEAN) acc /= (double)rv->ranks;
        ref_store_f(rv->dtype, out, acc);
    } else {
        int64_t acc = ref_load_i(rv->dtype, rv->io[0].send + at * size);
        for (int r = 1; r < rv->ranks; r++)
            acc = reduce_pair_i(acc, ref_load_i(rv->dtype, rv->io[r].send + at * size), rv->op_or_root);
        ref_store_i(rv->dtype, out, acc);
    }
}

static void collective_run(Rendezvous *rv) {
    size_t size = ref_dtype_size(rv->dtype);
    uint64_t n = rv->count;
    unsigned char tmp[8];
    switch (rv->kind) {
    case COLL_ALL_REDUCE:
        /* Element by element, every rank read before any is written: send may be recv. */
        for (uint64_t i = 0; i < n; i++) {
            reduce_element(rv, i, tmp);
            for (int r = 0; r < rv->ranks; r++) memcpy(rv->io[r].recv + i * size, tmp, size);
        }
        break;
    case COLL_BROADCAST: {
        const unsigned char *root = rv->io[rv->op_or_root].send;
        for (int r = 0; r < rv->ranks; r++)
            if (rv->io[r].recv != root) memcpy(rv->io[r].recv, root, (size_t)(n * size));
        break;
    }
    case COLL_ALL_GATHER:
        for (int r = 0; r < rv->ranks; r++)
            for (int p = 0; p < rv->ranks; p++)
                memcpy(rv->io[r].recv + (uint64_t)p * n * size, rv->io[p].send, (size_t)(n * size));
        break;
    case COLL_REDUCE_SCATTER:
        for (int r = 0; r < rv->ranks; r++)
            for (uint64_t i = 0; i < n; i++)
                reduce_element(rv, (uint64_t)r * n + i, rv->io[r].recv + i * size);
        break;
    }
}

static AnyaccelStatus rendezvous_arrive(Rendezvous *rv, int rank, int failed, char *message,
                                        size_t size) {
    pthread_mutex_lock(&rv->mu);
    if (failed && rv->failed_rank < 0) rv->failed_rank = rank;
    if (++rv->arrived == rv->ranks) {
        if (rv->failed_rank < 0) collective_run(rv);
        rv->done = 1;
        pthread_cond_broadcast(&rv->cv);
    }
    while (!rv->done) pthread_cond_wait(&rv->cv, &rv->mu);
    int failed_rank = rv->failed_rank;
    int last = ++rv->released == rv->ranks;
    pthread_mutex_unlock(&rv->mu);
    if (last) {
        pthread_cond_destroy(&rv->cv);
        pthread_mutex_destroy(&rv->mu);
        free(rv);
    }
    if (failed_rank >= 0 && !failed) {
        snprintf(message, size,
                 "collective not run: the stream of rank %d had failed before it", failed_rank);
        return ANYACCEL_ERROR_LAUNCH_FAILED;
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus api_comm_create(AnyaccelDevice *const *devices, int32_t count,
                                      AnyaccelComm **comm) {
    if (!devices || !comm || count < 1 || count > REF_MAX_DEVICES * 4)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "comm_create: %d devices, expected 1 to %d and non-NULL pointers",
                         (int)count, REF_MAX_DEVICES * 4);
    AnyaccelComm *c = calloc(1, sizeof *c);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "comm_create: out of host memory");
    for (int32_t r = 0; r < count; r++) {
        c->devices[r] = device_of(devices[r]);
        if (!c->devices[r]) {
            free(c);
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "comm_create: devices[%d] is not a device of this plugin", (int)r);
        }
    }
    c->ranks = count;
    *comm = c;
    return ANYACCEL_OK;
}

static AnyaccelStatus api_comm_destroy(AnyaccelComm *comm) {
    if (!comm) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "comm_destroy: comm is NULL");
    free(comm);
    return ANYACCEL_OK;
}

/* Checks a collective's arguments and enqueues it on every rank's stream. `send_elems` and
 * `recv_elems` are the elements each rank's send and recv hold. */
static AnyaccelStatus collective_submit(const char *f, int kind, AnyaccelComm *comm,
                                        const AnyaccelCollectiveRank *ranks, uint64_t count,
                                        int32_t dtype, int32_t op_or_root, uint64_t send_elems,
                                        uint64_t recv_elems) {
    if (!comm || !ranks) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: NULL argument", f);
    int reducing = kind == COLL_ALL_REDUCE || kind == COLL_REDUCE_SCATTER;
    RefDType d = dtype;
    if (ref_dtype_size(d) == 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: dtype code %d is not a dtype", f,
                         (int)dtype);
    if (reducing) {
        int integer = d == ANYACCEL_DTYPE_I32 || d == ANYACCEL_DTYPE_I64;
        if (op_or_root < ANYACCEL_REDUCE_SUM || op_or_root > ANYACCEL_REDUCE_MEAN)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: reduce op %d, expected 0 to 3",
                             f, (int)op_or_root);
        if (!ref_is_float(d) && !(integer && op_or_root != ANYACCEL_REDUCE_MEAN))
            return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: cannot reduce %s with op %d", f,
                             ref_dtype_name(d), (int)op_or_root);
    }
    if (kind == COLL_BROADCAST && (op_or_root < 0 || op_or_root >= comm->ranks))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: root %d of %d ranks", f,
                         (int)op_or_root, comm->ranks);
    size_t size = ref_dtype_size(d);
    if (send_elems > UINT64_MAX / size || recv_elems > UINT64_MAX / size)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: %llu elements overflow", f,
                         (unsigned long long)recv_elems);
    Rendezvous *rv = calloc(1, sizeof *rv + (size_t)comm->ranks * sizeof(RankIo));
    Command **cmds = calloc((size_t)comm->ranks, sizeof *cmds);
    if (!rv || !cmds) {
        free(rv);
        free(cmds);
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", f);
    }
    AnyaccelStatus st = ANYACCEL_OK;
    for (int r = 0; r < comm->ranks && !st; r++) {
        const AnyaccelCollectiveRank *rk = ANYACCEL_ARRAY_AT(ranks, AnyaccelCollectiveRank, r);
        int sends = kind != COLL_BROADCAST || r == op_or_root;
        if (!rk->stream || !rk->recv || (sends && !rk->send)) {
            st = ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: rank %d has a NULL stream or buffer",
                           f, r);
            break;
        }
        for (int p = 0; p < r && !st; p++)
            if (ANYACCEL_ARRAY_AT(ranks, AnyaccelCollectiveRank, p)->stream == rk->stream)
                st = ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                               "%s: ranks %d and %d share a stream: expected one stream a rank", f,
                               p, r);
        if (st) break;
        st = check_range(f, rk->recv, rk->recv_offset, recv_elems * size);
        if (!st && sends) st = check_range(f, rk->send, rk->send_offset, send_elems * size);
        if (st) break;
        rv->io[r].recv = rk->recv->data + rk->recv_offset;
        rv->io[r].send = sends ? rk->send->data + rk->send_offset : NULL;
        cmds[r] = new_command(CMD_COLLECTIVE);
        if (!cmds[r]) st = ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", f);
    }
    if (st) {
        for (int r = 0; r < comm->ranks; r++) free(cmds[r]);
        free(cmds);
        free(rv);
        return st;
    }
    pthread_mutex_init(&rv->mu, NULL);
    pthread_cond_init(&rv->cv, NULL);
    rv->kind = kind;
    rv->ranks = comm->ranks;
    rv->failed_rank = -1;
    rv->dtype = d;
    rv->count = count;
    rv->op_or_root = op_or_root;
    /* Every command exists: submitting cannot fail, so every rank arrives. */
    for (int r = 0; r < comm->ranks; r++) {
        cmds[r]->rendezvous = rv;
        cmds[r]->rank = r;
        submit(ANYACCEL_ARRAY_AT(ranks, AnyaccelCollectiveRank, r)->stream, cmds[r]);
    }
    free(cmds);
    return ANYACCEL_OK;
}

static AnyaccelStatus api_all_reduce(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                     uint64_t count, int32_t dtype, int32_t op) {
    return collective_submit("all_reduce", COLL_ALL_REDUCE, comm, ranks, count, dtype, op, count,
                             count);
}

static AnyaccelStatus api_broadcast(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                    uint64_t count, int32_t dtype, int32_t root) {
    return collective_submit("broadcast", COLL_BROADCAST, comm, ranks, count, dtype, root, count,
                             count);
}

static AnyaccelStatus api_all_gather(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                     uint64_t count, int32_t dtype) {
    uint64_t n = comm ? (uint64_t)comm->ranks : 0;
    if (n && count > UINT64_MAX / n)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "all_gather: count overflows");
    return collective_submit("all_gather", COLL_ALL_GATHER, comm, ranks, count, dtype, 0, count,
                             count * n);
}

static AnyaccelStatus api_reduce_scatter(AnyaccelComm *comm, const AnyaccelCollectiveRank *ranks,
                                         uint64_t count, int32_t dtype, int32_t op) {
    uint64_t n = comm ? (uint64_t)comm->ranks : 0;
    if (n && count > UINT64_MAX / n)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "reduce_scatter: count overflows");
    return collective_submit("reduce_scatter", COLL_REDUCE_SCATTER, comm, ranks, count, dtype, op,
                             count * n, count);
}

static const AnyaccelCollectivesApi collectives = {
    .struct_size = sizeof(AnyaccelCollectivesApi),
    .comm_create = api_comm_create,
    .comm_destroy = api_comm_destroy,
    .all_reduce = api_all_reduce,
    .broadcast = api_broadcast,
    .all_gather = api_all_gather,
    .reduce_scatter = api_reduce_scatter,
};

/* ---- The table ------------------------------------------------------------------------------- */

static const AnyaccelPluginApi api = {
    .struct_size = sizeof(AnyaccelPluginApi),
    .abi_major = ANYACCEL_PLUGIN_ABI_MAJOR,
    .abi_minor = ANYACCEL_PLUGIN_ABI_MINOR,
    .name = REF_PLUGIN_NAME,
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
    /* No kernels: module_load, module_unload, kernel_get and kernel_launch stay NULL. */
    .op_supported = api_op_supported,
    .op_execute = api_op_execute,
    .copy_peer = api_copy_peer,
    .collectives = &collectives,
    .buffer_host_ptr = api_buffer_host_ptr,
};

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t host_abi_major,
                                                                        uint32_t host_abi_minor) {
    (void)host_abi_minor; /* any minor of our major can read this table */
    if (host_abi_major != ANYACCEL_PLUGIN_ABI_MAJOR) {
        ref_error(ANYACCEL_ERROR_ABI_MISMATCH,
                  "the host speaks plugin ABI %u.%u, this plugin ABI %d.%d", host_abi_major,
                  host_abi_minor, ANYACCEL_PLUGIN_ABI_MAJOR, ANYACCEL_PLUGIN_ABI_MINOR);
        return NULL;
    }
    return &api;
}
