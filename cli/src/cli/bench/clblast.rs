//! The OpenCL peer: CLBlast `CLBlastSgemm` (`libclblast.so.1`, opened at run time) on buffers of
//! anyaccel's own OpenCL device, through a command queue of its own on the same context and
//! device. The context and device come from the buffer itself (`clGetMemObjectInfo`,
//! `clGetContextInfo`), so the backend needs to expose nothing but the `cl_mem`.

use std::ffi::c_void;

/// `cl_mem`, `cl_context`, `cl_device_id`, `cl_command_queue`: opaque OpenCL handles.
type Handle = *mut c_void;

const CL_MEM_CONTEXT: u32 = 0x1106;
const CL_CONTEXT_DEVICES: u32 = 0x1081;
/// `CLBlastLayoutRowMajor` and `CLBlastTransposeNo` of `clblast_c.h`.
const CLBLAST_ROW_MAJOR: i32 = 101;
const CLBLAST_NO_TRANSPOSE: i32 = 111;

type GetInfoFn = unsafe extern "C" fn(Handle, u32, usize, *mut c_void, *mut usize) -> i32;
type CreateQueueFn = unsafe extern "C" fn(Handle, Handle, u64, *mut i32) -> Handle;
type QueueFn = unsafe extern "C" fn(Handle) -> i32;
#[allow(clippy::type_complexity)]
type SgemmFn = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    usize,
    usize,
    usize,
    f32,
    Handle,
    usize,
    usize,
    Handle,
    usize,
    usize,
    f32,
    Handle,
    usize,
    usize,
    *mut Handle,
    *mut Handle,
) -> i32;

/// CLBlast with a command queue of its own on the context of the buffers it is given.
pub struct ClBlast {
    sgemm: SgemmFn,
    finish: QueueFn,
    release_queue: QueueFn,
    queue: Handle,
    // Keep both libraries mapped while the functions above may be called; dropped last.
    _clblast: libloading::Library,
    _opencl: libloading::Library,
}

fn open(names: &[&str]) -> Result<(libloading::Library, String), String> {
    let mut why = Vec::new();
    for name in names {
        // SAFETY: these libraries have no load-time side effects beyond their own set-up.
        match unsafe { libloading::Library::new(*name) } {
            Ok(l) => return Ok((l, name.to_string())),
            Err(e) => why.push(format!("{name}: {e}")),
        }
    }
    Err(why.join("; "))
}

fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
    let mut c_name = name.as_bytes().to_vec();
    c_name.push(0);
    // SAFETY: each caller names a function whose C signature `T` mirrors.
    unsafe { lib.get::<T>(c_name.as_slice()) }
        .map(|f| *f)
        .map_err(|e| format!("{name}: {e}"))
}

impl ClBlast {
    /// Opens libOpenCL and CLBlast and makes a queue on the context and device of `mem`, a
    /// `cl_mem` of anyaccel's OpenCL device.
    pub fn for_buffer(mem: Handle) -> Result<ClBlast, String> {
        if mem.is_null() {
            return Err("clblast: the buffer has no cl_mem (an empty allocation)".into());
        }
        let (opencl, _) = open(&["libOpenCL.so.1", "libOpenCL.so"])?;
        let (clblast, _) = open(&["libclblast.so.1", "libclblast.so"])
            .map_err(|e| format!("CLBlast not found (Debian: apt-get install libclblast1): {e}"))?;
        let mem_info: GetInfoFn = symbol(&opencl, "clGetMemObjectInfo")?;
        let context_info: GetInfoFn = symbol(&opencl, "clGetContextInfo")?;
        let create_queue: CreateQueueFn = symbol(&opencl, "clCreateCommandQueue")?;
        let finish: QueueFn = symbol(&opencl, "clFinish")?;
        let release_queue: QueueFn = symbol(&opencl, "clReleaseCommandQueue")?;
        let sgemm: SgemmFn = symbol(&clblast, "CLBlastSgemm")?;
        let mut context: Handle = std::ptr::null_mut();
        let mut device: Handle = std::ptr::null_mut();
        // SAFETY: `mem` is a live cl_mem; each query writes one handle-sized value into a
        // handle of that size (the context has at least one device, and only the first is read
        // when it has more: the size passed is that of one handle, which OpenCL refuses with an
        // error rather than overrunning when it is too small).
        let status = unsafe {
            let s = mem_info(
                mem,
                CL_MEM_CONTEXT,
                size_of::<Handle>(),
                (&mut context as *mut Handle).cast(),
                std::ptr::null_mut(),
            );
            if s != 0 {
                s
            } else {
                context_info(
                    context,
                    CL_CONTEXT_DEVICES,
                    size_of::<Handle>(),
                    (&mut device as *mut Handle).cast(),
                    std::ptr::null_mut(),
                )
            }
        };
        if status != 0 || context.is_null() || device.is_null() {
            return Err(format!(
                "clblast: cannot find the buffer's OpenCL context and device (status {status})"
            ));
        }
        let mut err = 0i32;
        // SAFETY: context and device are live handles of the same context; no properties.
        let queue = unsafe { create_queue(context, device, 0, &mut err) };
        if err != 0 || queue.is_null() {
            return Err(format!(
                "clblast: clCreateCommandQueue failed with status {err}"
            ));
        }
        Ok(ClBlast {
            sgemm,
            finish,
            release_queue,
            queue,
            _clblast: clblast,
            _opencl: opencl,
        })
    }

    /// `c = a @ b` for row-major contiguous n x n matrices in `cl_mem`s of at least `4 n^2`
    /// bytes each, of the context this was made for; waits for completion.
    ///
    /// # Safety
    ///
    /// `a`, `b` and `c` must be live `cl_mem`s of that context holding at least `4 n^2` bytes,
    /// and `c` must not overlap `a` or `b`.
    pub unsafe fn sgemm_square(
        &self,
        n: usize,
        a: Handle,
        b: Handle,
        c: Handle,
    ) -> Result<(), String> {
        let mut queue = self.queue;
        // SAFETY: the caller's contract covers the buffers; `queue` is live until drop; a null
        // event pointer asks CLBlast for no event.
        let status = unsafe {
            (self.sgemm)(
                CLBLAST_ROW_MAJOR,
                CLBLAST_NO_TRANSPOSE,
                CLBLAST_NO_TRANSPOSE,
                n,
                n,
                n,
                1.0,
                a,
                0,
                n,
                b,
                0,
                n,
                0.0,
                c,
                0,
                n,
                &mut queue,
                std::ptr::null_mut(),
            )
        };
        if status != 0 {
            return Err(format!("CLBlastSgemm returned status {status}"));
        }
        // SAFETY: the queue is live.
        let status = unsafe { (self.finish)(self.queue) };
        if status != 0 {
            return Err(format!(
                "clFinish after CLBlastSgemm returned status {status}"
            ));
        }
        Ok(())
    }
}

impl Drop for ClBlast {
    fn drop(&mut self) {
        // SAFETY: the queue was made in `for_buffer` and is released once, here.
        unsafe {
            (self.finish)(self.queue);
            (self.release_queue)(self.queue);
        }
    }
}
