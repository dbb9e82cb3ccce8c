//! `anyaccel devices --transfers`: for each ordered pair of devices, the path a tensor takes
//! from one to the other ([`anyaccel::hal::transfer`]) and its measured bandwidth, beside a host
//! `memcpy` of the same bytes measured in alternation with it (like `nvidia-smi topo -m`, with
//! figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyaccel::hal::transfer::Path;
use anyaccel::hal::{DType, Device, Queue, Result, Tensor};
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
