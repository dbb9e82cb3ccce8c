//! The device's roofline, measured on the spot: a large device-to-device copy for GB/s, the
//! best f32 matmul over doubling sizes for GFLOP/s.

use super::measure::{gb, values, Ctx};
use super::report::Roofline;
use super::stats::{time_on_queue, BenchResult, Samples};
use super::{COPY_BYTES, ROOFLINE_MATMUL_MAX};

/// The roofline: a large copy for GB/s, the best matmul over doubling sizes for GFLOP/s.
pub(super) fn roofline(ctx: &Ctx) -> Roofline {
    let mut r = Roofline::default();
    let q = &*ctx.queue;
    let max_buffer = usize::try_from(ctx.device.info().max_buffer_bytes).unwrap_or(usize::MAX);
    let bytes = COPY_BYTES.min(max_buffer) & !63;
    r.copy_bytes = bytes;
    ctx.note(&format!("roofline: copy of {bytes} bytes"));
    let copy = || -> BenchResult<Samples> {
        let src = ctx.device.alloc(bytes)?;
        let dst = ctx.device.alloc(bytes)?;
        // Touch both, so that first-touch page faults are not timed.
        q.fill(&src.whole(), &[0x5a; 4])?;
        q.fill(&dst.whole(), &[0; 4])?;
        let (s, d) = (src.whole(), dst.whole());
        time_on_queue(q, ctx.clock, ctx.budget.scaled(0.5), || q.copy(&s, &d))
    };
    match copy() {
        Ok(s) => r.gbps = Some(gb(2.0 * bytes as f64, s.median())),
        Err(e) => r.errors.push(format!("copy: {e}")),
    }
    // Doubling sizes while one repetition stays short, so that a slow device still finishes.
    let mut n = 256;
    while n <= ROOFLINE_MATMUL_MAX {
        ctx.note(&format!("roofline: matmul f32 {n}x{n}x{n}"));
        let run = || -> BenchResult<Samples> {
            let a = ctx.tensor(&values(n * n, 7), &[n, n])?;
            let b = ctx.tensor(&values(n * n, 8), &[n, n])?;
            let c = ctx.empty(&[n, n])?;
            time_on_queue(q, ctx.clock, ctx.budget.scaled(0.5), || {
                anyaccel::ops::matmul_into(q, &a, &b, None, &c)
            })
        };
        match run() {
            Ok(s) => {
                let gflops = 2.0 * (n as f64).powi(3) / s.median() / 1e9;
                if r.gflops.is_none_or(|best| gflops > best) {
                    r.gflops = Some(gflops);
                    r.matmul_size = Some(format!("{n}x{n}x{n}"));
                }
                if s.min() > ctx.budget.measure.as_secs_f64() / 4.0 {
                    break;
                }
            }
            Err(e) => {
                r.errors.push(format!("matmul: {e}"));
                break;
            }
        }
        n *= 2;
    }
    r
}
