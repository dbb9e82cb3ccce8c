//! A device that runs no kernel: it records every kernel that the op layer asks it to compile.
//!
//! It stands where a CUDA device would (dialect `cuda`, the dtypes and work-group size of an
//! NVIDIA GPU, no native ops, so that every op takes its portable kernel), with plain host
//! memory, so that the op layer's own code picks each op's kernels and specialisations exactly
//! as it would on a GPU. Launches do nothing, so outputs keep whatever they held: what it
//! yields is the list of kernels, never a result.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyaccel_hal::{
    validate, Buffer, BufferView, Caps, DType, Device, DeviceInfo, DeviceMemory, Dialect, Error,
    Event, Kernel, KernelArg, KernelCache, KernelSource, LaunchDims, Queue, Result,
};

/// A CUDA C kernel the op layer generated: its program, entry and NVRTC options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recorded {
    pub source: String,
    pub entry: String,
    pub options: Vec<String>,
}

pub struct Recorder {
    info: DeviceInfo,
    caps: Caps,
    kernels: Mutex<Vec<Recorded>>,
    live: Arc<AtomicUsize>,
    cache: KernelCache,
    this: Weak<Recorder>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new_cyclic(|this| Recorder {
            info: DeviceInfo {
                id: "record:0".into(),
                backend: "record".into(),
                name: "kernel recorder (runs nothing)".into(),
                vendor: "anyaccel".into(),
                driver_version: String::new(),
                memory_bytes: 1 << 40,
                max_buffer_bytes: 1 << 40,
                // As on every NVIDIA GPU since Fermi.
                max_work_group_size: 1024,
                compute_units: 1,
            },
            caps: Caps {
                dtypes: vec![
                    DType::F32,
                    DType::F16,
                    DType::BF16,
                    DType::F64,
                    DType::I32,
                    DType::I64,
                    DType::U8,
                    DType::I8,
                    DType::Bool,
                ],
                dialects: vec![Dialect::Cuda, Dialect::Ptx],
                native_ops: Vec::new(),
                timestamps: false,
            },
            kernels: Mutex::new(Vec::new()),
            live: Arc::new(AtomicUsize::new(0)),
            cache: KernelCache::new(),
            this: this.clone(),
        })
    }

    /// Every kernel recorded so far, in the order first asked for.
    pub fn kernels(&self) -> Vec<Recorded> {
        self.kernels.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

struct HostBytes {
    bytes: Mutex<Vec<u8>>,
    live: Arc<AtomicUsize>,
}

impl DeviceMemory for HostBytes {
    fn size(&self) -> usize {
        self.bytes.lock().map(|b| b.len()).unwrap_or(0)
    }
    fn device_id(&self) -> &str {
        "record:0"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for HostBytes {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct NoKernel(String);

impl Kernel for NoKernel {
    fn name(&self) -> &str {
        &self.0
    }
    fn dialect(&self) -> Dialect {
        Dialect::Cuda
    }
    fn device_id(&self) -> &str {
        "record:0"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Device for Recorder {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn caps(&self) -> &Caps {
        &self.caps
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        if bytes > 1 << 34 {
            return Err(Error::out_of_memory(format!("record: {bytes} bytes")));
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Buffer::new(Arc::new(HostBytes {
            bytes: Mutex::new(vec![0; bytes]),
            live: self.live.clone(),
        })))
    }
    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        let device = self
            .this
            .upgrade()
            .ok_or_else(|| Error::internal("record: the device is gone"))?;
        Ok(Arc::new(RecorderQueue { device }))
    }
    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        let KernelSource::Cuda {
            source,
            entry,
            options,
        } = source
        else {
            return Err(Error::unsupported(format!(
                "record: only CUDA C is recorded, not {}",
                source.dialect()
            )));
        };
        let k = Recorded {
            source: source.clone(),
            entry: entry.clone(),
            options: options.clone(),
        };
        let mut all = self
            .kernels
            .lock()
            .map_err(|_| Error::internal("poisoned"))?;
        if !all.contains(&k) {
            all.push(k);
        }
        Ok(Arc::new(NoKernel(entry.clone())))
    }
    fn kernel_cache(&self) -> &KernelCache {
        &self.cache
    }
    fn live_allocations(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct RecorderQueue {
    device: Arc<Recorder>,
}

fn host(view: &BufferView) -> Result<&HostBytes> {
    view.buffer()
        .downcast::<HostBytes>()
        .ok_or_else(|| Error::invalid_argument("record: not recorder memory"))
}

struct Done;

impl Event for Done {
    fn wait(&self) -> Result<()> {
        Ok(())
    }
    fn is_done(&self) -> bool {
        true
    }
    fn elapsed_since(&self, _: &dyn Event) -> Result<Duration> {
        Ok(Duration::ZERO)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Queue for RecorderQueue {
    fn device_id(&self) -> &str {
        "record:0"
    }
    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }
    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        validate::transfer("write", dst, data.len(), "record:0")?;
        let mut b = host(dst)?
            .bytes
            .lock()
            .map_err(|_| Error::internal("poisoned"))?;
        b[dst.offset()..dst.offset() + dst.len()].copy_from_slice(data);
        Ok(())
    }
    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), "record:0")?;
        let b = host(src)?
            .bytes
            .lock()
            .map_err(|_| Error::internal("poisoned"))?;
        dst.copy_from_slice(&b[src.offset()..src.offset() + src.len()]);
        Ok(())
    }
    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, "record:0")?;
        let data = {
            let b = host(src)?
                .bytes
                .lock()
                .map_err(|_| Error::internal("poisoned"))?;
            b[src.offset()..src.offset() + src.len()].to_vec()
        };
        self.write(dst, &data)
    }
    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, "record:0")?;
        let data: Vec<u8> = (0..dst.len()).map(|i| pattern[i % pattern.len()]).collect();
        self.write(dst, &data)
    }
    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        _: LaunchDims,
        _: &[KernelArg],
    ) -> Result<()> {
        validate::kernel(kernel, "record:0")
    }
    fn record_event(&self) -> Result<Arc<dyn Event>> {
        Ok(Arc::new(Done))
    }
    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        event.wait()
    }
    fn finish(&self) -> Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
