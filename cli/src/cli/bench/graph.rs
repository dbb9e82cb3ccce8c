//! `graph`: a recorded graph of 100 small ops (`anyaccel::ops::Graph`) replayed, against the
//! same 100 calls made eagerly (the "peer"), each to completion, in alternating blocks on the
//! same queue. The replay's result is checked against the eager one, bit for bit.

use anyaccel::hal::{Queue, Tensor};
use anyaccel::ops::{self, Graph};

use super::measure::{
    check_failed, guarded, measure_with, new_entry, record, record_peer, values, Ctx,
};
use super::options::BenchOp;
use super::report::OpBench;
use super::stats::Clock;
use super::ROUNDS;

/// Ops in the graph.
pub(super) const OPS: usize = 100;
/// Elements of each op's tensors by default (`--size` sets it).
pub(super) const ELEMENTS: usize = 1024;

/// The 100 calls: 25 rounds of add, mul, relu and sub over `n` elements.
fn chain(q: &dyn Queue, x: &Tensor, y: &Tensor) -> anyaccel::Result<Tensor> {
    let mut h = x.clone();
    for _ in 0..OPS / 4 {
        h = ops::add(q, &h, y)?;
        h = ops::mul(q, &h, y)?;
        h = ops::relu(q, &h)?;
        h = ops::sub(q, &h, x)?;
    }
    Ok(h)
}

pub(super) fn bench_graph(ctx: &Ctx, n: usize) -> OpBench {
    let entry = new_entry(BenchOp::Graph, format!("{OPS} ops x {n}"), Clock::Host);
    ctx.note(&format!(
        "a graph of {OPS} elementwise ops over {n} elements replayed, side by side with the same \
         calls made eagerly"
    ));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        let x = ctx.tensor(&values(n, 21), &[n])?;
        let y = ctx.tensor(&values(n, 22), &[n])?;
        let (out, graph) = Graph::capture(q, || chain(q, &x, &y))?;
        let out = out?;
        q.finish()?;
        let mut eager_out = None;
        let mut eager = || {
            chain(q, &x, &y)
                .and_then(|t| {
                    q.finish()?;
                    eager_out = Some(t);
                    Ok(())
                })
                .map_err(|e| e.to_string())
        };
        let mut last = None;
        let (s, peer) = measure_with(
            ctx,
            Clock::Host,
            ctx.budget,
            ROUNDS,
            || {
                let r = graph.replay(q, &[])?;
                q.finish()?;
                last = Some(r);
                Ok(())
            },
            Some(&mut eager),
        )?;
        record(entry, &s, Clock::Host, None, None);
        if let Some(result) = peer {
            record_peer(entry, "the same calls, eagerly", result, None, None);
        }
        let replayed = last
            .ok_or_else(|| check_failed("graph", "no replay ran".to_string()))?
            .get(&out)?
            .to_vec::<f32>(q)?;
        let want = chain(q, &x, &y)?.to_vec::<f32>(q)?;
        if let Some(i) = (0..n).find(|&i| replayed[i].to_bits() != want[i].to_bits()) {
            return Err(check_failed(
                "graph",
                format!("out[{i}] = {}, eagerly {}", replayed[i], want[i]),
            ));
        }
        Ok(())
    })
}
