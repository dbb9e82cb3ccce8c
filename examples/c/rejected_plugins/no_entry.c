/* A shared library that is no plugin: it lacks the entry symbol anyaccel_plugin_get_api. */
int anyaccel_example_not_a_plugin(void);
int anyaccel_example_not_a_plugin(void) { return 1; }
