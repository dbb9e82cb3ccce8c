//! The plugin loader's table checks, over a fuzzed in-process table.
//!
//! The table has a random `struct_size` (its allocation has exactly that many bytes when it is
//! small, so reading past it is an AddressSanitizer report), a random ABI version, a name and
//! version that are NULL, valid or hostile, and each function NULL or a stub in this file. The
//! stubs behave as a plausible C plugin that trusts its host: they report device counts, fill
//! device infos with fuzzed values, and copy exactly the bytes the host asks for (so a host
//! that passes a wrong size is caught by AddressSanitizer), or fail with an error code.
//!
//! The table reaches the loader through the real path: `fake-plugin/fake_plugin.c` is a shared
//! library whose entry point returns the table this target sets, and the target loads it with
//! `PluginBackend::load`, so the table checks run exactly as they do for a vendor's library.
//!
//! Accepted plugins are probed, and each device is used: its info, a buffer, a queue, writes,
//! reads, a fill and a copy, then everything is dropped (device_close runs).

#![no_main]

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use anyaccel_hal::{Backend, Device};
use anyaccel_plugin::sys::{self, AnyaccelPluginApi, AnyaccelStatus};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Size {
    Exact,
    Small(u8),
    Larger(u16),
    Raw(u64),
}

#[derive(Debug, Arbitrary)]
enum Text {
    Null,
    Valid(u8),
    Any(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
struct Behaviour {
    count: i8,
    count_status: u8,
    open_status: u8,
    open_null: bool,
    info_status: u8,
    info_text: Vec<u8>,
    memory_bytes: u64,
    max_buffer_bytes: u64,
    dtype_mask: u32,
    compute_units: u32,
    lists: u8,
    alloc_status: u8,
    copy_status: u8,
    stream_status: u8,
    event_status: u8,
    last_error_null: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    size: Size,
    major: u8,
    minor: u32,
    name: Text,
    version: Text,
    /// Bit i clear: function i of the table (after `version`) is NULL.
    present: u32,
    behaviour: Behaviour,
    buffer_len: u16,
    offset: u16,
}

static BEHAVIOUR: Mutex<Option<Behaviour>> = Mutex::new(None);
static LIVE_BUFFERS: AtomicI32 = AtomicI32::new(0);
static HANDLES: AtomicU64 = AtomicU64::new(0x1000);

fn with<T>(f: impl FnOnce(&Behaviour) -> T) -> T {
    let b = BEHAVIOUR.lock().unwrap_or_else(|p| p.into_inner());
    f(b.as_ref().expect("behaviour set before loading"))
}

/// A status from a fuzzed byte: mostly OK, else a code (sometimes one that is no code).
fn status(byte: u8) -> AnyaccelStatus {
    match byte % 8 {
        0..=5 => 0,
        6 => 1 + (byte / 8) as i32 % 11,
        _ => byte as i32 * 1000 - 128_000,
    }
}

fn fake_handle<T>() -> *mut T {
    HANDLES.fetch_add(16, Ordering::Relaxed) as usize as *mut T
}

unsafe extern "C" fn last_error() -> *const c_char {
    if with(|b| b.last_error_null) {
        std::ptr::null()
    } else {
        c"fuzz stub failed".as_ptr()
    }
}

unsafe extern "C" fn device_count(count: *mut i32) -> AnyaccelStatus {
    let (n, s) = with(|b| (b.count, status(b.count_status)));
    // SAFETY: the host passes a valid i32 out-pointer.
    unsafe {
        *count = if n >= -4 {
            (n % 4) as i32
        } else {
            n as i32 * 0x0100_0000
        }
    };
    s
}

unsafe extern "C" fn device_open(
    _index: i32,
    device: *mut *mut sys::AnyaccelDevice,
) -> AnyaccelStatus {
    let (null, s) = with(|b| (b.open_null, status(b.open_status)));
    // SAFETY: a valid out-pointer.
    unsafe {
        *device = if null {
            std::ptr::null_mut()
        } else {
            fake_handle()
        }
    };
    s
}

unsafe extern "C" fn device_close(_device: *mut sys::AnyaccelDevice) -> AnyaccelStatus {
    0
}

struct List([*const c_char; 4]);
// SAFETY: pointers to static C strings, never written.
unsafe impl Sync for List {}
static DIALECTS: List = List([
    c"host".as_ptr(),
    c"spirv".as_ptr(),
    c"weird dialect".as_ptr(),
    std::ptr::null(),
]);
static OPS: List = List([
    c"add".as_ptr(),
    c"matmul".as_ptr(),
    c"no_such_op".as_ptr(),
    std::ptr::null(),
]);
static EMPTY: List = List([std::ptr::null(); 4]);

unsafe extern "C" fn device_info(
    _device: *mut sys::AnyaccelDevice,
    info: *mut sys::AnyaccelDeviceInfo,
) -> AnyaccelStatus {
    let b = with(|b| b.clone());
    // SAFETY: the host passes a zeroed info whose struct_size it set; fill only what it covers.
    let host_size = unsafe { (*info).struct_size };
    if host_size < std::mem::size_of::<sys::AnyaccelDeviceInfo>() {
        return status(b.info_status);
    }
    // SAFETY: the whole struct is covered.
    let info = unsafe { &mut *info };
    for (i, slot) in info.name.iter_mut().take(255).enumerate() {
        *slot = b.info_text.get(i).copied().unwrap_or(0) as c_char;
    }
    for (i, slot) in info.vendor.iter_mut().take(127).enumerate() {
        *slot = b.info_text.get(i + 7).copied().unwrap_or(0) as c_char;
    }
    info.driver_version[0] = b'1' as c_char;
    info.memory_bytes = b.memory_bytes;
    info.max_buffer_bytes = b.max_buffer_bytes;
    info.max_work_group_size = b.memory_bytes >> 32;
    info.compute_units = b.compute_units;
    info.dtype_mask = b.dtype_mask;
    info.timestamps = (b.lists & 1) as i32;
    let pick = |k: u8| match k % 3 {
        0 => std::ptr::null(),
        1 => EMPTY.0.as_ptr(),
        _ => DIALECTS.0.as_ptr(),
    };
    info.dialects = pick(b.lists >> 1);
    info.native_ops = if b.lists & 0x40 != 0 {
        OPS.0.as_ptr()
    } else {
        pick(b.lists >> 3)
    };
    status(b.info_status)
}

/// A buffer: its size, then its bytes.
unsafe extern "C" fn buffer_alloc(
    _device: *mut sys::AnyaccelDevice,
    bytes: u64,
    buffer: *mut *mut sys::AnyaccelBuffer,
) -> AnyaccelStatus {
    let s = with(|b| status(b.alloc_status));
    if s != 0 || bytes > 1 << 20 {
        // SAFETY: a valid out-pointer.
        unsafe { *buffer = std::ptr::null_mut() };
        return if s != 0 { s } else { 5 };
    }
    let mem: Box<[u8]> = vec![0u8; bytes as usize].into_boxed_slice();
    let boxed: Box<Box<[u8]>> = Box::new(mem);
    LIVE_BUFFERS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a valid out-pointer.
    unsafe { *buffer = Box::into_raw(boxed).cast() };
    0
}

unsafe extern "C" fn buffer_free(
    _device: *mut sys::AnyaccelDevice,
    buffer: *mut sys::AnyaccelBuffer,
) -> AnyaccelStatus {
    if !buffer.is_null() {
        LIVE_BUFFERS.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: made by buffer_alloc, freed once by the host's contract.
        drop(unsafe { Box::from_raw(buffer.cast::<Box<[u8]>>()) });
    }
    0
}

/// The bytes of a stub buffer, trusting the host's offset (as a C plugin would).
///
/// # Safety
/// `buffer` was made by `buffer_alloc`.
unsafe fn bytes_of(buffer: *mut sys::AnyaccelBuffer) -> *mut u8 {
    // SAFETY: by the contract above.
    unsafe { (*buffer.cast::<Box<[u8]>>()).as_mut_ptr() }
}

unsafe extern "C" fn copy_h2d(
    _s: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    dst_offset: u64,
    src: *const c_void,
    bytes: u64,
) -> AnyaccelStatus {
    // SAFETY: the host promises the ranges; AddressSanitizer checks the promise.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.cast::<u8>(),
            bytes_of(dst).add(dst_offset as usize),
            bytes as usize,
        )
    };
    with(|b| status(b.copy_status))
}

unsafe extern "C" fn copy_d2h(
    _s: *mut sys::AnyaccelStream,
    dst: *mut c_void,
    src: *mut sys::AnyaccelBuffer,
    src_offset: u64,
    bytes: u64,
) -> AnyaccelStatus {
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes_of(src).add(src_offset as usize),
            dst.cast::<u8>(),
            bytes as usize,
        )
    };
    with(|b| status(b.copy_status))
}

unsafe extern "C" fn copy_d2d(
    _s: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    dst_offset: u64,
    src: *mut sys::AnyaccelBuffer,
    src_offset: u64,
    bytes: u64,
) -> AnyaccelStatus {
    // SAFETY: as above.
    unsafe {
        std::ptr::copy(
            bytes_of(src).add(src_offset as usize),
            bytes_of(dst).add(dst_offset as usize),
            bytes as usize,
        )
    };
    with(|b| status(b.copy_status))
}

unsafe extern "C" fn fill(
    _s: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    dst_offset: u64,
    bytes: u64,
    pattern: *const c_void,
    pattern_size: u32,
) -> AnyaccelStatus {
    let p = pattern_size.max(1) as usize;
    for i in 0..bytes as usize {
        // SAFETY: as above; the pattern has pattern_size bytes.
        unsafe { *bytes_of(dst).add(dst_offset as usize + i) = *pattern.cast::<u8>().add(i % p) };
    }
    with(|b| status(b.copy_status))
}

unsafe extern "C" fn stream_create(
    _d: *mut sys::AnyaccelDevice,
    stream: *mut *mut sys::AnyaccelStream,
) -> AnyaccelStatus {
    // SAFETY: a valid out-pointer.
    unsafe { *stream = fake_handle() };
    with(|b| status(b.stream_status))
}

unsafe extern "C" fn stream_op(_s: *mut sys::AnyaccelStream) -> AnyaccelStatus {
    with(|b| status(b.stream_status))
}

unsafe extern "C" fn stream_wait_event(
    _s: *mut sys::AnyaccelStream,
    _e: *mut sys::AnyaccelEvent,
) -> AnyaccelStatus {
    with(|b| status(b.event_status))
}

unsafe extern "C" fn event_create(
    _d: *mut sys::AnyaccelDevice,
    event: *mut *mut sys::AnyaccelEvent,
) -> AnyaccelStatus {
    // SAFETY: a valid out-pointer.
    unsafe { *event = fake_handle() };
    with(|b| status(b.event_status))
}

unsafe extern "C" fn event_op(_e: *mut sys::AnyaccelEvent) -> AnyaccelStatus {
    with(|b| status(b.event_status))
}

unsafe extern "C" fn event_record(
    _e: *mut sys::AnyaccelEvent,
    _s: *mut sys::AnyaccelStream,
) -> AnyaccelStatus {
    with(|b| status(b.event_status))
}

unsafe extern "C" fn event_query(_e: *mut sys::AnyaccelEvent, done: *mut i32) -> AnyaccelStatus {
    // SAFETY: a valid out-pointer.
    unsafe { *done = 1 };
    with(|b| status(b.event_status))
}

unsafe extern "C" fn event_elapsed(
    _a: *mut sys::AnyaccelEvent,
    _b: *mut sys::AnyaccelEvent,
    ms: *mut f64,
) -> AnyaccelStatus {
    // SAFETY: a valid out-pointer.
    unsafe { *ms = f64::NAN };
    with(|b| status(b.event_status))
}

unsafe extern "C" fn module_load(
    _d: *mut sys::AnyaccelDevice,
    _src: *const sys::AnyaccelModuleSource,
    _m: *mut *mut sys::AnyaccelModule,
) -> AnyaccelStatus {
    6
}

unsafe extern "C" fn module_unload(_m: *mut sys::AnyaccelModule) -> AnyaccelStatus {
    0
}

unsafe extern "C" fn kernel_get(
    _m: *mut sys::AnyaccelModule,
    _n: *const c_char,
    _k: *mut *mut sys::AnyaccelKernel,
) -> AnyaccelStatus {
    1
}

unsafe extern "C" fn kernel_launch(
    _s: *mut sys::AnyaccelStream,
    _k: *mut sys::AnyaccelKernel,
    _l: *const sys::AnyaccelLaunch,
) -> AnyaccelStatus {
    7
}

unsafe extern "C" fn op_supported(
    _d: *mut sys::AnyaccelDevice,
    _c: *const sys::AnyaccelOpCall,
) -> i32 {
    0
}

unsafe extern "C" fn op_execute(
    _s: *mut sys::AnyaccelStream,
    _c: *const sys::AnyaccelOpCall,
) -> AnyaccelStatus {
    3
}

/// The table with every stub, then the functions whose bit is clear set to NULL.
fn table(present: u32) -> AnyaccelPluginApi {
    let mut t = AnyaccelPluginApi::empty();
    let on = |i: u32| present & (1 << i) != 0;
    macro_rules! set {
        ($($i:literal $field:ident = $f:expr;)*) => {$( if on($i) { t.$field = Some($f); } )*};
    }
    set! {
        0 last_error = last_error;
        1 device_count = device_count;
        2 device_open = device_open;
        3 device_close = device_close;
        4 device_info = device_info;
        5 buffer_alloc = buffer_alloc;
        6 buffer_free = buffer_free;
        7 copy_h2d = copy_h2d;
        8 copy_d2h = copy_d2h;
        9 copy_d2d = copy_d2d;
        10 fill = fill;
        11 stream_create = stream_create;
        12 stream_destroy = stream_op;
        13 stream_synchronize = stream_op;
        14 stream_wait_event = stream_wait_event;
        15 event_create = event_create;
        16 event_destroy = event_op;
        17 event_record = event_record;
        18 event_query = event_query;
        19 event_synchronize = event_op;
        20 event_elapsed_ms = event_elapsed;
        21 module_load = module_load;
        22 module_unload = module_unload;
        23 kernel_get = kernel_get;
        24 kernel_launch = kernel_launch;
        25 op_supported = op_supported;
        26 op_execute = op_execute;
    }
    t
}

fn text(t: &Text) -> Option<CString> {
    match t {
        Text::Null => None,
        Text::Valid(i) => {
            Some(CString::new(["fuzz", "a-b_1", "x", "0.1.0"][*i as usize % 4]).expect("no NUL"))
        }
        Text::Any(b) => Some(
            CString::new(b.iter().copied().filter(|&c| c != 0).collect::<Vec<u8>>())
                .expect("no NUL"),
        ),
    }
}

fn load(table: *const u8) -> anyaccel_plugin::PluginBackend {
    type SetTable = unsafe extern "C" fn(*const c_void);
    static LIB: OnceLock<(libloading::Library, SetTable)> = OnceLock::new();
    let path = env!("ANYACCEL_FUZZ_PLUGIN");
    let (_, set) = LIB.get_or_init(|| {
        // SAFETY: our own fake plugin; its initialisers do nothing.
        let lib = unsafe { libloading::Library::new(path) }.expect("load the fake plugin");
        // SAFETY: declared in fake_plugin.c with this type.
        let set: SetTable =
            *unsafe { lib.get::<SetTable>(b"anyaccel_fuzz_set_table\0") }.expect("symbol");
        (lib, set)
    });
    // SAFETY: stores a pointer, which the entry point returns.
    unsafe { set(table.cast()) };
    anyaccel_plugin::PluginBackend::load(path)
}

fn use_device(device: &dyn Device, input: &Input) {
    let _ = (device.info(), device.caps());
    let len = input.buffer_len as usize % 4097;
    let Ok(buffer) = device.alloc(len) else {
        return;
    };
    let Ok(queue) = device.create_queue() else {
        return;
    };
    let at = input.offset as usize % (len + 1);
    let whole = buffer.whole();
    let _ = queue.write(&whole, &vec![7u8; len]);
    if let Ok(part) = buffer.view(at, len - at) {
        let mut host = vec![0u8; len - at];
        let _ = queue.read(&part, &mut host);
        let _ = queue.fill(&part, &[1, 2]);
        let _ = queue.fill(&part, &[9]);
        if let Ok(head) = buffer.view(0, (len - at).min(at)) {
            let _ = queue.copy(&head, &part.sub(0, head.len()).unwrap_or(part.clone()));
        }
    }
    if let Ok(e) = queue.record_event() {
        let _ = (e.is_done(), e.wait(), e.elapsed_since(&*e));
        let _ = queue.wait_event(&e);
    }
    let _ = queue.finish();
}

fuzz_target!(|input: Input| {
    anyaccel_fuzz::show(&input);
    *BEHAVIOUR.lock().unwrap_or_else(|p| p.into_inner()) = Some(input.behaviour.clone());
    let v1 = sys::API_V1_SIZE;
    let struct_size: usize = match input.size {
        Size::Exact => v1,
        Size::Small(n) => n as usize % (v1 + 1),
        Size::Larger(n) => v1 + n as usize % 4096,
        Size::Raw(n) => n as usize,
    };
    // The allocation has exactly struct_size bytes (at least the size_t that is always read);
    // past 64 KiB it has the whole table this host knows (ABI 1.1), which is all it may read.
    let alloc_size = if struct_size <= 1 << 16 {
        struct_size.max(8)
    } else {
        std::mem::size_of::<AnyaccelPluginApi>()
    };
    let layout = std::alloc::Layout::from_size_align(alloc_size, 8).expect("small layout");
    // SAFETY: non-zero size.
    let mem = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!mem.is_null());

    let name = text(&input.name);
    let version = text(&input.version);
    let mut api = table(input.present);
    api.struct_size = struct_size;
    api.abi_major = if input.major < 200 {
        sys::ABI_MAJOR
    } else {
        input.major as u32
    };
    api.abi_minor = input.minor;
    api.name = name.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    api.version = version.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: `min(alloc_size, v1)` bytes of both.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&api as *const AnyaccelPluginApi).cast::<u8>(),
            mem,
            alloc_size.min(v1),
        )
    };

    let backend = load(mem);
    let _ = (
        backend.name(),
        backend.load_error(),
        backend.plugin_version(),
    );
    if let Ok(devices) = backend.probe() {
        for device in devices.iter().take(2) {
            use_device(&**device, &input);
        }
    }
    drop(backend);
    assert_eq!(
        LIVE_BUFFERS.load(Ordering::SeqCst),
        0,
        "plugin buffers still allocated after every object was dropped"
    );
    // SAFETY: allocated above with this layout; the loader copied what it keeps.
    unsafe { std::alloc::dealloc(mem, layout) };
});
