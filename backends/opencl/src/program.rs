//! OpenCL C programs and kernels: building, argument binding and NDRange launches.

use std::any::Any;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

use anyaccel_hal::{
    validate, Device, Dialect, Error, ErrorCode, Kernel, KernelArg, KernelSource, LaunchDims,
    Result,
};
use opencl3::command_queue::enqueue_nd_range_kernel;
use opencl3::error_codes::{
    CL_BUILD_PROGRAM_FAILURE, CL_INVALID_ARG_SIZE, CL_INVALID_ARG_VALUE, CL_INVALID_BUILD_OPTIONS,
    CL_INVALID_KERNEL_ARGS, CL_INVALID_KERNEL_NAME, CL_INVALID_MEM_OBJECT,
    CL_INVALID_WORK_GROUP_SIZE, CL_INVALID_WORK_ITEM_SIZE,
};
use opencl3::kernel::{
    create_kernel, get_kernel_arg_data, get_kernel_data, get_kernel_work_group_data,
    set_kernel_arg, CL_KERNEL_ARG_ADDRESS_CONSTANT, CL_KERNEL_ARG_ADDRESS_GLOBAL,
    CL_KERNEL_ARG_ADDRESS_LOCAL, CL_KERNEL_ARG_ADDRESS_PRIVATE, CL_KERNEL_ARG_ADDRESS_QUALIFIER,
    CL_KERNEL_ARG_NAME, CL_KERNEL_ARG_TYPE_NAME, CL_KERNEL_NUM_ARGS, CL_KERNEL_WORK_GROUP_SIZE,
};
use opencl3::memory::{create_sub_buffer, CL_BUFFER_CREATE_TYPE_REGION};
use opencl3::program::{
    build_program, create_program_with_source, get_program_build_data, get_program_data,
    CL_PROGRAM_BUILD_LOG, CL_PROGRAM_KERNEL_NAMES,
};
use opencl3::types::{cl_buffer_region, cl_command_queue, cl_context, cl_event, cl_mem};

use crate::cl::{cl_error, code_name, info_text, le_u64, KernelHandle, MemHandle, ProgramHandle};
use crate::device::OpenClDevice;
use crate::queue::resolve;

/// Always added to the build options: it lets the backend read each argument's address space,
/// so that a buffer given for a by-value argument (or the reverse) is an error, not a crash.
const ARG_INFO_OPTION: &str = "-cl-kernel-arg-info";

/// What kind of value a kernel parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    /// `__global` or `__constant` pointer: a buffer.
    Buffer,
    /// `__local` pointer: not supported by launches.
    Local,
    /// Passed by value.
    Value,
    /// The driver did not say.
    Unknown,
}

#[derive(Debug, Clone)]
struct Param {
    kind: ParamKind,
    /// `float* x`, or empty when the driver gives no names.
    text: String,
}

/// An OpenCL C kernel compiled for one device.
///
/// Launches may come from many threads: setting the arguments of a `cl_kernel` is not
/// thread-safe, so a mutex is held from the first argument to the enqueue.
pub struct OpenClKernel {
    name: String,
    /// "kernel `name`", what the queue calls a launch of it in errors.
    label: Arc<str>,
    device_id: Arc<str>,
    context: cl_context,
    params: Vec<Param>,
    kernel: Mutex<KernelHandle>,
    _program: ProgramHandle,
}

// SAFETY: `context` is only compared, never dereferenced; the kernel handle is used under its
// mutex where OpenCL requires it (clSetKernelArg), and the other fields are Send and Sync.
unsafe impl Send for OpenClKernel {}
// SAFETY: as above.
unsafe impl Sync for OpenClKernel {}

/// A launch whose arguments have been checked and resolved.
pub(crate) struct PreparedLaunch {
    values: Vec<ArgValue>,
    /// Sub-buffers made for views at non-zero offsets: kept until the launch completes.
    pub(crate) sub_buffers: Vec<MemHandle>,
    work_dim: u32,
    global: [usize; 3],
    local: Option<[usize; 3]>,
}

enum ArgValue {
    Mem(cl_mem),
    Bytes(Vec<u8>),
}

/// Builds `source` for `device` and creates its kernel.
pub(crate) fn compile(device: &OpenClDevice, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
    let id = &device.info().id;
    let KernelSource::OpenClC {
        source,
        entry,
        options,
    } = source
    else {
        return Err(Error::unsupported(format!(
            "compile: {id} compiles OpenCL C only, not {} (entry `{}`)",
            source.dialect(),
            source.entry()
        )));
    };
    if !device.compiler_available() {
        return Err(Error::unsupported(format!(
            "compile `{entry}`: {id} has no OpenCL C compiler (CL_DEVICE_COMPILER_AVAILABLE is false)"
        )));
    }
    if source.trim().is_empty() {
        return Err(Error::invalid_argument(format!(
            "compile `{entry}` for {id}: the source is empty"
        )));
    }
    let c_options = CString::new(format!("{options} {ARG_INFO_OPTION}")).map_err(|_| {
        Error::invalid_argument(format!(
            "compile `{entry}` for {id}: the build options contain a NUL byte"
        ))
    })?;
    let c_entry = CString::new(entry.as_str()).map_err(|_| {
        Error::invalid_argument(format!(
            "compile: entry point `{}` contains a NUL byte",
            entry.escape_debug()
        ))
    })?;
    let program =
        create_program_with_source(device.context(), &[source.as_str()]).map_err(|code| {
            cl_error(
                code,
                ErrorCode::CompileFailed,
                format!("compile `{entry}` for {id}: clCreateProgramWithSource"),
            )
        })?;
    let program = ProgramHandle::from_raw(program);
    if let Err(code) = build_program(
        program.raw(),
        &[device.raw()],
        &c_options,
        None,
        std::ptr::null_mut(),
    ) {
        let log = get_program_build_data(program.raw(), device.raw(), CL_PROGRAM_BUILD_LOG)
            .map(|b| info_text(&b))
            .unwrap_or_default();
        let why = match code {
            CL_BUILD_PROGRAM_FAILURE => "the OpenCL C compiler reported errors".to_string(),
            CL_INVALID_BUILD_OPTIONS => format!("the build options `{options}` are invalid"),
            _ => "clBuildProgram failed".to_string(),
        };
        let log = if log.is_empty() {
            "(the compiler gave no log)".to_string()
        } else {
            log
        };
        return Err(Error::compile_failed(format!(
            "compile `{entry}` for {id}: {why} ({}):\n{log}",
            code_name(code)
        )));
    }
    let kernel = create_kernel(program.raw(), &c_entry).map_err(|code| {
        if code == CL_INVALID_KERNEL_NAME {
            let names = get_program_data(program.raw(), CL_PROGRAM_KERNEL_NAMES)
                .map(|b| info_text(&b))
                .unwrap_or_default();
            Error::invalid_argument(format!(
                "compile: entry point `{entry}` is not a __kernel of the program built for {id}; \
                 its kernels are: [{}]",
                names.replace(';', ", ")
            ))
        } else {
            cl_error(
                code,
                ErrorCode::CompileFailed,
                format!("compile `{entry}` for {id}: clCreateKernel"),
            )
        }
    })?;
    let kernel = KernelHandle::from_raw(kernel);
    let num_args = get_kernel_data(kernel.raw(), CL_KERNEL_NUM_ARGS)
        .ok()
        .and_then(|b| le_u64(&b))
        .ok_or_else(|| {
            Error::compile_failed(format!(
                "compile `{entry}` for {id}: cannot read the kernel's argument count"
            ))
        })?;
    let params = (0..num_args as u32).map(|i| param(&kernel, i)).collect();
    Ok(Arc::new(OpenClKernel {
        label: format!("kernel `{entry}`").into(),
        name: entry.clone(),
        device_id: device.id_arc().clone(),
        context: device.context(),
        params,
        kernel: Mutex::new(kernel),
        _program: program,
    }))
}

fn param(kernel: &KernelHandle, index: u32) -> Param {
    let kind = match get_kernel_arg_data(kernel.raw(), index, CL_KERNEL_ARG_ADDRESS_QUALIFIER)
        .ok()
        .and_then(|b| le_u64(&b))
        .map(|q| q as u32)
    {
        Some(CL_KERNEL_ARG_ADDRESS_GLOBAL | CL_KERNEL_ARG_ADDRESS_CONSTANT) => ParamKind::Buffer,
        Some(CL_KERNEL_ARG_ADDRESS_LOCAL) => ParamKind::Local,
        Some(CL_KERNEL_ARG_ADDRESS_PRIVATE) => ParamKind::Value,
        _ => ParamKind::Unknown,
    };
    let text_of = |what| {
        get_kernel_arg_data(kernel.raw(), index, what)
            .map(|b| info_text(&b))
            .unwrap_or_default()
    };
    let (ty, name) = (
        text_of(CL_KERNEL_ARG_TYPE_NAME),
        text_of(CL_KERNEL_ARG_NAME),
    );
    let text = match (ty.is_empty(), name.is_empty()) {
        (false, false) => format!("{ty} {name}"),
        (false, true) => ty,
        (true, false) => name,
        (true, true) => String::new(),
    };
    Param { kind, text }
}

/// `launch `name` argument i (`the parameter's text`)`, the name of a kernel argument in
/// messages.
struct ArgLabel<'a> {
    kernel: &'a OpenClKernel,
    i: usize,
}

impl std::fmt::Display for ArgLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, i) = (&self.kernel.name, self.i);
        match self.kernel.params.get(i).map(|p| p.text.as_str()) {
            Some(t) if !t.is_empty() => write!(f, "launch `{name}` argument {i} (`{t}`)"),
            _ => write!(f, "launch `{name}` argument {i}"),
        }
    }
}

impl OpenClKernel {
    /// "kernel `name`", for the queue's errors about a launch of it.
    pub(crate) fn label(&self) -> Arc<str> {
        self.label.clone()
    }

    /// How messages name argument `i`: formatted only when a message is made.
    fn arg_label(&self, i: usize) -> ArgLabel<'_> {
        ArgLabel { kernel: self, i }
    }

    /// Checks the launch and resolves its arguments; `None` for an empty grid.
    pub(crate) fn prepare(
        &self,
        device: &OpenClDevice,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<Option<PreparedLaunch>> {
        let id = &device.info().id;
        if self.context != device.context() {
            return Err(Error::invalid_argument(format!(
                "launch `{}`: the kernel was compiled for another OpenCL context (a device \
                 object of another probe, also called {id}); compile it on the queue's own device",
                self.name
            )));
        }
        if args.len() != self.params.len() {
            return Err(Error::invalid_argument(format!(
                "launch `{}`: {} arguments given, but the kernel takes {}",
                self.name,
                args.len(),
                self.params.len()
            )));
        }
        let mut values = Vec::with_capacity(args.len());
        let mut sub_buffers = Vec::new();
        for (i, (arg, param)) in args.iter().zip(&self.params).enumerate() {
            match (arg, param.kind) {
                (KernelArg::Buffer(_), ParamKind::Value) => {
                    return Err(Error::invalid_argument(format!(
                        "{}: a buffer was given, but the argument is passed by value: expected \
                         KernelArg::Bytes",
                        self.arg_label(i)
                    )))
                }
                (KernelArg::Bytes(_), ParamKind::Buffer) => {
                    return Err(Error::invalid_argument(format!(
                        "{}: bytes were given, but the argument is a __global or __constant \
                         pointer: expected KernelArg::Buffer",
                        self.arg_label(i)
                    )))
                }
                (_, ParamKind::Local) => {
                    return Err(Error::unsupported(format!(
                        "{}: __local pointer arguments are not supported; declare the local \
                         array inside the kernel (sized with a -D option)",
                        self.arg_label(i)
                    )))
                }
                (KernelArg::Bytes(bytes), _) => {
                    if bytes.is_empty() {
                        return Err(Error::invalid_argument(format!(
                            "{}: a by-value argument of 0 bytes",
                            self.arg_label(i)
                        )));
                    }
                    values.push(ArgValue::Bytes(bytes.clone()));
                }
                (KernelArg::Buffer(view), _) => {
                    validate::on_device(self.arg_label(i), view, id)?;
                    let mem = resolve(self.arg_label(i), view, device)?;
                    let align = device.base_address_alignment();
                    if view.offset() == 0 || view.is_empty() {
                        // An empty view is never touched: its buffer, or null, will do.
                        values.push(ArgValue::Mem(if view.is_empty() {
                            std::ptr::null_mut()
                        } else {
                            mem
                        }));
                    } else if view.offset() % align == 0 {
                        let region = cl_buffer_region {
                            origin: view.offset(),
                            size: view.len(),
                        };
                        // SAFETY: the region lies inside the buffer (the view is checked), its
                        // origin meets the device's alignment, and flags 0 inherit the
                        // parent's read-write access.
                        let sub = unsafe {
                            create_sub_buffer(
                                mem,
                                0,
                                CL_BUFFER_CREATE_TYPE_REGION,
                                (&region as *const cl_buffer_region).cast::<c_void>(),
                            )
                        }
                        .map_err(|code| {
                            cl_error(
                                code,
                                ErrorCode::InvalidArgument,
                                format!(
                                    "{}: sub-buffer of bytes {}..{}",
                                    self.arg_label(i),
                                    view.offset(),
                                    view.offset() + view.len()
                                ),
                            )
                        })?;
                        let sub = MemHandle::from_raw(sub);
                        values.push(ArgValue::Mem(sub.raw()));
                        sub_buffers.push(sub);
                    } else {
                        return Err(Error::unsupported(format!(
                            "{}: a buffer view at byte offset {} cannot be passed to a \
                             kernel on {id}: OpenCL sub-buffers must start at a multiple of \
                             CL_DEVICE_MEM_BASE_ADDR_ALIGN ({align} bytes); pass the whole \
                             buffer and the offset as a scalar argument instead",
                            self.arg_label(i),
                            view.offset()
                        )));
                    }
                }
            }
        }
        let Some((work_dim, global, local)) = self.grid(device, dims)? else {
            return Ok(None);
        };
        Ok(Some(PreparedLaunch {
            values,
            sub_buffers,
            work_dim,
            global,
            local,
        }))
    }

    /// The NDRange: dimensions used, global and local sizes; `None` for an empty grid.
    #[allow(clippy::type_complexity)]
    fn grid(
        &self,
        device: &OpenClDevice,
        dims: LaunchDims,
    ) -> Result<Option<(u32, [usize; 3], Option<[usize; 3]>)>> {
        let name = &self.name;
        let mut global = [0usize; 3];
        for (g, &n) in global.iter_mut().zip(&dims.global) {
            *g = usize::try_from(n).map_err(|_| {
                Error::invalid_argument(format!(
                    "launch `{name}`: global size {n} does not fit this host's size_t"
                ))
            })?;
        }
        let local = dims.local.map(|l| l.map(|x| x as usize));
        // Queue::launch has checked the local size against the launch contract (non-zero,
        // dividing the global size, within CL_DEVICE_MAX_WORK_GROUP_SIZE).
        if let Some(l) = local {
            let sizes = device.max_work_item_sizes();
            if let Some((d, (&want, &most))) = l
                .iter()
                .zip(sizes)
                .enumerate()
                .find(|(_, (&want, &most))| want as u64 > most)
            {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: local size {want} in dimension {d} exceeds the {most} \
                     (CL_DEVICE_MAX_WORK_ITEM_SIZES) of {}",
                    device.info().id
                )));
            }
        }
        if global.contains(&0) {
            return Ok(None);
        }
        let used = |d: usize| global[d] > 1 || local.is_some_and(|l| l[d] > 1);
        let work_dim = if used(2) {
            3
        } else if used(1) {
            2
        } else {
            1
        };
        Ok(Some((work_dim, global, local)))
    }

    /// Sets the arguments and enqueues the launch on `queue`, under the kernel's lock.
    pub(crate) fn enqueue(
        &self,
        queue: cl_command_queue,
        device: &OpenClDevice,
        launch: &PreparedLaunch,
    ) -> Result<cl_event> {
        let kernel = self.kernel.lock().unwrap_or_else(|p| p.into_inner());
        for (i, value) in launch.values.iter().enumerate() {
            let (size, ptr) = match value {
                ArgValue::Mem(mem) => (
                    std::mem::size_of::<cl_mem>(),
                    (mem as *const cl_mem).cast::<c_void>(),
                ),
                ArgValue::Bytes(b) => (b.len(), b.as_ptr().cast::<c_void>()),
            };
            // SAFETY: the index is below the kernel's argument count (checked in `prepare`),
            // `ptr` points at `size` readable bytes, buffer arguments are live `cl_mem`s (or
            // null) of this context, and the kernel's lock is held.
            unsafe { set_kernel_arg(kernel.raw(), i as u32, size, ptr) }.map_err(|code| {
                let why = match (code, value) {
                    (CL_INVALID_ARG_SIZE, ArgValue::Bytes(b)) => format!(
                        "{} bytes were given, which is not the size of the argument's type",
                        b.len()
                    ),
                    (CL_INVALID_ARG_SIZE | CL_INVALID_MEM_OBJECT, ArgValue::Mem(_)) => {
                        "a buffer was given, but the argument is not a buffer".to_string()
                    }
                    (CL_INVALID_ARG_VALUE, _) => "the driver rejected the value".to_string(),
                    _ => "clSetKernelArg failed".to_string(),
                };
                Error::invalid_argument(format!(
                    "{}: {why} ({})",
                    self.arg_label(i),
                    code_name(code)
                ))
            })?;
        }
        let local_ptr = launch
            .local
            .as_ref()
            .map_or(std::ptr::null(), |l| l.as_ptr());
        // SAFETY: every argument is set, `global` and `local` have at least `work_dim`
        // entries, and the queue belongs to the kernel's context.
        let event = unsafe {
            enqueue_nd_range_kernel(
                queue,
                kernel.raw(),
                launch.work_dim,
                std::ptr::null(),
                launch.global.as_ptr(),
                local_ptr,
                0,
                std::ptr::null(),
            )
        };
        event.map_err(|code| match code {
            CL_INVALID_WORK_GROUP_SIZE | CL_INVALID_WORK_ITEM_SIZE => {
                let most = get_kernel_work_group_data(
                    kernel.raw(),
                    device.raw(),
                    CL_KERNEL_WORK_GROUP_SIZE,
                )
                .ok()
                .and_then(|b| le_u64(&b))
                .map_or(String::new(), |m| {
                    format!("; this kernel allows at most {m} work items per group")
                });
                Error::invalid_argument(format!(
                    "launch `{}`: local size {:?} rejected by {} ({}){most}",
                    self.name,
                    launch.local,
                    device.info().id,
                    code_name(code)
                ))
            }
            CL_INVALID_KERNEL_ARGS => Error::invalid_argument(format!(
                "launch `{}`: the driver says some arguments are not set ({})",
                self.name,
                code_name(code)
            )),
            _ => cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("launch `{}` on {}", self.name, device.info().id),
            ),
        })
    }
}

impl Kernel for OpenClKernel {
    fn name(&self) -> &str {
        &self.name
    }
    fn dialect(&self) -> Dialect {
        Dialect::OpenClC
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
