//! `anyaccel devices --transfers`: for each ordered pair of devices, the path a tensor takes
//! from one to the other ([`anyaccel::hal::transfer`]) and its measured bandwidth, beside a host
//! `memcpy` of the same bytes measured in alternation with it (like `nvidia-smi topo -m`, with
//! figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyaccel::hal::transfer::Path;
use anyaccel::hal::{DType, Device, DeviceGroup, Queue, ReduceOp, Result, Tensor};
use serde::Serialize;

use super::table::Table;

/// Alternating rounds of ours and memcpy per pair; the medians are reported.
const ROUNDS: usize = 5;

/// One ordered pair of devices.
#[derive(Serialize)]
pub struct TransferReport {
    /// The source device.
    pub from: String,
    /// The destination device.
    pub to: String,
    /// `device copy` (one device), `peer copy`, `host copy` or `staged through host` (two
    /// devices); see `anyaccel::hal::transfer::Path`.
    pub path: String,
    /// Bytes per copy.
    pub bytes: usize,
    /// `Tensor::copy_to` until the destination queue has finished, in GB/s (1e9 bytes/s).
    pub gbps: f64,
    /// A host memcpy of the same bytes, in GB/s, measured alternately with it.
    pub memcpy_gbps: f64,
    /// `gbps / memcpy_gbps`.
    pub ratio: f64,
}

/// `DeviceGroup::all_reduce` over one queue of every device at once.
#[derive(Serialize)]
pub struct GroupReport {
    /// The ranks' devices, in rank order.
    pub devices: Vec<String>,
    /// The collective library the group used, `null` for the host path.
    pub library: Option<String>,
    /// Bytes per rank (f32 sum).
    pub bytes: usize,
    /// Bus bandwidth as nccl-tests defines it: `2 (n - 1) / n * bytes / time`, in GB/s.
    pub busbw_gbps: f64,
    /// A host memcpy of the same bytes, in GB/s, measured alternately with it.
    pub memcpy_gbps: f64,
    /// `busbw_gbps / memcpy_gbps`.
    pub ratio: f64,
}

/// Measures an f32 sum all-reduce of `bytes` bytes a rank over one queue of every device.
pub fn measure_group(devices: &[Arc<dyn Device>], bytes: usize) -> Result<Option<GroupReport>> {
    if devices.len() < 2 {
        return Ok(None);
    }
    let elements = (bytes / 4).max(1);
    let bytes = elements * 4;
    let queues = devices
        .iter()
        .map(|d| d.create_queue())
        .collect::<Result<Vec<_>>>()?;
    let group = DeviceGroup::new(queues.clone())?;
    let tensors = queues
        .iter()
        .map(|q| Tensor::from_slice(&**q, &vec![1.0f32; elements], &[elements]))
        .collect::<Result<Vec<_>>>()?;
    let src_host = vec![7u8; bytes];
    let mut dst_host = vec![0u8; bytes];
    let round = || -> Result<Duration> {
        for q in &queues {
            q.finish()?;
        }
        let t = Instant::now();
        group.all_reduce(&tensors, ReduceOp::Sum)?;
        for q in &queues {
            q.finish()?;
        }
        Ok(t.elapsed())
    };
    round()?;
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(round()?);
        let t = Instant::now();
        dst_host.copy_from_slice(std::hint::black_box(&src_host));
        std::hint::black_box(&mut dst_host);
        peer.push(t.elapsed());
    }
    let n = devices.len() as f64;
    let busbw_gbps = 2.0 * (n - 1.0) / n * bytes as f64 / median(ours) / 1e9;
    let memcpy_gbps = bytes as f64 / median(peer) / 1e9;
    Ok(Some(GroupReport {
        devices: devices.iter().map(|d| d.info().id.clone()).collect(),
        library: group.library().map(str::to_string),
        bytes,
        busbw_gbps,
        memcpy_gbps,
        ratio: busbw_gbps / memcpy_gbps,
    }))
}

/// The human form of [`GroupReport`].
pub fn group_to_text(g: &GroupReport) -> String {
    format!(
        "
all_reduce (f32 sum, {} a rank) over {} in one process, {}: busbw {:.2} GB/s, \
         memcpy {:.2} GB/s, {:.2}x\n",
        super::devices::human_bytes(g.bytes as u64),
        g.devices.join(", "),
        g.library.as_deref().unwrap_or("staged through host"),
        g.busbw_gbps,
        g.memcpy_gbps,
        g.ratio
    )
}

/// The median of `d` in seconds.
fn median(mut d: Vec<Duration>) -> f64 {
    d.sort();
    d[d.len() / 2].as_secs_f64()
}

/// Measures every ordered pair of `devices` with copies of `bytes` bytes.
pub fn measure(devices: &[Arc<dyn Device>], bytes: usize) -> Result<Vec<TransferReport>> {
    let elements = (bytes / 4).max(1);
    let bytes = elements * 4;
    let src_host: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut dst_host = vec![0u8; bytes];
    let mut out = Vec::new();
    for a in devices {
        for b in devices {
            let qa = a.create_queue()?;
            let qb = b.create_queue()?;
            let src = Tensor::empty(&**a, DType::F32, &[elements])?;
            qa.write(src.view(), &src_host)?;
            let dst = Tensor::empty(&**b, DType::F32, &[elements])?;
            // Warm both: first-touch page faults and staging allocations are not the path.
            copy(&src, &*qa, &dst, &*qb)?;
            dst_host.copy_from_slice(&src_host);
            let (mut ours, mut peer) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ours.push(copy(&src, &*qa, &dst, &*qb)?);
                let t = Instant::now();
                dst_host.copy_from_slice(std::hint::black_box(&src_host));
                std::hint::black_box(&mut dst_host);
                peer.push(t.elapsed());
            }
            // The copy arrived whole.
            if dst.to_bytes(&*qb)? != src_host {
                return Err(anyaccel::hal::Error::internal(format!(
                    "transfers: the copy from {} to {} differs from its source",
                    a.info().id,
                    b.info().id
                )));
            }
            let gbps = bytes as f64 / median(ours) / 1e9;
            let memcpy_gbps = bytes as f64 / median(peer) / 1e9;
            out.push(TransferReport {
                from: a.info().id.clone(),
                to: b.info().id.clone(),
                path: Path::between(&*qa, &*qb).name().into(),
                bytes,
                gbps,
                memcpy_gbps,
                ratio: gbps / memcpy_gbps,
            });
        }
    }
    Ok(out)
}

/// One copy, until the destination queue has finished it.
fn copy(src: &Tensor, qa: &dyn Queue, dst: &Tensor, qb: &dyn Queue) -> Result<Duration> {
    qa.finish()?;
    qb.finish()?;
    let t = Instant::now();
    src.copy_to(qa, dst, qb)?;
    qb.finish()?;
    Ok(t.elapsed())
}

/// The human form: one row per ordered pair.
pub fn to_text(transfers: &[TransferReport]) -> String {
    let Some(first) = transfers.first() else {
        return "transfers: no devices\n".into();
    };
    let mut t = Table::new(&["FROM", "TO", "PATH", "GB/S", "MEMCPY GB/S", "RATIO"]);
    for r in transfers {
        t.row(vec![
            r.from.clone(),
            r.to.clone(),
            r.path.clone(),
            format!("{:.2}", r.gbps),
            format!("{:.2}", r.memcpy_gbps),
            format!("{:.2}x", r.ratio),
        ]);
    }
    format!(
        "\ntransfers: Tensor::copy_to of {} until the destination queue finished, median of {ROUNDS} \
         rounds alternating with a host memcpy of the same bytes\n{}",
        super::devices::human_bytes(first.bytes as u64),
        t.render()
    )
}
