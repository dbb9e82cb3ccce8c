/*
 * Plugins that break while the host loads them, enumerates their devices or runs an op: the
 * reference plugin with one function of its table replaced. Built once per mode, with -D:
 *
 *   BROKEN_CRASH_ENTRY    the entry point (anyaccel_plugin_get_api) dies of SIGSEGV
 *   BROKEN_HANG_ENTRY     the entry point never returns
 *   BROKEN_CRASH_INFO     device_info dies of SIGSEGV
 *   BROKEN_HANG_COUNT     device_count never returns
 *   BROKEN_COUNT_ERROR    device_count returns an error (an ordinary unavailable backend)
 *   BROKEN_HANG_OP        op_execute of `add` never returns
 *   BROKEN_DIRECT_ERRORS  not broken: op_execute waits for the op and returns its failure (an
 *                         index out of range) itself, as the header allows for OUT_OF_BOUNDS
 *   BROKEN_IGNORE_OUT_STRIDES
 *                         every op writes its outputs as if they were contiguous (keeping their
 *                         offsets), whatever strides the host gave
 *
 * BROKEN_NAME is the plugin's name. The host must turn each into a verdict with the reason and
 * go on with the other backends and cases.
 */
#define anyaccel_plugin_get_api ref_table
#include "plugin.c"
#undef anyaccel_plugin_get_api

/* A real fault, not raise(): a host may handle a raised SIGSEGV and return (Rust's runtime does,
 * to tell stack overflows apart); a faulting store then runs again and kills the process. */
static volatile int *volatile nowhere = NULL;

static void fault(void) {
    *nowhere = 1;
}

static void never_return(void) {
    for (;;) sleep(1);
}

static AnyaccelStatus broken_device_info(AnyaccelDevice *device, AnyaccelDeviceInfo *info) {
    (void)device;
    (void)info;
    fault();
    return ANYACCEL_OK;
}

static AnyaccelStatus broken_device_count(int32_t *count) {
#ifdef BROKEN_COUNT_ERROR
    (void)count;
    return ref_error(ANYACCEL_ERROR_UNAVAILABLE, "device_count: the card did not answer (test plugin)");
#else
    (void)count;
    never_return();
    return ANYACCEL_OK;
#endif
}

static AnyaccelStatus broken_op_execute(AnyaccelStream *s, const AnyaccelOpCall *call) {
    if (call && call->op && strcmp(call->op, "add") == 0) never_return();
    return api_op_execute(s, call);
}

static AnyaccelStatus direct_op_execute(AnyaccelStream *s, const AnyaccelOpCall *call) {
    AnyaccelStatus st = api_op_execute(s, call);
    if (st) return st;
    /* The stream's failure, if the op failed, comes back here (and the stream is clear). */
    return api_stream_synchronize(s);
}

#define MAX_OUTPUTS 8
#define MAX_RANK 16

static AnyaccelStatus contiguous_out_op_execute(AnyaccelStream *s, const AnyaccelOpCall *call) {
    if (!call || call->num_outputs > MAX_OUTPUTS) return api_op_execute(s, call);
    AnyaccelTensor outs[MAX_OUTPUTS];
    const AnyaccelTensor *out_ptrs[MAX_OUTPUTS];
    int64_t strides[MAX_OUTPUTS][MAX_RANK];
    for (size_t k = 0; k < call->num_outputs; k++) {
        const AnyaccelTensor *t = call->outputs[k];
        if (!t || t->ndim < 0 || t->ndim > MAX_RANK) return api_op_execute(s, call);
        outs[k] = *t;
        int64_t step = 1;
        for (int32_t d = t->ndim - 1; d >= 0; d--) {
            strides[k][d] = step;
            step *= t->shape[d];
        }
        outs[k].strides = strides[k];
        out_ptrs[k] = &outs[k];
    }
    AnyaccelOpCall ignoring = *call;
    ignoring.outputs = out_ptrs;
    /* The reference plugin copies the call before it returns: the arrays above may go. */
    return api_op_execute(s, &ignoring);
}

static AnyaccelPluginApi patched;

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t host_abi_major,
                                                                        uint32_t host_abi_minor) {
#ifdef BROKEN_CRASH_ENTRY
    fault();
#endif
#ifdef BROKEN_HANG_ENTRY
    never_return();
#endif
    const AnyaccelPluginApi *full = ref_table(host_abi_major, host_abi_minor);
    if (!full) return NULL;
    patched = *full;
    patched.name = BROKEN_NAME;
#ifdef BROKEN_CRASH_INFO
    patched.device_info = broken_device_info;
#endif
#if defined(BROKEN_HANG_COUNT) || defined(BROKEN_COUNT_ERROR)
    patched.device_count = broken_device_count;
#endif
#ifdef BROKEN_HANG_OP
    patched.op_execute = broken_op_execute;
#endif
#ifdef BROKEN_IGNORE_OUT_STRIDES
    patched.op_execute = contiguous_out_op_execute;
#endif
#ifdef BROKEN_DIRECT_ERRORS
    patched.op_execute = direct_op_execute;
#endif
    (void)broken_device_info;
    (void)broken_device_count;
    (void)broken_op_execute;
    (void)contiguous_out_op_execute;
    (void)direct_op_execute;
    return &patched;
}
