//! Devices: an anyaccel device id ("cpu:0", "vulkan:0", "plugin:ref:0") as a small copyable
//! Burn device, with the device, its queue and its random stream opened once per process.

use std::sync::{Arc, Mutex, OnceLock};

use anyaccel::{hal, Queue};
use burn_backend::{DType, DeviceId, DeviceOps};
use burn_std::device::Device;
use burn_std::{BoolStore, DeviceSettings, QuantConfig, QuantScheme, QuantStore};

/// The `DeviceId::type_id` of every anyaccel device.
const TYPE_ID: u16 = 0xacce;

/// An anyaccel device as Burn sees it: an index into the process's table of device ids.
/// [`AnyaccelDevice::default`] is `cpu:0`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AnyaccelDevice {
    index: u16,
}

/// One opened device: its queue and the counter of its random stream.
pub(crate) struct Opened {
    pub queue: Arc<dyn Queue>,
    pub device: Arc<dyn hal::Device>,
    /// (seed, offset) of the next random call: each call takes the next offset.
    pub rng: Mutex<(u64, u64)>,
    /// Rank-0 tensors of the scalars that ops were called with lately, by dtype and bytes
    /// (never written after their upload), so that a scalar used every step (an optimizer's
    /// constants) is uploaded once.
    /// The bytes sit little-endian in a `u64`, zero-padded (no dtype here is wider).
    pub scalars: Mutex<Vec<(anyaccel::DType, u64, anyaccel::Tensor)>>,
}

impl Opened {
    /// Scalars kept in [`Opened::scalars`].
    pub const SCALARS: usize = 64;
}

struct Entry {
    id: String,
    opened: OnceLock<Arc<Opened>>,
}

fn table() -> &'static Mutex<Vec<Arc<Entry>>> {
    static TABLE: OnceLock<Mutex<Vec<Arc<Entry>>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Mutex::new(vec![Arc::new(Entry {
            id: "cpu:0".to_string(),
            opened: OnceLock::new(),
        })])
    })
}

fn runtime() -> &'static hal::Runtime {
    static RUNTIME: OnceLock<hal::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(anyaccel::Runtime::new)
}

fn entry(index: u16) -> Arc<Entry> {
    let t = table().lock().unwrap_or_else(|e| e.into_inner());
    // Indices come from `new` or `from_id` of a listed one; an unknown index is cpu:0.
    t.get(index as usize).unwrap_or(&t[0]).clone()
}

impl AnyaccelDevice {
    /// The device with anyaccel id `id` ("cpu:0", "opencl:0", "vulkan:0", "cuda:0", or a
    /// plugin's `plugin:<name>:<n>` when `ANYACCEL_PLUGIN_PATH` names the plugin). The device
    /// is opened on first use; an id that names no device panics there, with anyaccel's message.
    pub fn new(id: &str) -> AnyaccelDevice {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = t.iter().position(|e| e.id == id) {
            return AnyaccelDevice { index: i as u16 };
        }
        assert!(
            t.len() < u16::MAX as usize,
            "anyaccel-burn: more than {} device ids",
            u16::MAX
        );
        t.push(Arc::new(Entry {
            id: id.to_string(),
            opened: OnceLock::new(),
        }));
        AnyaccelDevice {
            index: (t.len() - 1) as u16,
        }
    }

    /// The device, or anyaccel's error when `id` names no available device.
    pub fn open(id: &str) -> anyaccel::Result<AnyaccelDevice> {
        let d = AnyaccelDevice::new(id);
        d.try_opened()?;
        Ok(d)
    }

    /// Loads the vendor plugin library at `path` into this process's runtime, so that its
    /// devices (`plugin:<name>:<n>`) open as any other (the same as naming the file in
    /// `ANYACCEL_PLUGIN_PATH`). Loading a plugin whose name is taken is an error.
    pub fn load_plugin(path: impl AsRef<std::path::Path>) -> anyaccel::Result<()> {
        let backend = anyaccel::plugin::load(path);
        runtime().add_backend(Arc::new(backend))
    }

    /// The anyaccel id of the device.
    pub fn id(&self) -> String {
        entry(self.index).id.clone()
    }

    fn try_opened(&self) -> anyaccel::Result<Arc<Opened>> {
        let e = entry(self.index);
        if let Some(o) = e.opened.get() {
            return Ok(o.clone());
        }
        let device = runtime().device(&e.id)?;
        let queue = device.create_queue()?;
        let opened = Arc::new(Opened {
            queue,
            device,
            rng: Mutex::new((0, 0)),
            scalars: Mutex::new(Vec::new()),
        });
        Ok(e.opened.get_or_init(|| opened).clone())
    }

    /// The opened device; panics with anyaccel's message when it cannot be opened (Burn's
    /// device type has no error path).
    pub(crate) fn opened(&self) -> Arc<Opened> {
        self.try_opened()
            .unwrap_or_else(|e| panic!("anyaccel-burn: device {}: {e}", self.id()))
    }

    /// The device's queue.
    pub fn queue(&self) -> Arc<dyn Queue> {
        self.opened().queue.clone()
    }

    /// Whether the device computes in `dtype`.
    pub(crate) fn has_dtype(&self, dtype: anyaccel::DType) -> bool {
        self.opened().device.caps().has_dtype(dtype)
    }

    /// The number of device ids known to this process.
    pub(crate) fn count() -> usize {
        table().lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The (seed, offset) of the next random call: each call takes its own offset, whose
    /// 2^64 counters of four draws are more than a call draws.
    pub(crate) fn next_stream(&self) -> anyaccel::ops::random::Stream {
        let o = self.opened();
        let mut s = o.rng.lock().unwrap_or_else(|e| e.into_inner());
        let stream = anyaccel::ops::random::Stream {
            seed: s.0,
            offset: s.1,
        };
        s.1 = s.1.wrapping_add(1);
        stream
    }

    /// Restarts the device's random stream at `seed`.
    pub(crate) fn seed(&self, seed: u64) {
        let o = self.opened();
        *o.rng.lock().unwrap_or_else(|e| e.into_inner()) = (seed, 0);
    }
}

impl std::fmt::Debug for AnyaccelDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyaccelDevice({})", self.id())
    }
}

impl std::fmt::Display for AnyaccelDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

impl Device for AnyaccelDevice {
    fn from_id(device_id: DeviceId) -> Self {
        AnyaccelDevice {
            index: if (device_id.index_id as usize) < AnyaccelDevice::count() {
                device_id.index_id
            } else {
                0
            },
        }
    }

    fn to_id(&self) -> DeviceId {
        DeviceId::new(TYPE_ID, self.index)
    }
}

impl DeviceOps for AnyaccelDevice {
    fn defaults(&self) -> DeviceSettings {
        DeviceSettings::new(
            DType::F32,
            DType::I64,
            DType::Bool(BoolStore::Native),
            QuantConfig::new(
                QuantScheme::default().with_store(QuantStore::Native),
                Default::default(),
            ),
        )
    }
}
