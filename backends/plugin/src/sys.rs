//! The Rust mirror of `include/anyaccel_plugin.h`: every constant, struct and function type of
//! the header, `#[repr(C)]`, field for field. The test `tests/layout.rs` compiles a C file that
//! prints the header's sizes and offsets and compares them with these.

#![allow(missing_docs)] // each item is documented in the header, next to its C declaration

use std::ffi::{c_char, c_void};

/// The ABI major version this crate speaks.
pub const ABI_MAJOR: u32 = 1;
/// The ABI minor version this crate speaks.
pub const ABI_MINOR: u32 = 1;
/// The name of the exported entry point.
pub const ENTRY: &str = "anyaccel_plugin_get_api";

/// 0 for success, else an `ErrorCode` number.
pub type AnyaccelStatus = i32;
pub const ANYACCEL_OK: AnyaccelStatus = 0;

pub const ANYACCEL_DTYPE_F32: u32 = 1;
pub const ANYACCEL_DTYPE_F16: u32 = 2;
pub const ANYACCEL_DTYPE_BF16: u32 = 3;
pub const ANYACCEL_DTYPE_F64: u32 = 4;
pub const ANYACCEL_DTYPE_I32: u32 = 5;
pub const ANYACCEL_DTYPE_I64: u32 = 6;
pub const ANYACCEL_DTYPE_U8: u32 = 7;
pub const ANYACCEL_DTYPE_BOOL: u32 = 8;
pub const ANYACCEL_DTYPE_I8: u32 = 9;

pub const ANYACCEL_DL_INT: u8 = 0;
pub const ANYACCEL_DL_UINT: u8 = 1;
pub const ANYACCEL_DL_FLOAT: u8 = 2;
pub const ANYACCEL_DL_BFLOAT: u8 = 4;
pub const ANYACCEL_DL_BOOL: u8 = 6;

pub const ANYACCEL_ATTR_INT: i32 = 1;
pub const ANYACCEL_ATTR_FLOAT: i32 = 2;
pub const ANYACCEL_ATTR_INTS: i32 = 3;
pub const ANYACCEL_ATTR_STR: i32 = 4;

pub const ANYACCEL_ARG_BUFFER: i32 = 1;
pub const ANYACCEL_ARG_BYTES: i32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnyaccelDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// Opaque handles: never constructed in Rust, only pointed to.
macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    AnyaccelDevice,
    AnyaccelBuffer,
    AnyaccelStream,
    AnyaccelEvent,
    AnyaccelModule,
    AnyaccelKernel,
    AnyaccelComm
);

pub const ANYACCEL_REDUCE_SUM: i32 = 0;
pub const ANYACCEL_REDUCE_MAX: i32 = 1;
pub const ANYACCEL_REDUCE_MIN: i32 = 2;
pub const ANYACCEL_REDUCE_MEAN: i32 = 3;

/// One rank's part of a collective (ABI 1.1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AnyaccelCollectiveRank {
    pub struct_size: usize,
    pub stream: *mut AnyaccelStream,
    pub send: *mut AnyaccelBuffer,
    pub send_offset: u64,
    pub recv: *mut AnyaccelBuffer,
    pub recv_offset: u64,
}

pub type CommCreateFn = unsafe extern "C" fn(
    devices: *const *mut AnyaccelDevice,
    count: i32,
    comm: *mut *mut AnyaccelComm,
) -> AnyaccelStatus;
pub type CommDestroyFn = unsafe extern "C" fn(comm: *mut AnyaccelComm) -> AnyaccelStatus;
/// all_reduce, reduce_scatter (last argument: the op) and broadcast (the root).
pub type CollectiveFn = unsafe extern "C" fn(
    comm: *mut AnyaccelComm,
    ranks: *const AnyaccelCollectiveRank,
    count: u64,
    dtype: i32,
    op_or_root: i32,
) -> AnyaccelStatus;
pub type AllGatherFn = unsafe extern "C" fn(
    comm: *mut AnyaccelComm,
    ranks: *const AnyaccelCollectiveRank,
    count: u64,
    dtype: i32,
) -> AnyaccelStatus;

/// A plugin's collective library (ABI 1.1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AnyaccelCollectivesApi {
    pub struct_size: usize,
    pub comm_create: Option<CommCreateFn>,
    pub comm_destroy: Option<CommDestroyFn>,
    pub all_reduce: Option<CollectiveFn>,
    pub broadcast: Option<CollectiveFn>,
    pub all_gather: Option<AllGatherFn>,
    pub reduce_scatter: Option<CollectiveFn>,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelDeviceInfo {
    pub struct_size: usize,
    pub name: [c_char; 256],
    pub vendor: [c_char; 128],
    pub driver_version: [c_char; 128],
    pub memory_bytes: u64,
    pub max_buffer_bytes: u64,
    pub max_work_group_size: u64,
    pub compute_units: u32,
    pub dtype_mask: u32,
    pub timestamps: i32,
    pub dialects: *const *const c_char,
    pub native_ops: *const *const c_char,
}

impl AnyaccelDeviceInfo {
    /// A zeroed info with its struct_size set, as the host passes it.
    pub fn new() -> AnyaccelDeviceInfo {
        AnyaccelDeviceInfo {
            struct_size: std::mem::size_of::<AnyaccelDeviceInfo>(),
            name: [0; 256],
            vendor: [0; 128],
            driver_version: [0; 128],
            memory_bytes: 0,
            max_buffer_bytes: 0,
            max_work_group_size: 0,
            compute_units: 0,
            dtype_mask: 0,
            timestamps: 0,
            dialects: std::ptr::null(),
            native_ops: std::ptr::null(),
        }
    }
}

impl Default for AnyaccelDeviceInfo {
    fn default() -> Self {
        AnyaccelDeviceInfo::new()
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelTensor {
    pub struct_size: usize,
    pub buffer: *mut AnyaccelBuffer,
    pub byte_offset: u64,
    pub ndim: i32,
    pub dtype: AnyaccelDataType,
    pub shape: *const i64,
    pub strides: *const i64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelAttr {
    pub struct_size: usize,
    pub name: *const c_char,
    pub kind: i32,
    pub int_value: i64,
    pub float_value: f64,
    pub ints: *const i64,
    pub ints_len: usize,
    pub str: *const c_char,
    pub str_len: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelOpCall {
    pub struct_size: usize,
    pub op: *const c_char,
    pub inputs: *const *const AnyaccelTensor,
    pub num_inputs: usize,
    pub outputs: *const *const AnyaccelTensor,
    pub num_outputs: usize,
    pub attrs: *const AnyaccelAttr,
    pub num_attrs: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelModuleSource {
    pub struct_size: usize,
    pub dialect: *const c_char,
    pub data: *const c_void,
    pub size: usize,
    pub options: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelKernelArg {
    pub struct_size: usize,
    pub kind: i32,
    pub buffer: *mut AnyaccelBuffer,
    pub offset: u64,
    pub size: u64,
    pub bytes: *const c_void,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelLaunch {
    pub struct_size: usize,
    pub global: [u64; 3],
    pub local: [u32; 3],
    pub has_local: i32,
    pub args: *const AnyaccelKernelArg,
    pub num_args: usize,
}

pub type LastErrorFn = unsafe extern "C" fn() -> *const c_char;
pub type DeviceCountFn = unsafe extern "C" fn(count: *mut i32) -> AnyaccelStatus;
pub type DeviceOpenFn =
    unsafe extern "C" fn(index: i32, device: *mut *mut AnyaccelDevice) -> AnyaccelStatus;
pub type DeviceCloseFn = unsafe extern "C" fn(device: *mut AnyaccelDevice) -> AnyaccelStatus;
pub type DeviceInfoFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    info: *mut AnyaccelDeviceInfo,
) -> AnyaccelStatus;
pub type BufferAllocFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    bytes: u64,
    buffer: *mut *mut AnyaccelBuffer,
) -> AnyaccelStatus;
pub type BufferFreeFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    buffer: *mut AnyaccelBuffer,
) -> AnyaccelStatus;
pub type CopyH2dFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    dst: *mut AnyaccelBuffer,
    dst_offset: u64,
    src: *const c_void,
    bytes: u64,
) -> AnyaccelStatus;
pub type CopyD2hFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    dst: *mut c_void,
    src: *mut AnyaccelBuffer,
    src_offset: u64,
    bytes: u64,
) -> AnyaccelStatus;
pub type CopyD2dFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    dst: *mut AnyaccelBuffer,
    dst_offset: u64,
    src: *mut AnyaccelBuffer,
    src_offset: u64,
    bytes: u64,
) -> AnyaccelStatus;
pub type FillFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    dst: *mut AnyaccelBuffer,
    dst_offset: u64,
    bytes: u64,
    pattern: *const c_void,
    pattern_size: u32,
) -> AnyaccelStatus;
pub type StreamCreateFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    stream: *mut *mut AnyaccelStream,
) -> AnyaccelStatus;
pub type StreamFn = unsafe extern "C" fn(stream: *mut AnyaccelStream) -> AnyaccelStatus;
pub type StreamWaitEventFn =
    unsafe extern "C" fn(stream: *mut AnyaccelStream, event: *mut AnyaccelEvent) -> AnyaccelStatus;
pub type EventCreateFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    event: *mut *mut AnyaccelEvent,
) -> AnyaccelStatus;
pub type EventFn = unsafe extern "C" fn(event: *mut AnyaccelEvent) -> AnyaccelStatus;
pub type EventRecordFn =
    unsafe extern "C" fn(event: *mut AnyaccelEvent, stream: *mut AnyaccelStream) -> AnyaccelStatus;
pub type EventQueryFn =
    unsafe extern "C" fn(event: *mut AnyaccelEvent, completed: *mut i32) -> AnyaccelStatus;
pub type EventElapsedFn = unsafe extern "C" fn(
    start: *mut AnyaccelEvent,
    end: *mut AnyaccelEvent,
    ms: *mut f64,
) -> AnyaccelStatus;
pub type ModuleLoadFn = unsafe extern "C" fn(
    device: *mut AnyaccelDevice,
    source: *const AnyaccelModuleSource,
    module: *mut *mut AnyaccelModule,
) -> AnyaccelStatus;
pub type ModuleUnloadFn = unsafe extern "C" fn(module: *mut AnyaccelModule) -> AnyaccelStatus;
pub type KernelGetFn = unsafe extern "C" fn(
    module: *mut AnyaccelModule,
    name: *const c_char,
    kernel: *mut *mut AnyaccelKernel,
) -> AnyaccelStatus;
pub type KernelLaunchFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    kernel: *mut AnyaccelKernel,
    launch: *const AnyaccelLaunch,
) -> AnyaccelStatus;
pub type OpSupportedFn =
    unsafe extern "C" fn(device: *mut AnyaccelDevice, call: *const AnyaccelOpCall) -> i32;
pub type OpExecuteFn = unsafe extern "C" fn(
    stream: *mut AnyaccelStream,
    call: *const AnyaccelOpCall,
) -> AnyaccelStatus;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnyaccelPluginApi {
    pub struct_size: usize,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub last_error: Option<LastErrorFn>,
    pub device_count: Option<DeviceCountFn>,
    pub device_open: Option<DeviceOpenFn>,
    pub device_close: Option<DeviceCloseFn>,
    pub device_info: Option<DeviceInfoFn>,
    pub buffer_alloc: Option<BufferAllocFn>,
    pub buffer_free: Option<BufferFreeFn>,
    pub copy_h2d: Option<CopyH2dFn>,
    pub copy_d2h: Option<CopyD2hFn>,
    pub copy_d2d: Option<CopyD2dFn>,
    pub fill: Option<FillFn>,
    pub stream_create: Option<StreamCreateFn>,
    pub stream_destroy: Option<StreamFn>,
    pub stream_synchronize: Option<StreamFn>,
    pub stream_wait_event: Option<StreamWaitEventFn>,
    pub event_create: Option<EventCreateFn>,
    pub event_destroy: Option<EventFn>,
    pub event_record: Option<EventRecordFn>,
    pub event_query: Option<EventQueryFn>,
    pub event_synchronize: Option<EventFn>,
    pub event_elapsed_ms: Option<EventElapsedFn>,
    pub module_load: Option<ModuleLoadFn>,
    pub module_unload: Option<ModuleUnloadFn>,
    pub kernel_get: Option<KernelGetFn>,
    pub kernel_launch: Option<KernelLaunchFn>,
    pub op_supported: Option<OpSupportedFn>,
    pub op_execute: Option<OpExecuteFn>,
    // ABI 1.1
    pub copy_peer: Option<CopyD2dFn>,
    pub collectives: *const AnyaccelCollectivesApi,
    pub buffer_host_ptr: Option<BufferHostPtrFn>,
}

pub type BufferHostPtrFn =
    unsafe extern "C" fn(buffer: *mut AnyaccelBuffer, ptr: *mut *mut c_void) -> AnyaccelStatus;

/// The entry point's type.
pub type GetApiFn =
    unsafe extern "C" fn(host_abi_major: u32, host_abi_minor: u32) -> *const AnyaccelPluginApi;

/// Size of the ABI 1.0 table (up to the first field ABI 1.1 appended): a plugin's struct_size
/// must be at least this.
pub const API_V1_SIZE: usize = std::mem::offset_of!(AnyaccelPluginApi, copy_peer);

/// The functions every plugin must provide, by their names in the header.
pub const REQUIRED: &[&str] = &[
    "last_error",
    "device_count",
    "device_open",
    "device_close",
    "device_info",
    "buffer_alloc",
    "buffer_free",
    "copy_h2d",
    "copy_d2h",
    "copy_d2d",
    "fill",
    "stream_create",
    "stream_destroy",
    "stream_synchronize",
    "stream_wait_event",
    "event_create",
    "event_destroy",
    "event_record",
    "event_query",
    "event_synchronize",
];

impl AnyaccelPluginApi {
    /// A table with every function absent.
    pub const fn empty() -> AnyaccelPluginApi {
        AnyaccelPluginApi {
            struct_size: 0,
            abi_major: 0,
            abi_minor: 0,
            name: std::ptr::null(),
            version: std::ptr::null(),
            last_error: None,
            device_count: None,
            device_open: None,
            device_close: None,
            device_info: None,
            buffer_alloc: None,
            buffer_free: None,
            copy_h2d: None,
            copy_d2h: None,
            copy_d2d: None,
            fill: None,
            stream_create: None,
            stream_destroy: None,
            stream_synchronize: None,
            stream_wait_event: None,
            event_create: None,
            event_destroy: None,
            event_record: None,
            event_query: None,
            event_synchronize: None,
            event_elapsed_ms: None,
            module_load: None,
            module_unload: None,
            kernel_get: None,
            kernel_launch: None,
            op_supported: None,
            op_execute: None,
            copy_peer: None,
            collectives: std::ptr::null(),
            buffer_host_ptr: None,
        }
    }

    /// True when the required function called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        match name {
            "last_error" => self.last_error.is_some(),
            "device_count" => self.device_count.is_some(),
            "device_open" => self.device_open.is_some(),
            "device_close" => self.device_close.is_some(),
            "device_info" => self.device_info.is_some(),
            "buffer_alloc" => self.buffer_alloc.is_some(),
            "buffer_free" => self.buffer_free.is_some(),
            "copy_h2d" => self.copy_h2d.is_some(),
            "copy_d2h" => self.copy_d2h.is_some(),
            "copy_d2d" => self.copy_d2d.is_some(),
            "fill" => self.fill.is_some(),
            "stream_create" => self.stream_create.is_some(),
            "stream_destroy" => self.stream_destroy.is_some(),
            "stream_synchronize" => self.stream_synchronize.is_some(),
            "stream_wait_event" => self.stream_wait_event.is_some(),
            "event_create" => self.event_create.is_some(),
            "event_destroy" => self.event_destroy.is_some(),
            "event_record" => self.event_record.is_some(),
            "event_query" => self.event_query.is_some(),
            "event_synchronize" => self.event_synchronize.is_some(),
            "event_elapsed_ms" => self.event_elapsed_ms.is_some(),
            "module_load" => self.module_load.is_some(),
            "module_unload" => self.module_unload.is_some(),
            "kernel_get" => self.kernel_get.is_some(),
            "kernel_launch" => self.kernel_launch.is_some(),
            "op_supported" => self.op_supported.is_some(),
            "op_execute" => self.op_execute.is_some(),
            "copy_peer" => self.copy_peer.is_some(),
            "buffer_host_ptr" => self.buffer_host_ptr.is_some(),
            _ => false,
        }
    }
}

// SAFETY: the table is immutable for the life of the process (the header's contract) and holds
// only function pointers and pointers to static strings, which any thread may read.
unsafe impl Send for AnyaccelPluginApi {}
// SAFETY: as above.
unsafe impl Sync for AnyaccelPluginApi {}
