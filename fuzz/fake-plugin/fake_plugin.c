/*
 * A plugin library whose table is whatever the fuzz target hands it: the target sets the table
 * with anyaccel_fuzz_set_table, then loads this file as a plugin, so that the host's real
 * loading path (dlopen, the entry symbol, the table checks) reads a fuzzed table. The table's
 * function pointers point at stubs inside the fuzz target.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include <stdint.h>

static const void *table;

void anyaccel_fuzz_set_table(const void *t) { table = t; }

const void *anyaccel_plugin_get_api(uint32_t host_abi_major, uint32_t host_abi_minor) {
    (void)host_abi_major;
    (void)host_abi_minor;
    return table;
}
