//! The random ops, `uniform`, `normal`, `bernoulli` and `dropout`: the exact bits of the recipe
//! of `docs/ops.md` 8.10, written from the document (Philox 4x32-10 per Salmon et al., "Parallel
//! random numbers: as easy as 1, 2, 3", and the f32 steps of the normal draw), not from a
//! kernel. Only the coefficient tables come from `anyaccel_ops::random`, as the document lists
//! them.

use anyaccel_hal::{DType, Result};
use anyaccel_ops::random::{CENTRAL_C, LOG_C, TAIL_C};

use super::movement::shape_attr;
use super::{check_dtype, invalid, Call, RefTensor};

const FLOAT_F64: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];

/// The 32-bit words of a call: its key (`seed`) and counter high half (`offset`).
struct Words {
    key: [u32; 2],
    high: [u32; 2],
}

impl Words {
    fn of(call: &Call) -> Result<Words> {
        let seed = call.int_attr("seed")?.unwrap_or(0) as u64;
        let offset = call.int_attr("offset")?.unwrap_or(0) as u64;
        Ok(Words {
            key: [seed as u32, (seed >> 32) as u32],
            high: [offset as u32, (offset >> 32) as u32],
        })
    }

    /// Word `i` of the stream: lane `i mod 4` of the block of counter `i div 4`.
    fn at(&self, i: usize) -> u32 {
        let block = (i / 4) as u64;
        let mut x = [
            block as u32,
            (block >> 32) as u32,
            self.high[0],
            self.high[1],
        ];
        let mut key = self.key;
        for r in 0..10 {
            if r > 0 {
                key[0] = key[0].wrapping_add(0x9E37_79B9);
                key[1] = key[1].wrapping_add(0xBB67_AE85);
            }
            let a = 0xD251_1F53u64 * x[0] as u64;
            let b = 0xCD9E_8D57u64 * x[2] as u64;
            x = [
                ((b >> 32) as u32) ^ x[1] ^ key[0],
                b as u32,
                ((a >> 32) as u32) ^ x[3] ^ key[1],
                a as u32,
            ];
        }
        x[i % 4]
    }
}

/// The uniform of a word in the precision of the dtype: `(w >> 8) / 2^24` (in f32), or
/// `w / 2^32` (in f64 for f64).
fn unit(w: u32, wide: bool) -> f64 {
    if wide {
        w as f64 / 4294967296.0
    } else {
        (w >> 8) as f64 / 16777216.0
    }
}

/// `c0 + t (c1 + t (...))` in f32, one rounding per step.
fn poly(c: &[u32; 10], t: f32) -> f32 {
    c.iter()
        .rev()
        .skip(1)
        .fold(f32::from_bits(c[9]), |acc, &k| {
            let prod: f32 = acc * t;
            prod + f32::from_bits(k)
        })
}

/// The standard normal draw of word `w`, step by step as the document states it.
fn normal_draw(w: u32) -> f32 {
    let k = (w >> 9) as i64;
    let x = (2 * k + 1 - (1 << 23)) as f32 / 8388608.0;
    let mut e_sum: i32 = -46;
    let mut l = [0f32; 2];
    for (slot, v) in [(2 * k + 1) as f32, ((1 << 24) - 2 * k - 1) as f32]
        .into_iter()
        .enumerate()
    {
        let bits = v.to_bits();
        let mut e = ((bits >> 23) & 0xff) as i32 - 127;
        let mut m = f32::from_bits(0x3f80_0000 | (bits & 0x007f_ffff));
        if m > std::f32::consts::SQRT_2 {
            m /= 2.0;
            e += 1;
        }
        let t = m - 1.0;
        l[slot] = t * poly(&LOG_C, t);
        e_sum += e;
    }
    let ln2 = f32::from_bits(0x3f31_7218);
    let scaled: f32 = e_sum as f32 * ln2;
    let big_w = -(scaled + (l[0] + l[1]));
    let q = if big_w < 5.0 {
        poly(&CENTRAL_C, big_w - 2.5)
    } else {
        let half = big_w / 2.0;
        let mut y = f32::from_bits(0x5f37_59df - (big_w.to_bits() >> 1));
        for _ in 0..3 {
            let hyy: f32 = (half * y) * y;
            y *= 1.5 - hyy;
        }
        let root: f32 = big_w * y;
        poly(&TAIL_C, root - 3.0)
    };
    q * x
}

/// `uniform` and `normal`: `a + b * draw` in f32 (one rounding each) or f64.
pub(crate) fn draw(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let dtype = call.dtype_attr("dtype")?;
    check_dtype(op, "attribute `dtype`", dtype, &FLOAT_F64)?;
    let shape = shape_attr(call, "shape")?;
    let n = anyaccel_hal::checked_numel(op, &shape)?;
    let wide = dtype == DType::F64;
    let normal = op == "normal";
    let (a, b) = if normal {
        let mean = call.float_attr("mean")?.unwrap_or(0.0);
        let std = call.float_attr("std")?.unwrap_or(1.0);
        if std < 0.0 || std.is_nan() {
            return Err(invalid(op, format!("std is {std}, expected std >= 0")));
        }
        (mean, std)
    } else {
        let low = call.float_attr("low")?.unwrap_or(0.0);
        let high = call.float_attr("high")?.unwrap_or(1.0);
        if low > high || low.is_nan() || high.is_nan() {
            return Err(invalid(
                op,
                format!("low {low} is above high {high}, expected low <= high"),
            ));
        }
        (low, high - low)
    };
    for v in [a, b] {
        let finite = if wide {
            v.is_finite()
        } else {
            (v as f32).is_finite()
        };
        if !finite {
            return Err(invalid(
                op,
                format!("a parameter is {v}, which overflows the precision it is computed in"),
            ));
        }
    }
    let words = Words::of(call)?;
    let values = (0..n)
        .map(|i| {
            let w = words.at(i);
            if wide {
                let d = if normal {
                    normal_draw(w) as f64
                } else {
                    unit(w, true)
                };
                a + b * d
            } else {
                let d = if normal {
                    normal_draw(w)
                } else {
                    unit(w, false) as f32
                };
                let prod: f32 = b as f32 * d;
                (a as f32 + prod) as f64
            }
        })
        .collect();
    RefTensor::from_f64(dtype, &shape, values)
}

/// `bernoulli(p)` and `dropout(x)`.
pub(crate) fn mask(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, &call.name(0), x.dtype, &FLOAT_F64)?;
    let wide = x.dtype == DType::F64;
    let words = Words::of(call)?;
    let xs = x.to_f64_vec();
    let values = if op == "bernoulli" {
        xs.iter()
            .enumerate()
            .map(|(i, &p)| {
                let u = unit(words.at(i), wide);
                // u and p are exact in f32 for the f32-computed dtypes: compare as f64.
                if u < p {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    } else {
        let p = call.float_attr("p")?.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(
                op,
                format!("p is {p}, expected a probability in [0, 1]"),
            ));
        }
        let scale = if p == 1.0 { 0.0 } else { 1.0 / (1.0 - p) };
        xs.iter()
            .enumerate()
            .map(|(i, &v)| {
                let u = unit(words.at(i), wide);
                if wide {
                    let kept = if u < p { 0.0 } else { 1.0 };
                    v * kept * scale
                } else {
                    let kept = if u < (p as f32) as f64 { 0.0f32 } else { 1.0 };
                    ((v as f32 * kept) * scale as f32) as f64
                }
            })
            .collect()
    };
    RefTensor::from_f64(x.dtype, &x.shape, values)
}
