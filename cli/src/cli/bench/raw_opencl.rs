//! The raw opencl3 peer of the launch benchmark: the tiny kernel that anyaccel launches on its
//! OpenCL device (`kernels/tiny_add.cl`), launched through plain `opencl3` calls with no
//! anyaccel code in between, so that the difference is the layer's own cost.
//!
//! The peer finds its device as a user would, by enumerating every platform's every device in
//! order (anyaccel numbers `opencl:N` the same way), and makes a context, an in-order command
//! queue, three buffers and the program of its own. One dispatch is what a careful user of
//! opencl3 writes for one kernel call: set the four arguments, `clEnqueueNDRangeKernel` over
//! `n` work items (the work-group size left to the driver, as anyaccel's launch does), release
//! the returned event, and `clFinish`.

use std::ptr;

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::{cl_float, cl_uint, CL_BLOCKING};

/// The tiny kernel's source, shared with anyaccel's side of the benchmark.
pub const TINY_ADD_CL: &str = include_str!("kernels/tiny_add.cl");

/// The tiny kernel's entry point.
pub const TINY_ADD_ENTRY: &str = "tiny_add";

/// A context, queue, program and buffers of one OpenCL device, owned by this peer alone.
pub struct RawOpenCl {
    // Field order is drop order: the kernel and buffers go before the program and queue, the
    // context last.
    kernel: Kernel,
    a: Buffer<cl_float>,
    b: Buffer<cl_float>,
    c: Buffer<cl_float>,
    n: usize,
    n_arg: cl_uint,
    name: String,
    _program: Program,
    queue: CommandQueue,
    _context: Context,
}

fn failed(call: &str, e: impl std::fmt::Display) -> String {
    format!("raw opencl3: {call} failed: {e}")
}

impl RawOpenCl {
    /// Sets up device number `index` (counting every platform's devices in order, as
    /// anyaccel's `opencl:N` does), checks that its name is `expected_name`, builds the tiny
    /// kernel and writes `a` and `b` into buffers of their own.
    pub fn new(index: usize, expected_name: &str, a: &[f32], b: &[f32]) -> Result<Self, String> {
        if a.is_empty() || a.len() != b.len() {
            return Err(format!(
                "raw opencl3: a has {} and b {} elements: expected the same number, at least 1",
                a.len(),
                b.len()
            ));
        }
        let n = a.len();
        let n_arg = cl_uint::try_from(n)
            .map_err(|_| format!("raw opencl3: {n} elements: at most {} fit", cl_uint::MAX))?;
        let mut ids = Vec::new();
        for platform in
            opencl3::platform::get_platforms().map_err(|e| failed("clGetPlatformIDs", e))?
        {
            // A platform with no device answers CL_DEVICE_NOT_FOUND: it adds none.
            ids.extend(platform.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default());
        }
        let id = *ids.get(index).ok_or_else(|| {
            format!(
                "raw opencl3: no device number {index}: the platforms have {}",
                ids.len()
            )
        })?;
        let device = Device::new(id);
        let name = device.name().map_err(|e| failed("clGetDeviceInfo", e))?;
        if name != expected_name {
            return Err(format!(
                "raw opencl3: device number {index} is `{name}`, expected `{expected_name}`"
            ));
        }
        let context = Context::from_device(&device).map_err(|e| failed("clCreateContext", e))?;
        let queue = CommandQueue::create_default_with_properties(&context, 0, 0)
            .map_err(|e| failed("clCreateCommandQueueWithProperties", e))?;
        let program = Program::create_and_build_from_source(&context, TINY_ADD_CL, "")
            .map_err(|log| failed("clBuildProgram", log))?;
        let kernel =
            Kernel::create(&program, TINY_ADD_ENTRY).map_err(|e| failed("clCreateKernel", e))?;
        let buffer = || -> Result<Buffer<cl_float>, String> {
            // SAFETY: no host pointer is given, so OpenCL allocates and owns the memory.
            unsafe { Buffer::<cl_float>::create(&context, CL_MEM_READ_WRITE, n, ptr::null_mut()) }
                .map_err(|e| failed("clCreateBuffer", e))
        };
        let (mut ba, mut bb, bc) = (buffer()?, buffer()?, buffer()?);
        for (buf, data) in [(&mut ba, a), (&mut bb, b)] {
            // SAFETY: a blocking write of `n` elements into a buffer of `n` elements; `data`
            // outlives the call.
            unsafe { queue.enqueue_write_buffer(buf, CL_BLOCKING, 0, data, &[]) }
                .map_err(|e| failed("clEnqueueWriteBuffer", e))?;
        }
        Ok(RawOpenCl {
            kernel,
            a: ba,
            b: bb,
            c: bc,
            n,
            n_arg,
            name,
            _program: program,
            queue,
            _context: context,
        })
    }

    /// One line for the report: what the peer is and what one dispatch calls.
    pub fn description(&self) -> String {
        format!(
            "raw opencl3 on `{}`: a context and queue of its own; per dispatch 4 x \
             clSetKernelArg, clEnqueueNDRangeKernel over {} item(s), clFinish",
            self.name, self.n
        )
    }

    /// One launch of the tiny kernel over `n` items, then `clFinish`.
    pub fn dispatch(&mut self) -> Result<(), String> {
        let n = self.n_arg;
        // SAFETY: the arguments match the kernel's signature (three float buffers of `n`
        // elements each and a uint), and the buffers live as long as `self`.
        let event = unsafe {
            ExecuteKernel::new(&self.kernel)
                .set_arg(&self.a)
                .set_arg(&self.b)
                .set_arg(&self.c)
                .set_arg(&n)
                .set_global_work_size(self.n)
                .enqueue_nd_range(&self.queue)
        }
        .map_err(|e| failed("clEnqueueNDRangeKernel", e))?;
        drop(event);
        self.queue.finish().map_err(|e| failed("clFinish", e))
    }

    /// Reads `c` back (a blocking read).
    pub fn read_c(&self) -> Result<Vec<f32>, String> {
        let mut out = vec![0.0f32; self.n];
        // SAFETY: a blocking read of `n` elements from a buffer of `n` elements into `out`.
        unsafe {
            self.queue
                .enqueue_read_buffer(&self.c, CL_BLOCKING, 0, &mut out, &[])
        }
        .map_err(|e| failed("clEnqueueReadBuffer", e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required() -> bool {
        std::env::var("ANYACCEL_REQUIRE")
            .unwrap_or_default()
            .split(',')
            .any(|b| b.trim() == "opencl")
    }

    #[test]
    fn the_raw_peer_adds_on_the_first_device() {
        let first = opencl3::platform::get_platforms()
            .ok()
            .and_then(|p| {
                p.into_iter()
                    .find_map(|p| p.get_devices(CL_DEVICE_TYPE_ALL).ok())
            })
            .and_then(|ids| ids.first().copied());
        let Some(id) = first else {
            assert!(
                !required(),
                "ANYACCEL_REQUIRE names opencl, but no device was found"
            );
            eprintln!("skipped: no OpenCL device");
            return;
        };
        let name = Device::new(id).name().unwrap();
        let a: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..100).map(|i| 1.0 - i as f32).collect();
        let mut raw = RawOpenCl::new(0, &name, &a, &b).unwrap();
        for _ in 0..3 {
            raw.dispatch().unwrap();
        }
        let c = raw.read_c().unwrap();
        for i in 0..100 {
            assert_eq!(c[i], a[i] + b[i], "c[{i}]");
        }
        assert!(raw.description().contains(&name));
        let wrong = RawOpenCl::new(0, "no such device", &a, &b).err().unwrap();
        assert!(wrong.contains("expected `no such device`"), "{wrong}");
        let uneven = RawOpenCl::new(0, &name, &a, &b[..3]).err().unwrap();
        assert!(uneven.contains("100") && uneven.contains('3'), "{uneven}");
    }
}
