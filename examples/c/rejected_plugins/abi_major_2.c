/* A plugin built for a future plugin ABI major (2): the loader refuses it, naming both
 * versions. */
#include "anyaccel_plugin.h"

static const AnyaccelPluginApi api = {
    .struct_size = sizeof(AnyaccelPluginApi), .abi_major = 2, .abi_minor = 0, .name = "future"};

ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t major,
                                                                        uint32_t minor) {
    (void)major;
    (void)minor;
    return &api;
}
