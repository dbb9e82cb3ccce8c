/*
 * A deliberately crashing plugin: the reference plugin, except that op_execute calls abort()
 * for `add`. The conformance runner must report `crashed` for the add cases and keep the rest
 * of the report.
 */
#define REF_PLUGIN_NAME "crashing"
#define REF_CRASH_OP "add"
#include "plugin.c"
