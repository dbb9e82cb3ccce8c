//! The HAL test suite, written once and run on every backend.
//!
//! Each test is a function taking a device and returning `Err(diagnosis)` on failure, so that
//! both `cargo test` (through [`hal_test_suite!`](crate::hal_test_suite)) and the conformance
//! runner (as its `hal` suite) run the same bodies. Each test checks that the device's
//! live-allocation count is back where it started when it ends.

use std::sync::Arc;

use crate::{Backend, Device, ErrorCode, Queue, Result};

/// A HAL test: a name and its body.
pub type HalTest = (&'static str, fn(&Arc<dyn Device>) -> Result<(), String>);

/// Every HAL test, in a sensible order (the list is in [`hal_test_suite!`](crate::hal_test_suite),
/// the one place that names them).
pub const HAL_TESTS: &[HalTest] = crate::hal_test_suite!(@names list);

/// The first device of `backend`, or `None` (after saying so) when it is unavailable and not
/// named in `ANYACCEL_REQUIRE`. Panics when a required backend is unavailable: that is a test
/// failure.
pub fn device_or_skip(backend: &dyn Backend) -> Option<Arc<dyn Device>> {
    let required = std::env::var(crate::REQUIRE_ENV)
        .map(|v| v.split(',').any(|s| s.trim() == backend.name()))
        .unwrap_or(false);
    match backend.probe() {
        Ok(devices) if !devices.is_empty() => Some(devices[0].clone()),
        Ok(_) if required => panic!("backend {} is required but has no devices", backend.name()),
        Err(u) if required => panic!("backend {} is required but {u}", backend.name()),
        Ok(_) => {
            eprintln!("skipped: backend {} has no devices", backend.name());
            None
        }
        Err(u) => {
            eprintln!("skipped: backend {} is {u}", backend.name());
            None
        }
    }
}

/// Instantiates every HAL test as a `#[test]` for a device made by `$make`, an expression of
/// type `fn() -> Option<Arc<dyn Device>>` (see [`device_or_skip`]).
///
/// The macro also holds the one list of the tests' names, from which [`HAL_TESTS`] is made.
#[macro_export]
macro_rules! hal_test_suite {
    ($make:expr) => {
        $crate::hal_test_suite!(@names each $make);
    };
    // The one list of the HAL tests, in order; `$how` says what to make of it.
    (@names $($how:tt)*) => {
        $crate::hal_test_suite! { @$($how)*; info, alloc_sizes, alloc_huge, round_trips, fills,
            copies, view_bounds, bad_arguments, queue_order, events_across_queues, event_timing,
            sticky_failures, threads, map_host }
    };
    (@list; $($name:ident),*) => {
        &[$((stringify!($name), $crate::testing::$name as fn(&_) -> _)),*]
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let make: fn() -> Option<std::sync::Arc<dyn $crate::Device>> = $make;
                let Some(device) = make() else { return };
                if let Err(e) = $crate::testing::$name(&device) {
                    panic!("{} on {}: {e}", stringify!($name), device.info().id);
                }
            }
        )*
    };
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn ok<T>(what: &str, r: Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: unexpected error: {e}"))
}

fn expect_code<T>(what: &str, r: Result<T>, code: ErrorCode) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected a {code} error")),
        Err(e) if e.code() == code => check(!e.message().is_empty(), || {
            format!("{what}: {code} error without a message")
        }),
        Err(e) => Err(format!("{what}: got `{e}`, expected a {code} error")),
    }
}

/// Runs `body` and then checks that the device's live allocations are back where they started.
fn no_leaks(
    device: &Arc<dyn Device>,
    body: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let before = device.live_allocations();
    body()?;
    let after = device.live_allocations();
    check(after == before, || {
        format!(
            "{} allocations leaked ({before} live before, {after} after)",
            after as i64 - before as i64
        )
    })
}

/// A deterministic byte pattern.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32)
                .to_le_bytes()[2]
        })
        .collect()
}

fn read_all(q: &dyn Queue, b: &crate::Buffer) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; b.size()];
    ok("read", q.read(&b.whole(), &mut out))?;
    Ok(out)
}

/// Device info is filled in and consistent with its backend.
pub fn info(device: &Arc<dyn Device>) -> Result<(), String> {
    let i = device.info();
    check(i.id.starts_with(&format!("{}:", i.backend)), || {
        format!("id `{}` does not start with `{}:`", i.id, i.backend)
    })?;
    check(!i.name.is_empty() && !i.vendor.is_empty(), || {
        "empty name or vendor".into()
    })?;
    check(i.memory_bytes > 0 && i.max_buffer_bytes > 0, || {
        "memory sizes are zero".into()
    })?;
    check(!device.caps().dtypes.is_empty(), || "no dtypes".into())?;
    let q = ok("create_queue", device.create_queue())?;
    check(
        q.device_id() == i.id && q.device().info().id == i.id,
        || "queue reports another device".into(),
    )
}

/// Allocations of 0, 1, 3 and 4101 bytes work and have those sizes.
pub fn alloc_sizes(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        for size in [0usize, 1, 3, 4096 + 5] {
            let b = ok(&format!("alloc({size})"), device.alloc(size))?;
            check(b.size() == size, || {
                format!("alloc({size}) gave {} bytes", b.size())
            })?;
            check(b.device_id() == device.info().id, || {
                "buffer of another device".into()
            })?;
            let data = pattern(size, 7);
            ok("write", q.write(&b.whole(), &data))?;
            check(read_all(&*q, &b)? == data, || {
                format!("round trip of {size} bytes differs")
            })?;
        }
        Ok(())
    })
}

/// A 1 PiB allocation is OutOfMemory, not a crash, and the device still works after it.
pub fn alloc_huge(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        expect_code(
            "alloc(1 PiB)",
            device.alloc(1usize << 50),
            ErrorCode::OutOfMemory,
        )?;
        expect_code(
            "alloc(usize::MAX)",
            device.alloc(usize::MAX),
            ErrorCode::OutOfMemory,
        )?;
        let b = ok("alloc after a failed one", device.alloc(64))?;
        check(b.size() == 64, || "wrong size".into())
    })
}

/// Write/read round trips at offsets 0, 1, 3 and lengths 1, 2, 3, 7, 4101, leaving the rest of
/// the buffer untouched.
pub fn round_trips(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        for offset in [0usize, 1, 3] {
            for len in [1usize, 2, 3, 7, 4101] {
                let size = offset + len + 5;
                let b = ok("alloc", device.alloc(size))?;
                let base = pattern(size, 1);
                ok("write", q.write(&b.whole(), &base))?;
                let data = pattern(len, 99);
                let view = b.view(offset, len).map_err(|e| e.to_string())?;
                ok("write view", q.write(&view, &data))?;
                let mut back = vec![0u8; len];
                ok("read view", q.read(&view, &mut back))?;
                check(back == data, || {
                    format!("offset {offset} len {len}: read back differs")
                })?;
                let mut expect = base.clone();
                expect[offset..offset + len].copy_from_slice(&data);
                check(read_all(&*q, &b)? == expect, || {
                    format!("offset {offset} len {len}: bytes outside the view changed")
                })?;
            }
        }
        Ok(())
    })
}

/// `Queue::map_host`: on a device that says its memory is host memory, the closure sees the
/// queue's earlier commands (a fill), its writes reach the queue's later commands, and nothing
/// outside the view changes; elsewhere it says no and the buffer is left alone.
pub fn map_host(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let b = ok("alloc", device.alloc(1 << 16))?;
        let view = b.view(64, 1 << 15).map_err(|e| e.to_string())?;
        ok("fill", q.fill(&b.whole(), &[3]))?;
        let mut seen = false;
        let mapped = ok(
            "map_host",
            q.map_host(&view, &mut |bytes| {
                seen = bytes.len() == 1 << 15 && bytes.iter().all(|&x| x == 3);
                bytes.fill(8);
                Ok(())
            }),
        )?;
        check(mapped == device.host_addressable(), || {
            format!(
                "map_host said {mapped}, host_addressable {}",
                device.host_addressable()
            )
        })?;
        check(mapped == seen, || {
            "the map did not see the earlier fill".into()
        })?;
        // A command after the map sees what the closure wrote.
        let head = b.view(0, 64).map_err(|e| e.to_string())?;
        ok("fill", q.fill(&head, &[1]))?;
        let out = read_all(&*q, &b)?;
        let middle = if mapped { 8 } else { 3 };
        check(
            out[..64].iter().all(|&x| x == 1)
                && out[64..64 + (1 << 15)].iter().all(|&x| x == middle)
                && out[64 + (1 << 15)..].iter().all(|&x| x == 3),
            || "map_host changed the wrong bytes, or its writes were lost".into(),
        )?;
        if mapped {
            let e = q
                .map_host(&view, &mut |_| {
                    Err(crate::Error::invalid_argument("refused by f"))
                })
                .err();
            check(
                e.is_some_and(|e| e.message().contains("refused by f")),
                || "the closure's error did not come back".into(),
            )?;
        }
        Ok(())
    })
}

/// Fills with 1-, 2- and 4-byte patterns at unaligned offsets and lengths.
pub fn fills(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let size = 4096 + 64;
        let b = ok("alloc", device.alloc(size))?;
        for pat in [&[0xABu8][..], &[0x12, 0x34], &[0xDE, 0xAD, 0xBE, 0xEF]] {
            for (offset, count) in [(0usize, 1usize), (1, 3), (3, 7), (5, 1000), (2, 0)] {
                let len = count * pat.len();
                let base = pattern(size, offset as u8);
                ok("write", q.write(&b.whole(), &base))?;
                let view = b.view(offset, len).map_err(|e| e.to_string())?;
                ok("fill", q.fill(&view, pat))?;
                let mut expect = base;
                for (i, byte) in expect[offset..offset + len].iter_mut().enumerate() {
                    *byte = pat[i % pat.len()];
                }
                check(read_all(&*q, &b)? == expect, || {
                    format!("fill {pat:?} at {offset} x{count} wrong")
                })?;
            }
        }
        expect_code(
            "fill with 3-byte pattern",
            q.fill(&b.whole().sub(0, 6).map_err(|e| e.to_string())?, &[1, 2, 3]),
            ErrorCode::InvalidArgument,
        )?;
        expect_code(
            "fill of 5 bytes with 2-byte pattern",
            q.fill(&b.view(0, 5).map_err(|e| e.to_string())?, &[1, 2]),
            ErrorCode::InvalidArgument,
        )
    })
}

/// Copies between views of one buffer and of two; overlapping views are rejected.
pub fn copies(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let a = ok("alloc", device.alloc(5000))?;
        let b = ok("alloc", device.alloc(5000))?;
        let da = pattern(5000, 3);
        let db = pattern(5000, 4);
        ok("write", q.write(&a.whole(), &da))?;
        ok("write", q.write(&b.whole(), &db))?;
        let v = |buf: &crate::Buffer, o, l| buf.view(o, l).map_err(|e| e.to_string());
        ok("copy a->b", q.copy(&v(&a, 1, 4097)?, &v(&b, 3, 4097)?))?;
        ok("copy within a", q.copy(&v(&a, 0, 100)?, &v(&a, 4100, 100)?))?;
        let mut eb = db.clone();
        eb[3..4100].copy_from_slice(&da[1..4098]);
        let mut ea = da.clone();
        ea.copy_within(0..100, 4100);
        check(read_all(&*q, &b)? == eb, || "copy a->b wrong".into())?;
        check(read_all(&*q, &a)? == ea, || "copy within a wrong".into())?;
        expect_code(
            "overlapping copy",
            q.copy(&v(&a, 0, 100)?, &v(&a, 50, 100)?),
            ErrorCode::InvalidArgument,
        )?;
        expect_code(
            "copy of unequal lengths",
            q.copy(&v(&a, 0, 100)?, &v(&b, 0, 99)?),
            ErrorCode::InvalidArgument,
        )?;
        check(read_all(&*q, &a)? == ea, || {
            "a rejected copy changed memory".into()
        })
    })
}

/// Views outside their buffer are OutOfBounds when made.
pub fn view_bounds(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let b = ok("alloc", device.alloc(100))?;
        ok("view(100, 0)", b.view(100, 0))?;
        expect_code("view(0, 101)", b.view(0, 101), ErrorCode::OutOfBounds)?;
        expect_code("view(101, 0)", b.view(101, 0), ErrorCode::OutOfBounds)?;
        expect_code(
            "view(usize::MAX, 2)",
            b.view(usize::MAX, 2),
            ErrorCode::OutOfBounds,
        )?;
        let v = ok("view(10, 50)", b.view(10, 50))?;
        expect_code("sub(40, 11)", v.sub(40, 11), ErrorCode::OutOfBounds)
    })
}

/// Wrong lengths are rejected before anything is written.
pub fn bad_arguments(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let b = ok("alloc", device.alloc(16))?;
        let base = pattern(16, 5);
        ok("write", q.write(&b.whole(), &base))?;
        expect_code(
            "write 15 bytes into 16",
            q.write(&b.whole(), &[0u8; 15]),
            ErrorCode::InvalidArgument,
        )?;
        let mut small = [0u8; 8];
        expect_code(
            "read 16 bytes into 8",
            q.read(&b.whole(), &mut small),
            ErrorCode::InvalidArgument,
        )?;
        check(read_all(&*q, &b)? == base, || {
            "a rejected write changed memory".into()
        })?;
        ok("finish", q.finish())
    })
}

/// 1,000 dependent operations come out in order: each fill of a scratch slot is copied out
/// before the next fill overwrites it.
pub fn queue_order(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let n = 1000usize;
        let scratch = ok("alloc", device.alloc(4))?;
        let out = ok("alloc", device.alloc(4 * n))?;
        for i in 0..n {
            ok("fill", q.fill(&scratch.whole(), &(i as u32).to_le_bytes()))?;
            ok(
                "copy",
                q.copy(
                    &scratch.whole(),
                    &out.view(4 * i, 4).map_err(|e| e.to_string())?,
                ),
            )?;
        }
        let got = read_all(&*q, &out)?;
        for i in 0..n {
            let v = u32::from_le_bytes(got[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
            check(v == i as u32, || {
                format!("slot {i} holds {v}: commands ran out of order")
            })?;
        }
        Ok(())
    })
}

/// A queue waits on an event of another queue, recorded before the signalling work finished;
/// several queues wait on the same event.
pub fn events_across_queues(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let producer = ok("create_queue", device.create_queue())?;
        let big = 32 << 20;
        let large = ok("alloc", device.alloc(big))?;
        let marker = ok("alloc", device.alloc(4))?;
        // Keep the producer busy, then set the marker.
        for i in 0..8u8 {
            ok("fill", producer.fill(&large.whole(), &[i]))?;
        }
        ok(
            "fill marker",
            producer.fill(&marker.whole(), &0xC0FFEEu32.to_le_bytes()),
        )?;
        let event = ok("record_event", producer.record_event())?;
        let mut outs = Vec::new();
        for _ in 0..3 {
            let consumer = ok("create_queue", device.create_queue())?;
            let out = ok("alloc", device.alloc(4))?;
            ok("wait_event", consumer.wait_event(&event))?;
            ok("copy", consumer.copy(&marker.whole(), &out.whole()))?;
            outs.push((consumer, out));
        }
        for (consumer, out) in &outs {
            let got = read_all(&**consumer, out)?;
            check(got == 0xC0FFEEu32.to_le_bytes(), || {
                format!("consumer read {got:?} before the producer's event")
            })?;
        }
        ok("event wait", event.wait())?;
        check(event.is_done(), || "event not done after wait".into())?;
        let mut tail = [0u8; 4];
        ok(
            "read",
            producer.read(
                &large.view(big - 4, 4).map_err(|e| e.to_string())?,
                &mut tail,
            ),
        )?;
        check(tail == [7; 4], || {
            format!("producer's fills did not all run: tail is {tail:?}")
        })
    })
}

/// The sticky-failure rule of [`Queue`], on every backend: a command that fails asynchronously
/// (here, waiting on failed work) makes its error come back, unchanged, at the next `read` or
/// `finish` and from an event recorded after it and before that report; once reported, the
/// queue runs again and reports nothing more.
pub fn sticky_failures(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let failed: Arc<dyn crate::Event> = Arc::new(crate::FailedEvent::new(
            crate::Error::launch_failed("the awaited work failed (injected)"),
        ));
        for report in ["finish", "read"] {
            let q = ok("create_queue", device.create_queue())?;
            let b = ok("alloc", device.alloc(4))?;
            ok("write", q.write(&b.whole(), &[1, 2, 3, 4]))?;
            ok("wait_event", q.wait_event(&failed))?;
            // Submitting after a failure is not an error: the command is skipped or runs.
            ok(
                "write after the failure",
                q.write(&b.whole(), &[5, 6, 7, 8]),
            )?;
            let after = ok("record_event", q.record_event())?;
            let mut out = [0u8; 4];
            let first = match report {
                "finish" => q.finish(),
                _ => q.read(&b.whole(), &mut out),
            };
            let e = first
                .err()
                .ok_or_else(|| format!("{report} after a failed wait reported success"))?;
            check(e.message().contains("(injected)"), || {
                format!("{report} reported `{e}`, not the failure of the awaited work")
            })?;
            let e = after.wait().err().ok_or_else(|| {
                "an event recorded after the failure (before its report) waited without error"
                    .to_string()
            })?;
            check(e.message().contains("(injected)"), || {
                format!("the event recorded after the failure reported `{e}`")
            })?;
            // Reported: the queue runs again.
            ok("finish after the report", q.finish())?;
            ok("write after the report", q.write(&b.whole(), &[9, 9, 9, 9]))?;
            let got = read_all(&*q, &b)?;
            check(got == [9; 4], || {
                format!("after the report, a write did not run: read {got:?}")
            })?;
            let later = ok("record_event after the report", q.record_event())?;
            ok("wait on an event after the report", later.wait())?;
        }
        Ok(())
    })
}

/// Events measure elapsed time, in order.
pub fn event_timing(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let q = ok("create_queue", device.create_queue())?;
        let b = ok("alloc", device.alloc(8 << 20))?;
        let start = ok("record_event", q.record_event())?;
        ok("fill", q.fill(&b.whole(), &[1]))?;
        let end = ok("record_event", q.record_event())?;
        ok("wait", end.wait())?;
        check(start.is_done(), || {
            "an earlier event is not done after a later one".into()
        })?;
        let dt = ok("elapsed_since", end.elapsed_since(&*start))?;
        check(dt.as_secs() < 60, || {
            format!("elapsed {dt:?} is implausible")
        })
    })
}

/// 8 threads submit to their own queues and to one shared queue at once.
pub fn threads(device: &Arc<dyn Device>) -> Result<(), String> {
    no_leaks(device, || {
        let shared = ok("create_queue", device.create_queue())?;
        let shared_buf = ok("alloc", device.alloc(8 * 4096))?;
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8usize)
                .map(|t| {
                    let shared = shared.clone();
                    let shared_buf = shared_buf.clone();
                    let device = device.clone();
                    s.spawn(move || -> Result<(), String> {
                        let own = ok("create_queue", device.create_queue())?;
                        let b = ok("alloc", device.alloc(4096))?;
                        for round in 0..20u8 {
                            let data = pattern(4096, t as u8 ^ round);
                            ok("write", own.write(&b.whole(), &data))?;
                            check(read_all(&*own, &b)? == data, || {
                                format!("thread {t} round {round}: own queue read differs")
                            })?;
                            let region =
                                shared_buf.view(t * 4096, 4096).map_err(|e| e.to_string())?;
                            ok("shared write", shared.write(&region, &data))?;
                            let mut back = vec![0u8; 4096];
                            ok("shared read", shared.read(&region, &mut back))?;
                            check(back == data, || {
                                format!("thread {t} round {round}: shared queue read differs")
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>, String>>()?;
        ok("finish", shared.finish())
    })
}

/// Host data and references for the tests of transfers and collectives.
pub mod collective {
    use crate::{bf16, f16, DType, ReduceOp};

    /// `values` as the device bytes of `dtype` (each value rounded once to it).
    pub fn encode(dtype: DType, values: &[f64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * dtype.size_in_bytes());
        for &v in values {
            match dtype {
                DType::F32 => out.extend((v as f32).to_le_bytes()),
                DType::F64 => out.extend(v.to_le_bytes()),
                DType::F16 => out.extend(f16::from_f64(v).to_le_bytes()),
                DType::BF16 => out.extend(bf16::from_f64(v).to_le_bytes()),
                DType::I32 => out.extend((v as i32).to_le_bytes()),
                DType::I64 => out.extend((v as i64).to_le_bytes()),
                DType::U8 | DType::Bool => out.push(v as u8),
                DType::I8 => out.push(v as i8 as u8),
            }
        }
        out
    }

    /// A contiguous tensor of `dtype` on `q`'s device holding `values` (as [`encode`]).
    pub fn tensor(
        q: &dyn crate::Queue,
        dtype: DType,
        shape: &[usize],
        values: &[f64],
    ) -> crate::Result<crate::Tensor> {
        let t = crate::Tensor::empty(&*q.device(), dtype, shape)?;
        q.write(t.view(), &encode(dtype, values))?;
        Ok(t)
    }

    /// `n` small integers in -8..=8, exact in every signed dtype, different per `seed`.
    pub fn pattern(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 17) as f64 - 8.0)
            .collect()
    }

    /// The reduction of `ranks` (one list of values per rank), element by element, in f64.
    pub fn reference(op: ReduceOp, ranks: &[Vec<f64>]) -> Vec<f64> {
        (0..ranks[0].len())
            .map(|i| {
                let column = ranks.iter().map(|r| r[i]);
                match op {
                    ReduceOp::Sum => column.sum(),
                    ReduceOp::Mean => column.sum::<f64>() / ranks.len() as f64,
                    ReduceOp::Max => column.fold(f64::MIN, f64::max),
                    ReduceOp::Min => column.fold(f64::MAX, f64::min),
                }
            })
            .collect()
    }
}
