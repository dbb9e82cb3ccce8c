//! `matmul`: a tiled kernel with register blocks, batch broadcasting and transposes through
//! strides, and the bias added in f32 before the one rounding of the result.

use anyaccel_hal::{KernelArg, OpCall, Result, Tensor};

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

impl Tiles {
    /// Work items per group.
    pub fn wg(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
}

/// The tiles for a product of `m x n` outputs on this device.
///
/// Large products: 128 x 128 tiles in steps of 32 along K, each of the 128 items computing an
/// 8 x 16 block (16 consecutive columns: one AVX-512 vector on CPU devices such as PoCL's, which
/// run a work-group's items in a loop; measured best of the shapes tried there). Small products
/// (both sides at most 64): 32 x 32 tiles of 4 x 8 blocks, 32 items. Devices whose work-groups
/// are smaller get 16 x 16 tiles of 4 x 4 blocks (16 items).
fn tiles_for(ctx: &Ctx<'_>, m: usize, n: usize) -> Tiles {
    let large = Tiles {
        bm: 128,
        bn: 128,
        bk: 32,
        tm: 8,
        tn: 16,
    };
    let small = Tiles {
        bm: 32,
        bn: 32,
        bk: 32,
        tm: 4,
        tn: 8,
    };
    let max = ctx.device.info().max_work_group_size;
    let pick = if m <= 64 && n <= 64 { small } else { large };
    if pick.wg() as u64 <= max {
        pick
    } else {
        Tiles {
            bm: 16,
            bn: 16,
            bk: 16,
            tm: 4,
            tn: 4,
        }
    }
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
    let tiles = tiles_for(ctx, m, n);
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
