//! `anyaccel devices [--json]`: every compiled-in backend, available or not, and its devices.

use std::process::ExitCode;

use anyaccel::hal::{BackendStatus, Device};
use serde::Serialize;

use super::args::{print, CliError};
use super::table::Table;

/// The command's long description, shown by `anyaccel devices --help`.
pub const LONG_ABOUT: &str = "\
Lists every backend compiled into this build, available or not (with the loader's reason when
it is not), and for each device its id, name, vendor, memory, dtypes and kernel dialects.
Every backend is probed, whatever ANYACCEL_DEVICES selects. Each plugin is first loaded in a
child process: one that crashes, or takes longer than ANYACCEL_PLUGIN_LOAD_TIMEOUT seconds (30),
is listed unavailable with the reason.

With --transfers, it also copies a tensor (256 MiB; --transfer-bytes) between each ordered pair
of available devices with Tensor::copy_to, and shows the path (a device copy on one device; a peer
copy, a host copy or staged through host memory between two) and the bandwidth, beside a host
memcpy of the same bytes measured in alternation with it; then an all-reduce of that size over
every device at once (bus bandwidth against memcpy).";

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DevicesArgs {
    /// Print JSON instead: {"backends":[{"name","available","reason","devices":[...]}]}, each
    /// device with id, name, vendor, backend, memory_bytes, dtypes, dialects, driver_version,
    /// max_buffer_bytes, max_work_group_size, compute_units, native_ops and timestamps
    #[arg(long)]
    pub json: bool,
    /// Also measure, for each ordered pair of available devices, the path a tensor takes from
    /// one to the other and its bandwidth, beside a host memcpy of the same bytes
    /// (JSON: "transfers":[{"from","to","path","bytes","gbps","memcpy_gbps","ratio"}]), and an
    /// all-reduce over every device at once (JSON: "all_reduce":{"devices","library","bytes",
    /// "busbw_gbps","memcpy_gbps","ratio"})
    #[arg(long)]
    pub transfers: bool,
    /// Bytes per copy for --transfers
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub transfer_bytes: usize,
}

/// The JSON form: `{"backends":[...]}`.
#[derive(Serialize)]
pub struct DevicesReport {
    /// Every compiled-in backend, in registration order.
    pub backends: Vec<BackendReport>,
    /// With `--transfers`: every ordered pair of devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<super::transfers::TransferReport>,
    /// With `--transfers` and two devices or more: an all-reduce over all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_reduce: Option<super::transfers::GroupReport>,
}

/// One backend: available with its devices, or not with the reason.
#[derive(Serialize)]
pub struct BackendReport {
    /// `cpu`, `opencl`, `plugin:<name>`, ...
    pub name: String,
    /// True when probing found the backend's runtime.
    pub available: bool,
    /// Why it is unavailable, in the loader's own words; `null` when available.
    pub reason: Option<String>,
    /// Its devices (empty when unavailable).
    pub devices: Vec<DeviceReport>,
}

/// One device, as `Device::info()` and `Device::caps()` describe it.
#[derive(Serialize)]
pub struct DeviceReport {
    /// `<backend>:<index>`.
    pub id: String,
    /// The device's own name.
    pub name: String,
    /// Its vendor.
    pub vendor: String,
    /// The backend's name.
    pub backend: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Element types it holds, by name (`f32`, `bf16`, ...).
    pub dtypes: Vec<String>,
    /// Kernel dialects it compiles (`host`, `opencl-c`, `wgsl`, ...).
    pub dialects: Vec<String>,
    /// Driver or runtime version.
    pub driver_version: String,
    /// The largest single allocation in bytes.
    pub max_buffer_bytes: u64,
    /// The largest work-group (1 where the notion does not apply).
    pub max_work_group_size: u64,
    /// Compute units (cores, SMs, CUs).
    pub compute_units: u32,
    /// Ops it runs natively.
    pub native_ops: Vec<String>,
    /// True when its events carry device timestamps.
    pub timestamps: bool,
}

impl DeviceReport {
    fn of(device: &dyn Device) -> DeviceReport {
        let info = device.info();
        let caps = device.caps();
        DeviceReport {
            id: info.id.clone(),
            name: info.name.clone(),
            vendor: info.vendor.clone(),
            backend: info.backend.clone(),
            memory_bytes: info.memory_bytes,
            dtypes: caps.dtypes.iter().map(|d| d.name().to_string()).collect(),
            dialects: caps.dialects.iter().map(|d| d.name().to_string()).collect(),
            driver_version: info.driver_version.clone(),
            max_buffer_bytes: info.max_buffer_bytes,
            max_work_group_size: info.max_work_group_size,
            compute_units: info.compute_units,
            native_ops: caps.native_ops.clone(),
            timestamps: caps.timestamps,
        }
    }
}

impl DevicesReport {
    /// The report for these probed backends.
    pub fn of(backends: &[BackendStatus]) -> DevicesReport {
        DevicesReport {
            backends: backends
                .iter()
                .map(|b| match &b.devices {
                    Ok(devices) => BackendReport {
                        name: b.name.clone(),
                        available: true,
                        reason: None,
                        devices: devices.iter().map(|d| DeviceReport::of(&**d)).collect(),
                    },
                    Err(u) => BackendReport {
                        name: b.name.clone(),
                        available: false,
                        reason: Some(u.reason.clone()),
                        devices: Vec::new(),
                    },
                })
                .collect(),
            transfers: Vec::new(),
            all_reduce: None,
        }
    }

    /// The human form: a table of backends, then a table of devices.
    pub fn to_text(&self) -> String {
        let mut backends = Table::new(&["BACKEND", "STATUS"]);
        for b in &self.backends {
            let status = match (&b.reason, b.devices.len()) {
                (Some(reason), _) => format!("unavailable: {reason}"),
                (None, 1) => "available, 1 device".to_string(),
                (None, n) => format!("available, {n} devices"),
            };
            backends.row(vec![b.name.clone(), status]);
        }
        let mut devices = Table::new(&["ID", "NAME", "VENDOR", "MEMORY", "DTYPES", "DIALECTS"]);
        for d in self.backends.iter().flat_map(|b| &b.devices) {
            devices.row(vec![
                d.id.clone(),
                d.name.clone(),
                d.vendor.clone(),
                human_bytes(d.memory_bytes),
                d.dtypes.join(","),
                d.dialects.join(","),
            ]);
        }
        let mut out = backends.render();
        out.push('\n');
        if self.backends.iter().all(|b| b.devices.is_empty()) {
            out.push_str("no devices: no compiled-in backend is available\n");
        } else {
            out.push_str(&devices.render());
        }
        if !self.transfers.is_empty() {
            out.push_str(&super::transfers::to_text(&self.transfers));
        }
        if let Some(g) = &self.all_reduce {
            out.push_str(&super::transfers::group_to_text(g));
        }
        out
    }
}

/// `1536` -> `1.5 KiB`; exact below 1 KiB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Runs `anyaccel devices`.
pub fn run(args: &DevicesArgs) -> Result<ExitCode, CliError> {
    let json = args.json;
    // Each plugin loads in a child process first: one that crashes or hangs is listed
    // unavailable with the reason instead of taking the listing down.
    let (runtime, _) = super::plugins::runtime(&[], true).map_err(CliError::Failed)?;
    let backends = runtime.backends();
    let mut report = DevicesReport::of(&backends);
    if args.transfers {
        let devices: Vec<_> = backends
            .iter()
            .filter_map(|b| b.devices.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        report.transfers = super::transfers::measure(&devices, args.transfer_bytes)
            .map_err(|e| CliError::Failed(format!("devices --transfers: {e}")))?;
        report.all_reduce = super::transfers::measure_group(&devices, args.transfer_bytes)
            .map_err(|e| CliError::Failed(format!("devices --transfers (all_reduce): {e}")))?;
    }
    let text = if json {
        let mut s = serde_json::to_string(&report)
            .map_err(|e| CliError::Failed(format!("devices: encoding the JSON report: {e}")))?;
        s.push('\n');
        s
    } else {
        report.to_text()
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 << 30), "16.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn unavailable_backends_show_their_reason() {
        let report = DevicesReport {
            backends: vec![BackendReport {
                name: "opencl".into(),
                available: false,
                reason: Some("libOpenCL.so.1: cannot open shared object file".into()),
                devices: Vec::new(),
            }],
            transfers: Vec::new(),
            all_reduce: None,
        };
        let text = report.to_text();
        assert!(
            text.contains("opencl   unavailable: libOpenCL.so.1: cannot open shared object file"),
            "{text}"
        );
        assert!(text.contains("no devices"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["backends"][0]["available"], false);
        assert_eq!(
            json["backends"][0]["reason"],
            "libOpenCL.so.1: cannot open shared object file"
        );
        assert_eq!(json["backends"][0]["devices"], serde_json::json!([]));
    }
}
