//! f32 convolution as a direct kernel (AVX-512) over a zero-padded copy of the input, without an
//! im2col matrix.
//!
//! The input of each image and group is copied once into a padded frame, split into
//! `stride_h x stride_w` phase planes (`phase[ci][ry][rx][Y][X] = padded[Y sh + ry][X sw + rx]`).
//! Output position (oy, ox) is frame position `p = oy W2 + ox` (W2 the phase planes' width), and
//! tap `k = (ci, ky, kx)` of every position lies at `p + off[k]` in the phase planes, so one tap
//! of 48 consecutive positions is three plain vector loads. The frame's columns beyond the output
//! width are computed and dropped. The microkernel keeps an 8-channel x 48-position block of the
//! output in 24 registers and accumulates over the taps in f32 with fused multiply-adds, in tap
//! order; the taps are walked in chunks of [`KC`] (the block is stored and reloaded between
//! chunks), so every output element is one f32 sum over its taps in order.
//!
//! The same kernel computes the input gradient of a stride-1 convolution (and a stride-1
//! transposed convolution): a convolution of the output gradient with the flipped, transposed
//! weights.

use anyaccel_hal::{Error, ErrorCode, Result};

use super::layout::{par_ranges, threads, TView};

/// Output channels per microkernel block.
const OB: usize = 8;
/// Frame positions per microkernel block (three 16-lane vectors).
const PB: usize = 48;
/// Taps per chunk: the block's inputs (`KC` rows of `PB` floats, 24 KiB) stay in the L1 cache
/// while the block's output channels are walked.
const KC: usize = 128;
/// Output-channel blocks whose weights of a chunk of taps (`KC x OBT x OB` floats, 32 KiB) stay
/// in the L1 cache while the task's blocks of positions are walked.
const OBT: usize = 8;
/// Output channels per group from which the direct kernels run; below, their channel blocks
/// are mostly padding and the caller's im2col with `gemm` serves better.
const MIN_CHANNELS: usize = 4;
/// Scratch kept for the next call on a thread, at most (floats).
const KEEP: usize = 1 << 24;

/// One convolution for the direct kernel, per image and group: `og` output channels from `cs`
/// source channels of `src` spatial size, stride, dilation and top/left padding (the bottom and
/// right are padded as far as the output needs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub n: usize,
    pub groups: usize,
    pub cs: usize,
    pub og: usize,
    pub src: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad: [usize; 2],
    pub out: [usize; 2],
}

/// Where the result goes: output element `(n, grp og + o, oy, ox)` of `view` through the 4-D
/// strides `strides`, plus `bias(grp, o)`; an element that comes out non-finite is replaced by
/// `exact(n, grp, o, oy, ox)` (the contract's sum, which skips the padding taps a product may
/// have met an infinity with).
pub(super) struct Sink<'a> {
    pub view: &'a TView<'a>,
    pub strides: [usize; 4],
    pub bias: Option<&'a (dyn Fn(usize, usize) -> f32 + Sync)>,
    pub exact: &'a (dyn Fn(usize, usize, usize, usize, usize) -> f64 + Sync),
}

/// Whether this machine runs the direct kernel.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The sizes the kernel derives from a plan, each product checked.
struct Frame {
    /// Phase planes' height and width.
    h2: usize,
    w2: usize,
    /// Floats of one image-and-group's phase planes, with the slack the last rows read (0 when
    /// the source is read in place).
    job_len: usize,
    /// Taps and their offsets in the phase planes (or in the source, read in place).
    offs: Vec<usize>,
    /// Frame positions (`oh w2`), their blocks of `PB`, and output-channel blocks.
    positions: usize,
    blocks: usize,
    obs: usize,
    /// The source's planes are the frame (a 1x1 convolution with stride 1 and no padding over
    /// flat planes): no copy.
    in_place: bool,
}

impl Frame {
    fn of(p: &Plan, ss: Option<[usize; 4]>) -> Option<Frame> {
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.stride;
        let [dh, dw] = p.dilation;
        let [oh, ow] = p.out;
        let [ih, iw] = p.src;
        if sh == 0 || sw == 0 || oh == 0 || ow == 0 || kh == 0 || kw == 0 {
            return None;
        }
        // The padded frame the output reads: (o - 1) s + d (k - 1) + 1 in each dimension.
        let hp = (oh - 1)
            .checked_mul(sh)?
            .checked_add(dh.checked_mul(kh - 1)?)?
            .checked_add(1)?;
        let wp = (ow - 1)
            .checked_mul(sw)?
            .checked_add(dw.checked_mul(kw - 1)?)?
            .checked_add(1)?;
        let (h2, mut w2) = (hp.div_ceil(sh), wp.div_ceil(sw));
        if sw == 1 {
            // A row's right padding reads the next row's left padding (zeros as well), while the
            // row still holds every output column.
            let right = wp.saturating_sub(p.pad[1] + iw);
            w2 -= right.min(p.pad[1]).min(wp - ow);
        }
        let in_place = kh == 1
            && kw == 1
            && sh == 1
            && sw == 1
            && p.pad == [0, 0]
            && [oh, ow] == [ih, iw]
            && ss.is_some_and(|ss| ss[3] == 1 && (oh == 1 || ss[2] == iw));
        let plane = h2.checked_mul(w2)?;
        // Every offset below is less than this product.
        let planes = p.cs.checked_mul(sh)?.checked_mul(sw)?.checked_mul(plane)?;
        let taps = p.cs.checked_mul(kh)?.checked_mul(kw)?;
        let positions = oh.checked_mul(w2)?;
        let blocks = positions.div_ceil(PB);
        let mut offs = Vec::with_capacity(taps);
        if in_place {
            for ci in 0..p.cs {
                offs.push(ci.checked_mul(ss.map_or(0, |ss| ss[1]))?);
            }
        } else {
            for ci in 0..p.cs {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (ry, rx) = ((ky * dh) % sh, (kx * dw) % sw);
                        offs.push(
                            ((ci * sh + ry) * sw + rx) * plane + (ky * dh / sh) * w2 + kx * dw / sw,
                        );
                    }
                }
            }
        }
        let reach = offs
            .iter()
            .max()
            .copied()
            .unwrap_or(0)
            .checked_add(blocks.checked_mul(PB)?)?;
        Some(Frame {
            h2,
            w2,
            job_len: if in_place { 0 } else { planes.max(reach) },
            offs,
            positions,
            blocks,
            obs: p.og.div_ceil(OB),
            in_place,
        })
    }
}

/// A pointer that tasks use at disjoint places.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every task writes a region no other task touches (see the uses).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

thread_local! {
    /// Scratch that the last call on this thread left, for the next.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The error for scratch whose size overflows.
fn overflow() -> Error {
    Error::new(
        ErrorCode::OutOfMemory,
        "conv: the direct kernel's scratch size overflows",
    )
}

/// At least `len` floats of scratch (any values), from this thread's last call when large
/// enough; an out-of-memory error when they cannot be allocated.
fn scratch(len: usize) -> Result<Vec<f32>> {
    let mut v = SCRATCH.with(|s| s.take());
    if v.len() < len {
        v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("conv: cannot allocate {len} floats of scratch for the direct kernel"),
            )
        })?;
        v.resize(len, 0.0);
    }
    Ok(v)
}

/// Keeps `v` for the next call on this thread when it is not too large.
fn keep(v: Vec<f32>) {
    if v.len() <= KEEP {
        SCRATCH.with(|s| s.set(v));
    }
}

/// Runs the convolution `p` when the direct kernel applies (returns `Ok(false)` otherwise).
///
/// `src` is read at `(n, grp cs + ci, y, x)` through the 4-D strides `ss`; `w_at(grp, o, ci, ky,
/// kx)` gives the weights.
pub(super) fn run(
    p: &Plan,
    src: &TView,
    ss: [usize; 4],
    w_at: impl Fn(usize, usize, usize, usize, usize) -> f32 + Sync,
    sink: &Sink,
) -> Result<bool> {
    if !available() || p.cs == 0 || p.og < MIN_CHANNELS || p.n == 0 {
        return Ok(false);
    }
    let Some(fr) = Frame::of(p, Some(ss)) else {
        return Ok(false);
    };
    if channel_vec(p, &fr) {
        run_cv(p, &fr, src, ss, &w_at, sink)?;
        return Ok(true);
    }
    let jobs = p.n * p.groups;
    let taps = fr.offs.len();
    let [oh, ow] = p.out;
    let os = sink.strides;
    // Blocks go straight to the output when its rows are the frame's.
    let direct = fr.w2 == ow && os[3] == 1 && (oh == 1 || os[2] == ow);
    let cols = fr.blocks * PB;
    // With an image and group for every task, each task fills its planes and computes on them
    // while they are in the cache.
    let fused = !fr.in_place && jobs >= 2 * threads();
    let phase_len = if fused {
        0
    } else {
        jobs.checked_mul(fr.job_len).ok_or_else(overflow)?
    };
    let tmp_len = if direct || fused {
        0
    } else {
        jobs.checked_mul(fr.obs * OB)
            .and_then(|v| v.checked_mul(cols))
            .ok_or_else(overflow)?
    };
    let wp_len = p
        .groups
        .checked_mul(fr.obs * OB)
        .and_then(|v| v.checked_mul(taps + 1))
        .ok_or_else(overflow)?;
    let mut buf = scratch(
        phase_len
            .checked_add(tmp_len)
            .and_then(|v| v.checked_add(wp_len))
            .ok_or_else(overflow)?,
    )?;
    let (phase, rest) = buf.split_at_mut(phase_len);
    let (tmp, wp) = rest.split_at_mut(tmp_len);

    // The weights of group grp, block ob as [taps][OB] (zeros past og), then the block's bias.
    let wp = &mut wp[..wp_len];
    pack_panels(p, OB, fr.obs, &w_at, Some(sink.bias), wp)?;

    let at = |n: usize, ch: usize, oy: usize| {
        sink.view.desc.offset + n * os[0] + ch * os[1] + oy * os[2]
    };
    // Output channel o of image-and-group job out of its frame row `frame`, or, for blocks
    // written in place (`direct`), its non-finite elements replaced.
    let rows_out = |job: usize, o: usize, frame: &[f32]| {
        let (n, grp) = (job / p.groups, job % p.groups);
        for oy in 0..oh {
            let base = at(n, grp * p.og + o, oy);
            let exact = |ox: usize| (sink.exact)(n, grp, o, oy, ox);
            if direct {
                fix_row(sink.view, base, ow, exact);
            } else {
                put_row(
                    sink.view,
                    base,
                    os[3],
                    &frame[oy * fr.w2..oy * fr.w2 + ow],
                    exact,
                );
            }
        }
    };
    // The blocks of positions `blks` of image-and-group `job`, its planes at `x0` and its rows
    // of the frame (when the output's rows are not the frame's) at `tmp_job`.
    let tmp_ptr = Shared(tmp.as_mut_ptr());
    let wp = &*wp;
    let nonfinite = std::sync::atomic::AtomicBool::new(false);
    let blocks = |job: usize, blks: std::ops::Range<usize>, x0: *const f32, tmp_job: Shared| {
        let (n, grp) = (job / p.groups, job % p.groups);
        for k0 in (0..taps).step_by(KC) {
            let k1 = (k0 + KC).min(taps);
            for ob0 in (0..fr.obs).step_by(OBT) {
                for blk in blks.clone() {
                    let width = (fr.positions - blk * PB).min(PB);
                    for ob in ob0..(ob0 + OBT).min(fr.obs) {
                        let rows = (p.og - ob * OB).min(OB);
                        let w = wp[((grp * fr.obs + ob) * (taps + 1) + k0) * OB..].as_ptr();
                        let bias = (k1 == taps)
                            .then(|| wp[((grp * fr.obs + ob) * (taps + 1) + taps) * OB..].as_ptr());
                        let (out, ld) = if direct {
                            let at = sink.view.desc.offset
                                + n * os[0]
                                + (grp * p.og + ob * OB) * os[1]
                                + blk * PB;
                            (sink.view.ptr::<f32>(at), os[1])
                        } else {
                            // SAFETY: inside the job's rows of `tmp` (obs OB rows of `cols`).
                            (unsafe { tmp_job.0.add(ob * OB * cols + blk * PB) }, cols)
                        };
                        // SAFETY: the taps read x0 + off + blk PB + 0..width, inside the job's
                        // planes and slack (`Frame::job_len`) or, in place, inside the source's
                        // planes (width stops at the plane's end); w holds (k1 - k0) x OB
                        // floats and bias OB; the block written is (job, ob, blk)'s, this
                        // task's alone: `rows` rows `ld` apart of `width` floats, inside the
                        // output (its rows are the frame's) or `tmp`.
                        let bad = unsafe {
                            block(
                                x0.add(blk * PB),
                                &fr.offs[k0..k1],
                                w,
                                out,
                                ld,
                                Tile {
                                    width,
                                    rows,
                                    first: k0 == 0,
                                    bias,
                                },
                            )
                        };
                        if bad && direct {
                            nonfinite.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    };
    if fused {
        // An image and group a task: its planes filled into the task's scratch and read back
        // from the cache.
        let rows_len = if direct { 0 } else { fr.obs * OB * cols };
        par_ranges(jobs, 1, |range| {
            let mut local = scratch(fr.job_len + rows_len)?;
            let (planes, rows) = local.split_at_mut(fr.job_len);
            for job in range {
                fill_phases(p, &fr, src, ss, job, planes);
                blocks(
                    job,
                    0..fr.blocks,
                    planes.as_ptr(),
                    Shared(rows.as_mut_ptr()),
                );
                if !direct {
                    // The job's rows, out of the frame while they are in the cache.
                    for o in 0..p.og {
                        rows_out(job, o, &rows[o * cols..]);
                    }
                }
            }
            keep(local);
            Ok(())
        })?;
    } else {
        if !fr.in_place {
            fill_all(p, &fr, src, ss, phase)?;
        }
        // Blocks of positions in parallel over (job, block) ranges.
        let per_block = PB * taps * fr.obs * OB;
        let grain = ((1usize << 18) / per_block.max(1)).max(1);
        let phase = &*phase;
        par_ranges(jobs * fr.blocks, grain, |range| {
            let mut at = range.start;
            while at < range.end {
                let job = at / fr.blocks;
                let end = range.end.min((job + 1) * fr.blocks);
                let (n, grp) = (job / p.groups, job % p.groups);
                let x0 = if fr.in_place {
                    src.ptr::<f32>(src.desc.offset + n * ss[0] + grp * p.cs * ss[1]) as *const f32
                } else {
                    phase[job * fr.job_len..].as_ptr()
                };
                // SAFETY: the job's rows lie inside `tmp` (jobs x obs OB rows of `cols`).
                let tmp_job = Shared(unsafe { { tmp_ptr }.0.add(job * fr.obs * OB * cols) });
                blocks(job, at % fr.blocks..(end - 1) % fr.blocks + 1, x0, tmp_job);
                at = end;
            }
            Ok(())
        })?;
    }

    // The rows, out of the frame, or the non-finite elements of the output fixed.
    if (!direct && !fused) || nonfinite.into_inner() {
        let tmp = &*tmp;
        par_ranges(jobs * p.og, (1 << 14) / (oh * ow).max(1) + 1, |range| {
            for jo in range {
                let (job, o) = (jo / p.og, jo % p.og);
                let frame = if direct {
                    &[][..]
                } else {
                    &tmp[(job * fr.obs * OB + o) * cols..]
                };
                rows_out(job, o, frame);
            }
            Ok(())
        })?;
    }
    keep(buf);
    Ok(true)
}

/// Packs the weights of every group and block of `width` output channels (`blocks` a group)
/// into `wp`, panel `grp blocks + ob` as `[taps][width]` (zeros past the group's `og`
/// channels), followed by the block's bias row (zeros without a bias) when `bias` is given.
fn pack_panels(
    p: &Plan,
    width: usize,
    blocks: usize,
    w_at: &(impl Fn(usize, usize, usize, usize, usize) -> f32 + Sync),
    bias: Option<Option<&(dyn Fn(usize, usize) -> f32 + Sync)>>,
    wp: &mut [f32],
) -> Result<()> {
    let [kh, kw] = p.kernel;
    let taps = p.cs * kh * kw;
    let panel_len = (taps + bias.is_some() as usize) * width;
    let wp_ptr = Shared(wp.as_mut_ptr());
    par_ranges(p.groups * blocks, 1, |range| {
        for gob in range {
            let (grp, ob) = (gob / blocks, gob % blocks);
            // SAFETY: panel gob of `wp` (which holds groups x blocks panels) is this task's
            // alone.
            let panel = unsafe {
                std::slice::from_raw_parts_mut({ wp_ptr }.0.add(gob * panel_len), panel_len)
            };
            panel.fill(0.0);
            let rows = (p.og - ob * width).min(width);
            let mut taps_of = panel.chunks_exact_mut(width);
            for ci in 0..p.cs {
                for ky in 0..kh {
                    for kx in 0..kw {
                        if let Some(tap) = taps_of.next() {
                            for (j, v) in tap[..rows].iter_mut().enumerate() {
                                *v = w_at(grp, ob * width + j, ci, ky, kx);
                            }
                        }
                    }
                }
            }
            if let Some(Some(b)) = bias {
                for j in 0..rows {
                    panel[taps * width + j] = b(grp, ob * width + j);
                }
            }
        }
        Ok(())
    })
}

/// Output channels per block of the channel-vector kernel ([`cv_block`]): two 16-lane vectors.
const CO: usize = 32;
/// Most positions of an output row per call of [`cv_block`] (`2 CR` accumulators).
const CR: usize = 14;
/// Sums of a band of output rows that the channel-vector kernel keeps between chunks of taps,
/// at most (floats; 64 KiB), unless one row holds more.
const BAND: usize = 1 << 14;

/// Whether the channel-vector kernel runs `p`: the group's output channels come in whole
/// blocks of [`CO`] and the source is copied into phase planes. It computes no lane past the
/// output, where the blocks of [`PB`] frame positions compute the frame's extra columns and the
/// last block's tail (28 of 224 lanes for a 14x14 plane), and measured at least as fast as
/// those on ResNet-50's 3x3 layers at 56x56 and 28x28 (stride 2) as well (`anyaccel bench --op
/// conv2d`).
fn channel_vec(p: &Plan, fr: &Frame) -> bool {
    !fr.in_place && p.og >= CO && p.og.is_multiple_of(CO)
}

/// The convolution `p` by the channel-vector kernel: per image and group, its phase planes
/// (as for the blocks of positions), then for each block of [`CO`] output channels and band of
/// output rows the sums of every position (row by row, chunks of at most [`CR`] positions) over
/// the taps in order, in f32 with fused multiply-adds, kept in `[positions][CO]` scratch
/// between chunks of [`KC`] taps, then written out with the bias. Every output element is the
/// same f32 sum, in the same order, as the blocks of positions give it.
fn run_cv(
    p: &Plan,
    fr: &Frame,
    src: &TView,
    ss: [usize; 4],
    w_at: &(impl Fn(usize, usize, usize, usize, usize) -> f32 + Sync),
    sink: &Sink,
) -> Result<()> {
    let jobs = p.n * p.groups;
    let taps = fr.offs.len();
    let [oh, ow] = p.out;
    let os = sink.strides;
    let ocbs = p.og / CO;
    // Rows a band; ow <= the frame's positions, a checked product.
    let band = (BAND / ow.saturating_mul(CO)).clamp(1, oh);
    let acc_len = (band * ow).checked_mul(CO).ok_or_else(overflow)?;
    let panel = taps.checked_mul(CO).ok_or_else(overflow)?;
    let wp_len = (p.groups * ocbs).checked_mul(panel).ok_or_else(overflow)?;
    let fused = jobs >= 2 * threads();
    let phase_len = if fused {
        0
    } else {
        jobs.checked_mul(fr.job_len).ok_or_else(overflow)?
    };
    let mut buf = scratch(phase_len.checked_add(wp_len).ok_or_else(overflow)?)?;
    let (phase, wp) = buf.split_at_mut(phase_len);
    let wp = &mut wp[..wp_len];

    // The weights of group grp, block ob as [taps][CO].
    pack_panels(p, CO, ocbs, w_at, None, wp)?;
    if !fused {
        fill_all(p, fr, src, ss, phase)?;
    }
    let wp = &*wp;
    let chunks = ow.div_ceil(CR);
    // Block ob of image-and-group job, its planes at x0: the sums of each band of rows in
    // `acc`, then the output.
    let pair = |job: usize, ob: usize, x0: *const f32, acc: &mut [f32]| {
        let (n, grp) = (job / p.groups, job % p.groups);
        let w0 = wp[(grp * ocbs + ob) * panel..].as_ptr();
        for y0 in (0..oh).step_by(band) {
            let y1 = (y0 + band).min(oh);
            for k0 in (0..taps).step_by(KC) {
                let k1 = (k0 + KC).min(taps);
                for oy in y0..y1 {
                    let mut ox = 0;
                    for c in 0..chunks {
                        let r = (ow - ox).div_ceil(chunks - c);
                        // SAFETY: the taps read x0 + off + oy w2 + ox + 0..r, below the
                        // frame's positions plus the largest offset, inside the job's planes
                        // and slack (`Frame::job_len`); w0 + k0 CO holds (k1 - k0) CO floats;
                        // the sums of the band's positions (oy - y0) ow + ox + 0..r are r CO
                        // floats inside `acc`, this task's.
                        unsafe {
                            cv_call(
                                r,
                                x0.add(oy * fr.w2 + ox),
                                &fr.offs[k0..k1],
                                w0.add(k0 * CO),
                                acc[((oy - y0) * ow + ox) * CO..].as_mut_ptr(),
                                k0 == 0,
                            )
                        };
                        ox += r;
                    }
                }
            }
            for j in 0..CO {
                let o = ob * CO + j;
                let bias = sink.bias.map(|b| b(grp, o));
                for oy in y0..y1 {
                    let base =
                        sink.view.desc.offset + n * os[0] + (grp * p.og + o) * os[1] + oy * os[2];
                    for ox in 0..ow {
                        let s = acc[((oy - y0) * ow + ox) * CO + j];
                        let v = bias.map_or(s, |b| s + b);
                        let v = if v.is_finite() {
                            v
                        } else {
                            (sink.exact)(n, grp, o, oy, ox) as f32
                        };
                        // SAFETY: (n, grp og + o, oy, ox) lies inside the output's shape;
                        // block (job, ob)'s channels are this task's alone.
                        unsafe { sink.view.set(base + ox * os[3], v) };
                    }
                }
            }
        }
    };
    if fused {
        // An image and group a task: its planes filled into the task's scratch and read back
        // from the cache by every block of channels.
        let local_len = fr.job_len.checked_add(acc_len).ok_or_else(overflow)?;
        par_ranges(jobs, 1, |range| {
            let mut local = scratch(local_len)?;
            let (planes, acc) = local.split_at_mut(fr.job_len);
            for job in range {
                fill_phases(p, fr, src, ss, job, planes);
                for ob in 0..ocbs {
                    pair(job, ob, planes.as_ptr(), &mut acc[..acc_len]);
                }
            }
            keep(local);
            Ok(())
        })?;
    } else {
        let phase = &*phase;
        par_ranges(jobs * ocbs, 1, |range| {
            let mut acc = scratch(acc_len)?;
            for t in range {
                let (job, ob) = (t / ocbs, t % ocbs);
                pair(
                    job,
                    ob,
                    phase[job * fr.job_len..].as_ptr(),
                    &mut acc[..acc_len],
                );
            }
            keep(acc);
            Ok(())
        })?;
    }
    keep(buf);
    Ok(())
}

/// [`cv_block`] for `r` (1..=[`CR`]) positions.
///
/// # Safety
/// As [`cv_block`].
#[cfg(target_arch = "x86_64")]
unsafe fn cv_call(
    r: usize,
    x: *const f32,
    offs: &[usize],
    w: *const f32,
    acc: *mut f32,
    first: bool,
) {
    macro_rules! arms {
        ($($n:literal)*) => {
            match r {
                $($n => unsafe { cv_block::<$n>(x, offs, w, acc, first) },)*
                _ => unreachable!("a chunk has 1 to CR positions"),
            }
        };
    }
    arms!(1 2 3 4 5 6 7 8 9 10 11 12 13 14)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn cv_call(_: usize, _: *const f32, _: &[usize], _: *const f32, _: *mut f32, _: bool) {
    unreachable!("the direct convolution runs only where `available` says so")
}

/// `R` consecutive frame positions x [`CO`] output channels: `acc[i CO + j] (+)= sum over the
/// taps of x[off + i] w[tap CO + j]`, in tap order, from zero when `first` (else from `acc`).
///
/// # Safety
/// `x + off + 0..R` must be readable for every `off`, `w` must hold `offs.len() x CO` floats,
/// `acc` `R x CO` floats (writable, and readable unless `first`), and the machine must have
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn cv_block<const R: usize>(
    x: *const f32,
    offs: &[usize],
    w: *const f32,
    acc: *mut f32,
    first: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract: every access below stays inside the regions it names,
    // and AVX-512F is present.
    unsafe {
        let mut a = [[_mm512_setzero_ps(); 2]; R];
        if !first {
            for (i, v) in a.iter_mut().enumerate() {
                v[0] = _mm512_loadu_ps(acc.add(i * CO));
                v[1] = _mm512_loadu_ps(acc.add(i * CO + 16));
            }
        }
        let mut w = w;
        for &off in offs {
            let p = x.add(off);
            let (w0, w1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
            for (i, v) in a.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*p.add(i));
                v[0] = _mm512_fmadd_ps(w0, b, v[0]);
                v[1] = _mm512_fmadd_ps(w1, b, v[1]);
            }
            w = w.add(CO);
        }
        for (i, v) in a.iter().enumerate() {
            _mm512_storeu_ps(acc.add(i * CO), v[0]);
            _mm512_storeu_ps(acc.add(i * CO + 16), v[1]);
        }
    }
}

/// Writes `row` at element offset `base + i step` of `out`; an element that is non-finite is
/// `exact(i)` instead.
fn put_row(out: &TView, base: usize, step: usize, row: &[f32], exact: impl Fn(usize) -> f64) {
    let mut bad = false;
    if step == 1 {
        // SAFETY: the caller passes a row of the output's shape: `row.len()` elements from
        // `base` with stride 1, written by this task alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr::<f32>(base), row.len()) };
        for (d, &v) in dst.iter_mut().zip(row) {
            bad |= !v.is_finite();
            *d = v;
        }
    } else {
        for (i, &v) in row.iter().enumerate() {
            bad |= !v.is_finite();
            // SAFETY: as above, with stride `step`.
            unsafe { out.set(base + i * step, v) };
        }
    }
    if bad {
        for (i, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                // SAFETY: as above.
                unsafe { out.set(base + i * step, exact(i) as f32) };
            }
        }
    }
}

/// Replaces the non-finite elements of the output row of `len` floats at `base` (stride 1) by
/// `exact(i)`.
fn fix_row(out: &TView, base: usize, len: usize, exact: impl Fn(usize) -> f64) {
    for i in 0..len {
        // SAFETY: the caller passes a row of the output's shape, this task's alone.
        unsafe {
            if !out.get::<f32>(base + i).is_finite() {
                out.set(base + i, exact(i) as f32);
            }
        }
    }
}

/// Fills the phase planes of every image and group (`phase`: jobs x `fr.job_len` floats).
fn fill_all(p: &Plan, fr: &Frame, src: &TView, ss: [usize; 4], phase: &mut [f32]) -> Result<()> {
    let ph_ptr = Shared(phase.as_mut_ptr());
    par_ranges(p.n * p.groups, 1, |range| {
        for job in range {
            // SAFETY: job's region of `phase` is this task's alone.
            let dst = unsafe {
                std::slice::from_raw_parts_mut({ ph_ptr }.0.add(job * fr.job_len), fr.job_len)
            };
            fill_phases(p, fr, src, ss, job, dst);
        }
        Ok(())
    })
}

/// Taps and output channels per block of the weight gradient.
const WT: usize = 5;
const WO: usize = 3;
/// Positions of an image per call of the weight-gradient block.
const RUN: usize = 1024;
/// Positions (of one or more images) whose products the f32 lanes sum before they are added
/// to the f64 sums: at most `FLUSH / 16 + RUN / 16` products a lane.
const FLUSH: usize = 4096;

/// The weight gradient of the convolution `p` when the direct kernel applies (`Ok(false)`
/// otherwise): `dw[grp og + o, ci, ky, kx] = sum_n sum_(oy, ox) dy[n, grp og + o, oy, ox]
/// x[n, grp cs + ci, oy sh + ky dh - ph, ox sw + kx dw - pw]`, with `x` read through its
/// phase planes, the products summed in 16 f32 lanes over about [`FLUSH`] positions (of one
/// or more images) at a time and the lanes added in f64, in a fixed order. `x` is read through
/// `xs`, `dy` through `dys`, the result (weight-shaped) written through `os`; an element that
/// comes out non-finite is `exact(oc, ci, ky, kx)` instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_filter(
    p: &Plan,
    x: &TView,
    xs: [usize; 4],
    dy: &TView,
    dys: [usize; 4],
    out: &TView,
    os: [usize; 4],
    exact: impl Fn(usize, usize, usize, usize) -> f64 + Sync,
) -> Result<bool> {
    if !available() || p.cs == 0 || p.og < MIN_CHANNELS || p.n == 0 {
        return Ok(false);
    }
    let Some(fr) = Frame::of(p, None) else {
        return Ok(false);
    };
    let jobs = p.n * p.groups;
    let taps = fr.offs.len();
    let [oh, ow] = p.out;
    let [kh, kw] = p.kernel;
    // dy in the frame: per job, rows of `len` floats (zeros past the output's columns and
    // positions), og rounded up to WO rows.
    let len = fr.positions.div_ceil(16) * 16;
    let ogr = p.og.div_ceil(WO) * WO;
    let phase_len = jobs.checked_mul(fr.job_len).ok_or_else(overflow)?;
    let dyf_len = jobs
        .checked_mul(ogr)
        .and_then(|v| v.checked_mul(len))
        .ok_or_else(overflow)?;
    let mut buf = scratch(phase_len.checked_add(dyf_len).ok_or_else(overflow)?)?;
    let (phase, dyf) = buf.split_at_mut(phase_len);
    fill_all(p, &fr, x, xs, phase)?;
    let dyf = &mut dyf[..dyf_len];
    let dy_ptr = Shared(dyf.as_mut_ptr());
    par_ranges(jobs, 1, |range| {
        for job in range {
            let (n, grp) = (job / p.groups, job % p.groups);
            // SAFETY: job's rows of `dyf` are this task's alone.
            let rows = unsafe {
                std::slice::from_raw_parts_mut({ dy_ptr }.0.add(job * ogr * len), ogr * len)
            };
            // Zeros past the output's columns and positions, and in the rows past og.
            for o in 0..ogr {
                let r = &mut rows[o * len..(o + 1) * len];
                if o >= p.og {
                    r.fill(0.0);
                    continue;
                }
                r[oh * fr.w2..].fill(0.0);
                for oy in 0..oh {
                    r[oy * fr.w2 + ow..(oy + 1) * fr.w2].fill(0.0);
                }
            }
            for o in 0..p.og {
                let cb = dy.desc.offset + n * dys[0] + (grp * p.og + o) * dys[1];
                for oy in 0..oh {
                    let row = &mut rows[o * len + oy * fr.w2..][..ow];
                    // SAFETY: row oy of channel grp og + o lies inside dy's shape.
                    unsafe { gather_row(dy, cb + oy * dys[2], dys[3], row) };
                }
            }
        }
        Ok(())
    })?;

    // Blocks of WT taps x WO channels, in parallel; each sums over every image and position.
    let (tbs, obs) = (taps.div_ceil(WT), ogr / WO);
    let (phase, dyf) = (&*phase, &*dyf);
    let tiles = p.groups * obs * tbs;
    par_ranges(tiles, 1, |range| {
        let mut sums = vec![[0f64; WT * WO]; range.len()];
        let mut lanes = vec![[[0f32; 16]; WT * WO]; range.len()];
        // Positions summed in the lanes since they were last added to `sums`.
        let mut pending = 0;
        for n in 0..p.n {
            for r0 in (0..len).step_by(RUN) {
                let run = (len - r0).min(RUN);
                pending += run;
                let flush = pending >= FLUSH || (n + 1 == p.n && r0 + run == len);
                for ((tile, sum), lane) in range.clone().zip(sums.iter_mut()).zip(lanes.iter_mut())
                {
                    let (grp, ob, tb) = (tile / (obs * tbs), (tile / tbs) % obs, tile % tbs);
                    let job = n * p.groups + grp;
                    let toffs: [usize; WT] =
                        std::array::from_fn(|t| fr.offs[(tb * WT + t).min(taps - 1)]);
                    let x0 = phase[job * fr.job_len + r0..].as_ptr();
                    let d0 = dyf[(job * ogr + ob * WO) * len + r0..].as_ptr();
                    // SAFETY: the taps read x0 + off + 0..run, inside the job's planes and
                    // slack (`Frame::job_len` >= max off + blocks PB >= max off + len); the
                    // WO rows of dy read d0 + j len + 0..run, inside the job's rows.
                    unsafe { wblock(x0, toffs, d0, len, run, lane, flush.then_some(sum)) };
                }
                if flush {
                    pending = 0;
                }
            }
        }
        for (tile, sum) in range.zip(&sums) {
            let (grp, ob, tb) = (tile / (obs * tbs), (tile / tbs) % obs, tile % tbs);
            for t in 0..WT.min(taps - tb * WT) {
                let k = tb * WT + t;
                let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                for j in 0..WO.min(p.og.saturating_sub(ob * WO)) {
                    let oc = grp * p.og + ob * WO + j;
                    let v = sum[t * WO + j] as f32;
                    let v = if v.is_finite() {
                        v
                    } else {
                        exact(oc, ci, ky, kx) as f32
                    };
                    let at = out.desc.offset + oc * os[0] + ci * os[1] + ky * os[2] + kx * os[3];
                    // SAFETY: (oc, ci, ky, kx) lies inside the weight-shaped output; this
                    // tile's elements are written by this task alone.
                    unsafe { out.set(at, v) };
                }
            }
        }
        Ok(())
    })?;
    keep(buf);
    Ok(true)
}

/// `lanes[j WT + t] += x[toffs[t] + i] dy[j ld + i]` for `i < run`, lane `i % 16`, in f32;
/// with `flush`, the lanes are then added to `flush[t WO + j]` (in a fixed order, in f64) and
/// zeroed.
///
/// # Safety
/// `x + toffs[t] + 0..run` and `dy + j ld + 0..run` (`j < WO`) must be readable, `run` a
/// multiple of 16, and the machine must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wblock(
    x: *const f32,
    toffs: [usize; WT],
    dy: *const f32,
    ld: usize,
    run: usize,
    lanes: &mut [[f32; 16]; WT * WO],
    flush: Option<&mut [f64; WT * WO]>,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract: every load below stays inside the regions it names, and
    // AVX-512F is present.
    unsafe {
        let mut acc: [__m512; WT * WO] =
            std::array::from_fn(|a| _mm512_loadu_ps(lanes[a].as_ptr()));
        let xp: [*const f32; WT] = std::array::from_fn(|t| x.add(toffs[t]));
        let dp: [*const f32; WO] = std::array::from_fn(|j| dy.add(j * ld));
        let mut i = 0;
        while i < run {
            let xs: [__m512; WT] = std::array::from_fn(|t| _mm512_loadu_ps(xp[t].add(i)));
            for j in 0..WO {
                let dv = _mm512_loadu_ps(dp[j].add(i));
                for t in 0..WT {
                    acc[j * WT + t] = _mm512_fmadd_ps(xs[t], dv, acc[j * WT + t]);
                }
            }
            i += 16;
        }
        match flush {
            Some(sum) => {
                for j in 0..WO {
                    for t in 0..WT {
                        sum[t * WO + j] += f64::from(_mm512_reduce_add_ps(acc[j * WT + t]));
                    }
                }
                *lanes = [[0.0; 16]; WT * WO];
            }
            None => {
                for (a, l) in acc.iter().zip(lanes.iter_mut()) {
                    _mm512_storeu_ps(l.as_mut_ptr(), *a);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn wblock(
    _: *const f32,
    _: [usize; WT],
    _: *const f32,
    _: usize,
    _: usize,
    _: &mut [[f32; 16]; WT * WO],
    _: Option<&mut [f64; WT * WO]>,
) {
    unreachable!("the direct convolution runs only where `available` says so")
}

/// Fills the phase planes of one image and group (`fr.job_len` floats, every one written).
fn fill_phases(p: &Plan, fr: &Frame, src: &TView, ss: [usize; 4], job: usize, dst: &mut [f32]) {
    let (n, grp) = (job / p.groups, job % p.groups);
    let [sh, sw] = p.stride;
    let [ih, iw] = p.src;
    let [ph, pw] = p.pad;
    let plane = fr.h2 * fr.w2;
    // The slack past the planes.
    dst[p.cs * sh * sw * plane..].fill(0.0);
    for ci in 0..p.cs {
        let cb = src.desc.offset + n * ss[0] + (grp * p.cs + ci) * ss[1];
        for ry in 0..sh {
            for rx in 0..sw {
                let pb = ((ci * sh + ry) * sw + rx) * plane;
                for y2 in 0..fr.h2 {
                    let row = &mut dst[pb + y2 * fr.w2..pb + (y2 + 1) * fr.w2];
                    // Source row y2 sh + ry - ph.
                    let Some(sy) = (y2 * sh + ry).checked_sub(ph).filter(|&y| y < ih) else {
                        row.fill(0.0);
                        continue;
                    };
                    let rb = cb + sy * ss[2];
                    // Columns X whose source x = X sw + rx - pw lies in 0..iw.
                    let x_lo = pw.saturating_sub(rx).div_ceil(sw).min(fr.w2);
                    let x_hi = (iw + pw).saturating_sub(rx).div_ceil(sw).min(fr.w2);
                    if x_lo >= x_hi {
                        row.fill(0.0);
                        continue;
                    }
                    row[..x_lo].fill(0.0);
                    row[x_hi..].fill(0.0);
                    let sx0 = x_lo * sw + rx - pw;
                    // SAFETY: source columns sx0 + i sw, i < x_hi - x_lo, lie in row sy (below
                    // iw by the choice of x_hi).
                    unsafe { gather_row(src, rb + sx0 * ss[3], sw * ss[3], &mut row[x_lo..x_hi]) };
                }
            }
        }
    }
}

/// `dst[i]` = the element at element offset `at + i step` of `src`: a copy for step 1, AVX-512
/// permutes for step 2.
///
/// # Safety
/// Those `dst.len()` elements must lie inside `src`'s view, and `src` must hold f32.
unsafe fn gather_row(src: &TView, at: usize, step: usize, dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    let done = if step <= 2 {
        // SAFETY: the caller's contract: elements at..at + (n - 1) step + 1 lie in the view.
        let run = unsafe { src.run::<f32>(at, (n - 1) * step + 1) };
        if step == 1 {
            dst.copy_from_slice(run);
            return;
        }
        pick_even(run, dst)
    } else {
        0
    };
    for (i, v) in dst.iter_mut().enumerate().skip(done) {
        // SAFETY: the caller's contract.
        *v = unsafe { src.get::<f32>(at + i * step) };
    }
}

/// `dst[i] = src[2 i]` for every `i < dst.len()` whose source lies in `src` (AVX-512); returns
/// how many were written (0 without AVX-512).
fn pick_even(src: &[f32], dst: &mut [f32]) -> usize {
    let n = dst.len().min(src.len().div_ceil(2));
    if n == 0 || !available() {
        return 0;
    }
    // SAFETY: `src.len()` source and `n` destination floats lie inside the slices, and the
    // kernel reads and writes no further; AVX-512F is present.
    unsafe { pick_even_avx512(src.as_ptr(), src.len(), dst.as_mut_ptr(), n) };
    n
}

/// # Safety
/// `src + 0..len` readable, `dst + 0..n` writable with `2 (n - 1) < len`, AVX-512F present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pick_even_avx512(src: *const f32, len: usize, dst: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    let lanes = |k: usize| ((1u32 << k.min(16)) - 1) as __mmask16;
    // SAFETY: the caller's contract; the loads and stores past the ends are masked off.
    unsafe {
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut i = 0;
        while i < n {
            let left = len - 2 * i;
            let a = _mm512_maskz_loadu_ps(lanes(left), src.add(2 * i));
            let b = _mm512_maskz_loadu_ps(lanes(left.saturating_sub(16)), src.add(2 * i + 16));
            let v = _mm512_permutex2var_ps(a, idx, b);
            _mm512_mask_storeu_ps(dst.add(i), lanes(n - i), v);
            i += 16;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn pick_even_avx512(_: *const f32, _: usize, _: *mut f32, _: usize) {
    unreachable!("runs only where `available` says so")
}

/// What one call of [`block`] covers: `width` (1..=PB) frame positions of `rows` (1..=OB)
/// output channels; the sums start from zero when `first` (else from the output); `bias`
/// (OB floats) is added when this is the last chunk of taps.
struct Tile {
    width: usize,
    rows: usize,
    first: bool,
    bias: Option<*const f32>,
}

/// One block: `OB` output channels x `tile.width` frame positions, accumulating the taps
/// `offs` (rows of `x` at those offsets) times the weights `w` (`[taps][OB]`) into `out` (rows
/// `ld` apart, `tile.rows` of them stored). Returns whether a stored value is non-finite (on the
/// last chunk).
///
/// # Safety
/// `x + off + 0..width` must be readable for every `off`, `w` must hold `offs.len() x OB`
/// floats (and `bias` OB), `out + j ld + 0..width` writable (and readable unless `first`) for
/// `j < rows`, and the machine must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block(
    x: *const f32,
    offs: &[usize],
    w: *const f32,
    out: *mut f32,
    ld: usize,
    t: Tile,
) -> bool {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract: every access below stays inside the regions it names
    // (lanes past `width` masked off), and AVX-512F is present.
    unsafe {
        let lanes = |v: usize| -> __mmask16 {
            let n = t.width.saturating_sub(v * 16).min(16);
            ((1u32 << n) - 1) as __mmask16
        };
        let masks = [lanes(0), lanes(1), lanes(2)];
        let mut acc = [[_mm512_setzero_ps(); 3]; OB];
        if !t.first {
            for (j, row) in acc.iter_mut().enumerate().take(t.rows) {
                for (v, a) in row.iter_mut().enumerate() {
                    *a = _mm512_maskz_loadu_ps(masks[v], out.add(j * ld + v * 16));
                }
            }
        }
        let mut w = w;
        if t.width > 32 {
            for &off in offs {
                let p = x.add(off);
                let xs = [
                    _mm512_loadu_ps(p),
                    _mm512_loadu_ps(p.add(16)),
                    _mm512_maskz_loadu_ps(masks[2], p.add(32)),
                ];
                for (j, row) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*w.add(j));
                    for (a, &xv) in row.iter_mut().zip(&xs) {
                        *a = _mm512_fmadd_ps(b, xv, *a);
                    }
                }
                w = w.add(OB);
            }
        } else {
            for &off in offs {
                let p = x.add(off);
                let xs = [
                    _mm512_maskz_loadu_ps(masks[0], p),
                    _mm512_maskz_loadu_ps(masks[1], p.add(16)),
                ];
                for (j, row) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*w.add(j));
                    for (a, &xv) in row[..2].iter_mut().zip(&xs) {
                        *a = _mm512_fmadd_ps(b, xv, *a);
                    }
                }
                w = w.add(OB);
            }
        }
        let mut bad = 0u16;
        for (j, row) in acc.iter_mut().enumerate().take(t.rows) {
            for (v, a) in row.iter_mut().enumerate() {
                if let Some(bias) = t.bias {
                    *a = _mm512_add_ps(*a, _mm512_set1_ps(*bias.add(j)));
                    // x - x is NaN exactly where x is infinite or NaN.
                    let d = _mm512_sub_ps(*a, *a);
                    bad |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(masks[v], d, d);
                }
                _mm512_mask_storeu_ps(out.add(j * ld + v * 16), masks[v], *a);
            }
        }
        bad != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(_: *const f32, _: &[usize], _: *const f32, _: *mut f32, _: usize, _: Tile) -> bool {
    unreachable!("the direct convolution runs only where `available` says so")
}
