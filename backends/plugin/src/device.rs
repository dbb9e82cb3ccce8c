//! The plugin backend, its devices, their memory and their kernels, over the plugin's table.

use std::any::Any;
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyaccel_hal::{
    Backend, Buffer, Caps, DType, Device, DeviceInfo, DeviceMemory, Dialect, Error, Kernel,
    KernelCache, KernelSource, OpCall, Queue, Result, Unavailable,
};

use crate::loader::{c_text, fallback_name, Plugin, PluginRef};
use crate::op::CallDesc;
use crate::queue::{PluginQueue, StreamInner};
use crate::sys::{self, AnyaccelBuffer, AnyaccelDevice, AnyaccelKernel, AnyaccelModule};

/// What probing a plugin found: its devices, or why it has none.
type Probed = Result<Vec<Arc<dyn Device>>, Unavailable>;

/// A vendor plugin as a backend, named `plugin:<name>` after the plugin's table (or
/// `plugin:<file stem>` when the library could not be loaded).
///
/// The library is opened and its table checked by [`PluginBackend::load`]; a failure is kept and
/// returned by [`Backend::probe`] as the [`Unavailable`] reason, so that `anyaccel devices` shows
/// it. Devices are opened on the first probe.
pub struct PluginBackend {
    name: String,
    path: PathBuf,
    plugin: Result<PluginRef, Unavailable>,
    devices: Mutex<Option<Probed>>,
}

impl std::fmt::Debug for PluginBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginBackend")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("loaded", &self.plugin.is_ok())
            .finish()
    }
}

impl PluginBackend {
    /// Opens the plugin library at `path` and checks its table. Never fails: a library that
    /// cannot be used gives a backend whose probe is `Unavailable` with the reason (file not
    /// found, the `dlopen` error, a missing entry symbol, an ABI mismatch naming both versions,
    /// a table too small, a required function that is NULL, ...).
    pub fn load(path: impl AsRef<Path>) -> PluginBackend {
        let path = path.as_ref();
        let plugin = Plugin::open(path).map(Arc::new);
        let name = match &plugin {
            Ok(p) => p.backend.clone(),
            Err(_) => fallback_name(path),
        };
        PluginBackend {
            name,
            path: path.to_path_buf(),
            plugin,
            devices: Mutex::new(None),
        }
    }

    /// A backend for the library at `path` that is unavailable for a reason found without
    /// loading it here: a host that first loads each plugin in a child process (so that a
    /// plugin that crashes or hangs while loading or enumerating its devices cannot take the
    /// host down) registers the plugins that failed there with this. `name` is the plugin's
    /// own name when the child learnt it, else `plugin:<file stem>` is used.
    pub fn refused(
        path: impl AsRef<Path>,
        name: Option<&str>,
        reason: Unavailable,
    ) -> PluginBackend {
        let path = path.as_ref();
        PluginBackend {
            name: name.map_or_else(|| fallback_name(path), str::to_string),
            path: path.to_path_buf(),
            plugin: Err(reason),
            devices: Mutex::new(None),
        }
    }

    /// The library's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the library could not be loaded, if it could not.
    pub fn load_error(&self) -> Option<&Unavailable> {
        self.plugin.as_ref().err()
    }

    /// The plugin's own version string, once loaded.
    pub fn plugin_version(&self) -> Option<&str> {
        self.plugin.as_ref().ok().map(|p| p.version.as_str())
    }

    fn open_devices(plugin: &PluginRef) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        let api = &plugin.api;
        let unavailable = |e: Error| Unavailable::new(e.message().to_string());
        let mut count = 0i32;
        let count_fn = api
            .device_count
            .ok_or_else(|| Unavailable::new("device_count is NULL"))?;
        // SAFETY: device_count writes one i32.
        plugin
            .check("device_count", unsafe { count_fn(&mut count) })
            .map_err(unavailable)?;
        if count < 0 {
            return Err(Unavailable::new(format!(
                "{}: device_count gave {count}, expected a count >= 0",
                plugin.backend
            )));
        }
        let mut devices: Vec<Arc<dyn Device>> = Vec::new();
        for index in 0..count {
            let device = PluginDevice::open(plugin.clone(), index).map_err(unavailable)?;
            devices.push(device);
        }
        Ok(devices)
    }
}

impl Backend for PluginBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        let plugin = self.plugin.clone()?;
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices
            .get_or_insert_with(|| PluginBackend::open_devices(&plugin))
            .clone()
    }
}

/// An open device handle; closed when the last object made from it is gone.
pub(crate) struct DeviceHandle {
    pub(crate) plugin: PluginRef,
    pub(crate) raw: *mut AnyaccelDevice,
}

// SAFETY: the header requires plugins to accept calls on a device from any thread.
unsafe impl Send for DeviceHandle {}
// SAFETY: as above.
unsafe impl Sync for DeviceHandle {}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        if let Some(close) = self.plugin.api.device_close {
            // SAFETY: opened by device_open; everything made from it held this handle and is gone.
            let _ = unsafe { close(self.raw) };
        }
    }
}

/// One device of a plugin: `plugin:<name>:<index>`.
pub struct PluginDevice {
    pub(crate) handle: Arc<DeviceHandle>,
    info: DeviceInfo,
    caps: Caps,
    pub(crate) id: Arc<str>,
    live: Arc<AtomicUsize>,
    cache: KernelCache,
    this: Weak<PluginDevice>,
}

fn fixed_text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads a NULL-terminated list of C strings.
///
/// # Safety
/// `list` is NULL or a NULL-terminated array of NUL-terminated strings.
unsafe fn c_list(list: *const *const c_char) -> Vec<String> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    for i in 0..4096 {
        // SAFETY: the array is NULL-terminated, so every index up to the terminator is valid.
        let p = unsafe { *list.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string.
        if let Some(s) = unsafe { c_text(p) } {
            out.push(s);
        }
    }
    out
}

pub(crate) fn dialect_of(name: &str) -> Dialect {
    match name {
        "host" => Dialect::Host,
        "opencl-c" => Dialect::OpenClC,
        "wgsl" => Dialect::Wgsl,
        "spirv" => Dialect::SpirV,
        "cuda" => Dialect::Cuda,
        "ptx" => Dialect::Ptx,
        other => Dialect::Other(other.to_string()),
    }
}

impl PluginDevice {
    fn open(plugin: PluginRef, index: i32) -> Result<Arc<PluginDevice>> {
        let api = &plugin.api;
        let (Some(open), Some(info_fn)) = (api.device_open, api.device_info) else {
            return Err(Error::unavailable("device_open or device_info is NULL"));
        };
        let mut raw: *mut AnyaccelDevice = std::ptr::null_mut();
        // SAFETY: device_open writes one handle for an index below device_count.
        plugin.check("device_open", unsafe { open(index, &mut raw) })?;
        if raw.is_null() {
            return Err(Error::internal(format!(
                "{} device_open({index}) succeeded but gave a NULL device",
                plugin.backend
            )));
        }
        let handle = Arc::new(DeviceHandle {
            plugin: plugin.clone(),
            raw,
        });
        let mut c_info = sys::AnyaccelDeviceInfo::new();
        // SAFETY: the struct is zeroed with struct_size set; the plugin fills what it covers.
        plugin.check("device_info", unsafe { info_fn(raw, &mut c_info) })?;
        let id = format!("{}:{index}", plugin.backend);
        let mut dtypes: Vec<DType> = DType::ALL
            .iter()
            .copied()
            .filter(|d| c_info.dtype_mask & (1u32 << d.code()) != 0)
            .collect();
        dtypes.sort();
        // SAFETY: both lists are NULL or NULL-terminated string arrays valid until device_close.
        let dialect_names = unsafe { c_list(c_info.dialects) };
        // SAFETY: as above.
        let native_ops = unsafe { c_list(c_info.native_ops) };
        let has_kernels = api.module_load.is_some();
        let has_ops = api.op_execute.is_some();
        let info = DeviceInfo {
            id: id.clone(),
            backend: plugin.backend.clone(),
            name: fixed_text(&c_info.name),
            vendor: fixed_text(&c_info.vendor),
            driver_version: fixed_text(&c_info.driver_version),
            memory_bytes: c_info.memory_bytes,
            max_buffer_bytes: c_info.max_buffer_bytes,
            max_work_group_size: c_info.max_work_group_size.max(1),
            compute_units: c_info.compute_units,
        };
        let caps = Caps {
            dtypes,
            dialects: if has_kernels {
                dialect_names.iter().map(|d| dialect_of(d)).collect()
            } else {
                Vec::new()
            },
            native_ops: if has_ops { native_ops } else { Vec::new() },
            timestamps: c_info.timestamps != 0 && api.event_elapsed_ms.is_some(),
        };
        Ok(Arc::new_cyclic(|this| PluginDevice {
            handle,
            info,
            caps,
            id: id.into(),
            live: Arc::new(AtomicUsize::new(0)),
            cache: KernelCache::new(),
            this: this.clone(),
        }))
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.handle.plugin
    }

    /// The stream behind a queue of this device.
    pub(crate) fn stream_of(&self, queue: &dyn Queue) -> Result<Arc<StreamInner>> {
        queue
            .as_any()
            .downcast_ref::<PluginQueue>()
            .map(|q| q.stream().clone())
            .filter(|s| Arc::ptr_eq(&s.device, &self.handle))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "queue of device {} is not a queue of {}: run the op on a queue of the device that holds its tensors",
                    queue.device_id(),
                    self.info.id
                ))
            })
    }
}

impl Device for PluginDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        let plugin = self.plugin();
        if bytes as u128 > self.info.max_buffer_bytes as u128 {
            return Err(Error::out_of_memory(format!(
                "alloc: {bytes} bytes requested on {}, whose largest buffer is {} bytes",
                self.info.id, self.info.max_buffer_bytes
            )));
        }
        let alloc = plugin
            .api
            .buffer_alloc
            .ok_or_else(|| Error::internal("buffer_alloc is NULL"))?;
        let mut raw: *mut AnyaccelBuffer = std::ptr::null_mut();
        // SAFETY: buffer_alloc writes one handle; the device handle is open.
        plugin.check("buffer_alloc", unsafe {
            alloc(self.handle.raw, bytes as u64, &mut raw)
        })?;
        if raw.is_null() {
            return Err(Error::internal(format!(
                "{} buffer_alloc({bytes}) succeeded but gave a NULL buffer",
                plugin.backend
            )));
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Buffer::new(Arc::new(PluginMemory {
            device: self.handle.clone(),
            raw,
            size: bytes,
            device_id: self.id.clone(),
            live: self.live.clone(),
        })))
    }

    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        let device = self
            .this
            .upgrade()
            .ok_or_else(|| Error::internal("create_queue: the plugin device is being dropped"))?;
        Ok(Arc::new(PluginQueue::new(device)?))
    }

    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        PluginKernel::load(self, source)
    }

    fn kernel_cache(&self) -> &KernelCache {
        &self.cache
    }

    fn live_allocations(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn supports_native_op(&self, call: &OpCall) -> bool {
        let api = &self.plugin().api;
        let Some(supported) = api.op_supported else {
            return false;
        };
        let Ok(desc) = CallDesc::new(call, &self.info.id) else {
            return false;
        };
        // SAFETY: the call descriptor and everything it points to live until `desc` drops.
        unsafe { supported(self.handle.raw, desc.as_ptr()) == 1 }
    }

    fn execute_native_op(&self, queue: &dyn Queue, call: &OpCall) -> Result<()> {
        let stream = self.stream_of(queue)?;
        let desc = CallDesc::new(call, &self.info.id)?;
        stream.execute_op(&call.op, &desc)
    }

    fn collectives(&self) -> Option<Arc<dyn anyaccel_hal::CollectiveLibrary>> {
        crate::collectives::PluginLibrary::of(&self.handle.plugin)
            .map(|l| Arc::new(l) as Arc<dyn anyaccel_hal::CollectiveLibrary>)
    }

    fn host_addressable(&self) -> bool {
        self.handle.plugin.api.buffer_host_ptr.is_some()
    }

    fn copies_from(&self, src: &dyn Device) -> bool {
        // Another device of the same loaded plugin, which has `copy_peer`.
        src.as_any()
            .downcast_ref::<PluginDevice>()
            .is_some_and(|src| {
                !std::ptr::eq(src, self)
                    && Arc::ptr_eq(&src.handle.plugin, &self.handle.plugin)
                    && self.handle.plugin.api.copy_peer.is_some()
            })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One allocation of a plugin device.
pub struct PluginMemory {
    device: Arc<DeviceHandle>,
    raw: *mut AnyaccelBuffer,
    size: usize,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
}

// SAFETY: the buffer handle is only passed back to the plugin, which accepts calls from any thread.
unsafe impl Send for PluginMemory {}
// SAFETY: as above.
unsafe impl Sync for PluginMemory {}

impl PluginMemory {
    /// The plugin's buffer handle.
    pub(crate) fn raw(&self) -> *mut AnyaccelBuffer {
        self.raw
    }

    /// True when the buffer belongs to this device handle.
    pub(crate) fn on(&self, device: &Arc<DeviceHandle>) -> bool {
        Arc::ptr_eq(&self.device, device)
    }

    /// True when the buffer belongs to a device of this loaded plugin.
    pub(crate) fn of_plugin(&self, plugin: &crate::loader::PluginRef) -> bool {
        Arc::ptr_eq(&self.device.plugin, plugin)
    }
}

impl Drop for PluginMemory {
    fn drop(&mut self) {
        if let Some(free) = self.device.plugin.api.buffer_free {
            // SAFETY: allocated by buffer_alloc on this device; every command that used it held a
            // clone of the Buffer and has completed (queues release them only after a sync).
            let _ = unsafe { free(self.device.raw, self.raw) };
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DeviceMemory for PluginMemory {
    fn size(&self) -> usize {
        self.size
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A kernel of a module loaded by the plugin.
pub struct PluginKernel {
    pub(crate) device: Arc<DeviceHandle>,
    module: *mut AnyaccelModule,
    pub(crate) raw: *mut AnyaccelKernel,
    name: String,
    dialect: Dialect,
    device_id: Arc<str>,
}

// SAFETY: module and kernel handles are only passed back to the plugin, which accepts calls from
// any thread.
unsafe impl Send for PluginKernel {}
// SAFETY: as above.
unsafe impl Sync for PluginKernel {}

impl PluginKernel {
    fn load(device: &PluginDevice, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        let plugin = device.plugin();
        let api = &plugin.api;
        let dialect = source.dialect();
        let (Some(load), Some(get)) = (api.module_load, api.kernel_get) else {
            return Err(Error::unsupported(format!(
                "compile: {} runs no kernels (the plugin has no module_load); it offers native ops: {}",
                device.info.id,
                if device.caps.native_ops.is_empty() {
                    "none".to_string()
                } else {
                    device.caps.native_ops.join(", ")
                }
            )));
        };
        if !device.caps.has_dialect(&dialect) {
            return Err(Error::unsupported(format!(
                "compile: {} does not accept {dialect} (entry `{}`); it accepts: {}",
                device.info.id,
                source.entry(),
                device
                    .caps
                    .dialects
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let (data, options): (Vec<u8>, String) = match source {
            KernelSource::Host(k) => {
                return Err(Error::unsupported(format!(
                    "compile: host kernel `{}` cannot run on plugin device {}",
                    k.name(),
                    device.info.id
                )))
            }
            KernelSource::OpenClC {
                source, options, ..
            } => (source.as_bytes().to_vec(), options.clone()),
            KernelSource::Wgsl { source, .. } => (source.as_bytes().to_vec(), String::new()),
            KernelSource::SpirV { words, .. } => (
                words.iter().flat_map(|w| w.to_le_bytes()).collect(),
                String::new(),
            ),
            KernelSource::Cuda {
                source, options, ..
            } => (source.as_bytes().to_vec(), options.join(" ")),
            KernelSource::Ptx { ptx, .. } => (ptx.as_bytes().to_vec(), String::new()),
        };
        let c_dialect = CString::new(dialect.name())
            .map_err(|_| Error::invalid_argument("compile: dialect name holds a NUL byte"))?;
        let c_options = CString::new(options)
            .map_err(|_| Error::invalid_argument("compile: build options hold a NUL byte"))?;
        let c_entry = CString::new(source.entry())
            .map_err(|_| Error::invalid_argument("compile: entry name holds a NUL byte"))?;
        let src = sys::AnyaccelModuleSource {
            struct_size: std::mem::size_of::<sys::AnyaccelModuleSource>(),
            dialect: c_dialect.as_ptr(),
            data: data.as_ptr().cast(),
            size: data.len(),
            options: c_options.as_ptr(),
        };
        let mut module: *mut AnyaccelModule = std::ptr::null_mut();
        // SAFETY: `src` and the data it points to live across the call; one handle is written.
        plugin.check("module_load", unsafe {
            load(device.handle.raw, &src, &mut module)
        })?;
        let mut raw: *mut AnyaccelKernel = std::ptr::null_mut();
        // SAFETY: the module was just loaded; the entry name is NUL-terminated.
        let got = plugin.check("kernel_get", unsafe {
            get(module, c_entry.as_ptr(), &mut raw)
        });
        let kernel = PluginKernel {
            device: device.handle.clone(),
            module,
            raw,
            name: source.entry().to_string(),
            dialect,
            device_id: device.id.clone(),
        };
        got?;
        Ok(Arc::new(kernel))
    }
}

impl Drop for PluginKernel {
    fn drop(&mut self) {
        if let Some(unload) = self.device.plugin.api.module_unload {
            // SAFETY: loaded by module_load; launches hold an Arc of this kernel until they
            // completed, so none is pending.
            let _ = unsafe { unload(self.module) };
        }
    }
}

impl Kernel for PluginKernel {
    fn name(&self) -> &str {
        &self.name
    }
    fn dialect(&self) -> Dialect {
        self.dialect.clone()
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
