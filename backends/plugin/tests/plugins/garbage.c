/*
 * A plugin that returns garbage: the reference plugin, except that it declares `add` and
 * computes `sub` in its place. Conformance must fail its add cases with a diagnosis (the bad
 * element, what it got and what was expected).
 */
#define REF_PLUGIN_NAME "garbage"
#define REF_GARBAGE_OP "add"
#include "plugin.c"
