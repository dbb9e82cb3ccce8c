/*
 * A plugin whose table lacks a required function: the reference plugin's table with copy_d2d
 * set to NULL. The loader must refuse it, naming copy_d2d.
 */
#define anyaccel_plugin_get_api ref_table
#include "plugin.c"
#undef anyaccel_plugin_get_api

static AnyaccelPluginApi patched;

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t host_abi_major,
                                                                        uint32_t host_abi_minor) {
    const AnyaccelPluginApi *full = ref_table(host_abi_major, host_abi_minor);
    if (!full) return NULL;
    patched = *full;
    patched.name = "nullfunction";
    patched.copy_d2d = NULL;
    return &patched;
}
