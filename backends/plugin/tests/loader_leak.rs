//! Opening a plugin library, accepted or rejected, leaves no Rust allocation behind once the
//! backend is dropped: the library itself stays loaded (by design), but nothing on the heap is
//! lost per library. Counted with a global allocator that tallies the test thread's live
//! allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use anyaccel_hal::Backend;
use anyaccel_plugin::PluginBackend;

/// The system allocator, counting the allocations each thread makes minus those it frees.
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn live() -> i64 {
    LIVE.with(|c| c.get())
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - 1));
        // SAFETY: forwarded; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations that opening (and dropping) the library at `path` `n` times leaves behind,
/// after one warm-up open (the dynamic loader and the thread's first error message allocate
/// once per process).
fn leaked_by_opening(path: &std::path::Path, n: i64) -> i64 {
    let open = || {
        let backend = PluginBackend::load(path);
        // The name and the reason (or the devices) are built and dropped here too.
        let _ = backend.probe().map(|d| d.len());
        drop(backend);
    };
    open();
    let before = live();
    for _ in 0..n {
        open();
    }
    live() - before
}

#[test]
fn opening_plugins_leaks_nothing() {
    let no_entry = common::build_c(
        "leak_no_entry",
        "#include \"anyaccel_plugin.h\"\n\
         ANYACCEL_PLUGIN_EXPORT int something_else(void) { return 1; }\n",
    );
    let future_abi = common::table_plugin(
        "leak_future_abi",
        ".struct_size = sizeof(AnyaccelPluginApi), .abi_major = 2, .abi_minor = 0, .name = \"future\"",
    );
    let reference = common::reference_plugin();
    for (what, path, usable) in [
        ("a library without the entry symbol", &no_entry, false),
        ("a plugin of ABI major 2", &future_abi, false),
        ("the reference plugin", &reference, true),
    ] {
        assert_eq!(
            PluginBackend::load(path).probe().is_ok(),
            usable,
            "{what}: {}",
            path.display()
        );
        let leaked = leaked_by_opening(path, 16);
        assert_eq!(
            leaked, 0,
            "{what}: opening it 16 times left {leaked} allocations behind"
        );
    }
}
