//! `matmul`: a tiled kernel with register blocks, batch broadcasting and transposes through
//! strides, and the bias added in f32 before the one rounding of the result.

use anyaccel_hal::{Device, KernelArg, OpCall, Result, Tensor};

use crate::tune;

use super::elementwise::{input, output};
use super::{base_offset, broadcast_strides, buf, dtype_defs, Ctx, Family, KernelSpec, Layouts};

/// Most work-groups of one launch (tiles beyond are walked by a group-stride loop).
const MAX_GROUPS: usize = 65535;

/// The tile shape: a work-group computes `bm x bn` outputs, each item `tm x tn` of them, over
/// steps of `bk` along K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    /// Rows of a work-group's tile.
    pub bm: u32,
    /// Columns of a work-group's tile.
    pub bn: u32,
    /// Depth of one step along K.
    pub bk: u32,
    /// Rows of a work item's block.
    pub tm: u32,
    /// Columns of a work item's block.
    pub tn: u32,
}

/// The tiles of small products (both sides at most 64): 32 x 32 tiles of 4 x 8 blocks, 32
/// items.
const SMALL: Tiles = Tiles {
    bm: 32,
    bn: 32,
    bk: 32,
    tm: 4,
    tn: 8,
};

impl Tiles {
    /// Work items per group.
    pub fn wg(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    fn params(&self) -> Vec<u32> {
        vec![self.bm, self.bn, self.bk, self.tm, self.tn]
    }

    fn from_params(p: &[u32]) -> Option<Tiles> {
        match *p {
            [bm, bn, bk, tm, tn] => Some(Tiles { bm, bn, bk, tm, tn }),
            _ => None,
        }
    }

    /// True when the tiles fit `device`: whole blocks, a work-group it runs, and local memory
    /// within the 32 KiB that every OpenCL GPU has.
    fn fits(&self, device: &dyn Device) -> bool {
        self.tm > 0
            && self.tn > 0
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && u64::from(self.wg()) <= device.info().max_work_group_size
            && self.bk * (self.bm + self.bn) * 4 <= 32 << 10
    }
}

/// The tile shapes a search times on large products (`bm, bn, bk, tm, tn`), the default first.
/// Blocks of 256 accumulators an item (16 x 16, 8 x 32) are left out: on PoCL they ran at
/// 0.34x-0.52x the default and took the longest to compile.
const CANDIDATES: [[u32; 5]; 12] = [
    [128, 128, 32, 8, 16],
    [128, 128, 16, 8, 16],
    [64, 128, 32, 8, 16],
    [128, 64, 32, 8, 16],
    [64, 64, 32, 4, 16],
    [64, 64, 64, 8, 8],
    [64, 256, 16, 8, 16],
    [128, 128, 32, 4, 16],
    [64, 64, 16, 4, 4],
    [128, 256, 16, 8, 16],
    [256, 128, 16, 8, 16],
    [16, 16, 16, 4, 4],
];

/// The default tiles of large products: the first candidate.
const LARGE: Tiles = {
    let [bm, bn, bk, tm, tn] = CANDIDATES[0];
    Tiles { bm, bn, bk, tm, tn }
};

/// The default tiles of large products: 128 x 128 in steps of 32 along K, each of the 128
/// items computing an 8 x 16 block (16 consecutive columns: one AVX-512 vector on CPU devices
/// such as PoCL's, which run a work-group's items in a loop); 16 x 16 tiles of 4 x 4 blocks (16
/// items) on devices whose work-groups are smaller.
fn default_params(device: &dyn Device) -> Vec<u32> {
    if LARGE.fits(device) {
        LARGE.params()
    } else {
        CANDIDATES[CANDIDATES.len() - 1].to_vec()
    }
}

fn candidates(device: &dyn Device) -> Vec<Vec<u32>> {
    CANDIDATES
        .iter()
        .filter(|p| Tiles::from_params(&p[..]).is_some_and(|t| t.fits(device)))
        .map(|p| p.to_vec())
        .collect()
}

/// The tiled kernel's parameters, tuned per device (see [`crate::tune`]).
pub static TUNABLE: tune::Tunable = tune::Tunable {
    name: "matmul.c",
    params: "bm,bn,bk,tm,tn",
    source: include_str!("../../kernels/c/matmul.h"),
    generator: 1,
    default: default_params,
    candidates,
};

/// The tiles for a product of `m x n` outputs and `work` multiply-adds on this device: the
/// small tiles where both sides are at most 64, else the tuned tiles.
fn tiles_for(ctx: &Ctx<'_>, m: usize, n: usize, work: u64) -> Tiles {
    if m <= 64 && n <= 64 && SMALL.fits(ctx.device) {
        return SMALL;
    }
    // `tune::params` gives a candidate of this device or its default: both fit.
    let p = tune::params(ctx.device, &TUNABLE, work);
    Tiles::from_params(&p).unwrap_or(LARGE)
}

/// The strides of `t`'s batch dimensions broadcast to `batch` (zero where broadcast).
fn batch_strides(t: &Tensor, batch: &[usize]) -> Vec<usize> {
    let r = t.rank();
    let own = &t.shape()[..r - 2];
    let lead = batch.len() - own.len();
    let mut strides = vec![0; batch.len()];
    for (i, &d) in own.iter().enumerate() {
        if d == batch[lead + i] {
            strides[lead + i] = t.strides()[i];
        }
    }
    strides
}

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let (a, b, out) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let bias = call.inputs.get(2).and_then(|t| t.as_ref());
    let r = out.rank();
    let (m, n) = (out.shape()[r - 2], out.shape()[r - 1]);
    let k = a.shape()[a.rank() - 1];
    let batch = &out.shape()[..r - 2];
    let batches: usize = batch.iter().product();
    if m == 0 || n == 0 || batches == 0 {
        return Ok(());
    }
    let tiles = tiles_for(ctx, m, n, tune::madds(batches, m, n, k));
    let bias_strides = bias.map(|c| broadcast_strides(c, out.shape()));
    let layouts = Layouts::new(batch)
        .with(batch_strides(a, batch), base_offset(a))
        .with(batch_strides(b, batch), base_offset(b))
        .with(out.strides()[..r - 2].to_vec(), base_offset(out))
        .with(
            bias_strides
                .as_ref()
                .map_or(vec![0; r - 2], |s| s[..r - 2].to_vec()),
            bias.map_or(0, base_offset),
        )
        .collapse();
    let (ra, rb) = (a.rank(), b.rank());
    let (a_rs, a_cs) = (a.strides()[ra - 2], a.strides()[ra - 1]);
    let (b_rs, b_cs) = (b.strides()[rb - 2], b.strides()[rb - 1]);
    let (c_rs, c_cs) = bias_strides
        .as_ref()
        .map_or((0, 0), |s| (s[r - 2], s[r - 1]));
    let mut spec = KernelSpec::new(Family::Matmul, "mm_tiled")
        .flag("MM_TILED")
        .def("BM", tiles.bm)
        .def("BN", tiles.bn)
        .def("BK", tiles.bk)
        .def("TM", tiles.tm)
        .def("TN", tiles.tn)
        .def("BRANK", layouts.rank())
        .def("A_KMAJOR", (a_cs == 1) as u8)
        .def("B_NMAJOR", (b_cs == 1) as u8);
    if bias.is_some() {
        spec = spec.flag("MM_BIAS");
    }
    let spec = dtype_defs(spec, "X", a.dtype());
    let (tiles_m, tiles_n) = (m.div_ceil(tiles.bm as usize), n.div_ceil(tiles.bn as usize));
    let s = |v: usize| KernelArg::scalar(v as i64);
    let args = [
        buf(out),
        buf(a),
        buf(b),
        bias.map_or_else(|| buf(out), buf),
        layouts.lay("matmul")?.arg(),
        s(m),
        s(n),
        s(k),
        s(tiles_m),
        s(tiles_n),
        s(batches),
        s(a_rs),
        s(a_cs),
        s(b_rs),
        s(b_cs),
        s(out.strides()[r - 2]),
        s(out.strides()[r - 1]),
        s(c_rs),
        s(c_cs),
    ];
    let groups = (batches * tiles_m * tiles_n).min(MAX_GROUPS);
    ctx.run(&spec, ctx.groups(groups, tiles.wg()), &args)
}
