//! Vectorised f32 math for the host kernels: `exp`, `tanh`, `sigmoid`, `silu`, `erf` and both
//! forms of `gelu` as branch-free kernels (selects, no calls) written once over the vector
//! interface of [`super::simd`], elementwise maps over slices, and the fused row kernels of
//! `softmax`, `log_softmax`, `layer_norm` and `rms_norm`.
//!
//! Every loop here is compiled three times, for AVX-512, for AVX2 with FMA and for the
//! baseline, and one is chosen at run time by the CPU's features: the kernels through the
//! instruction set's token (fused multiply-add, reciprocal estimates, `vscalefps`), the plain
//! loops vectorised by the compiler under `target_feature`, as in `qkern`. The scalar forms
//! (16-bit floats, strided runs) are the same kernels at one lane. The functions meet the op
//! contract's f32 tolerances (docs/ops.md section 7): the unary kernels within a few ulp; the
//! row kernels sum in f64 lanes.

// The polynomials' coefficients are written as published (Cephes, Numerical Recipes, Eigen), some
// with more digits than an f32 holds.
#![allow(clippy::excessive_precision)]

#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};
use super::simd::{Isa, Scalar};
use half::{bf16, f16};

/// The lanes of an f64 accumulator: two AVX-512 registers.
const LANES: usize = 16;

/// `x` limited to `[lo, hi]`, NaN kept.
#[inline(always)]
fn clamp<S: Isa>(s: S, x: S::V, lo: f32, hi: f32) -> S::V {
    // NaN is the second operand of both: kept.
    s.max(s.splat(lo), s.min(s.splat(hi), x))
}

/// `c[0] * x^k + c[1] * x^(k-1) + ... + c[k]` by Horner's rule.
#[inline(always)]
fn horner<S: Isa, const K: usize>(s: S, x: S::V, c: [f32; K]) -> S::V {
    let mut p = s.splat(c[0]);
    for &c in &c[1..] {
        p = s.fma(p, x, s.splat(c));
    }
    p
}

/// `e^x` within 2 ulp for normal results; `+inf` above 88.72, `0` far below, NaN kept.
///
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2` (the split constant of Cephes' `expf`), `e^r` by its
/// degree-6 minimax polynomial, and `2^n` applied as two factors so that results next to the
/// overflow and underflow limits keep their exponent.
#[inline(always)]
fn exp_v<S: Isa>(s: S, x: S::V) -> S::V {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    // Far below the least subnormal (-inf included) the result is 0: those lanes compute
    // e^0 instead, so that no lane multiplies into the subnormals (a slow microcode assist on
    // x86), and are zeroed at the end.
    let zero = s.lt(x, s.splat(-104.0));
    // The lanes below -104 are now 0: only the upper limit is left to apply (NaN kept).
    let x = s.min(s.splat(88.8), s.select(zero, s.splat(0.0), x));
    let biased = s.fma(x, s.splat(LOG2E), s.splat(ROUND));
    let n = s.sub(biased, s.splat(ROUND));
    let r = s.fma(n, s.splat(-C1), x);
    let r = s.fma(n, s.splat(-C2), r);
    let p = horner(
        s,
        r,
        [
            1.987_569_1e-4,
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5.000_000_1e-1,
        ],
    );
    let p = s.add(s.fma(p, s.mul(r, r), r), s.splat(1.0));
    // n (in [-150, 128]) from the low bits of `biased`, without a float-to-int conversion.
    let y = s.scale_pow2(p, n, biased);
    s.select(zero, s.splat(0.0), y)
}

/// `tanh(x)` as a rational function of degree 13 over 6 (the coefficients of Eigen's
/// `ptanh_float`; relative error under 1.3e-7 before rounding) on `|x| <= 7.905`, and `+-1`
/// beyond 8.7, where tanh rounds to 1 in f32 (in between the clamped value, within 3e-7).
#[inline(always)]
fn tanh_v<S: Isa>(s: S, x: S::V) -> S::V {
    const CLAMP: f32 = 7.905_311;
    let c = clamp(s, x, -CLAMP, CLAMP);
    let z = s.mul(c, c);
    let p = horner(
        s,
        z,
        [
            -2.760_768_5e-16,
            2.000_187_9e-13,
            -8.604_671_5e-11,
            5.122_297e-8,
            1.485_722_4e-5,
            6.372_619_3e-4,
            4.893_524_6e-3,
        ],
    );
    let q = horner(
        s,
        z,
        [
            1.198_258_4e-6,
            1.185_347_1e-4,
            2.268_434_6e-3,
            4.893_525_2e-3,
        ],
    );
    let r = s.mul(s.mul(p, c), s.recip(q));
    // Not for NaN: the comparison is false.
    s.select(s.lt(s.splat(8.7), s.abs(x)), s.copysign(s.splat(1.0), x), r)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
fn sigmoid_v<S: Isa>(s: S, x: S::V) -> S::V {
    s.recip(s.add(s.splat(1.0), exp_v(s, s.sub(s.splat(0.0), x))))
}

/// `x * sigmoid(x)`.
#[inline(always)]
fn silu_v<S: Isa>(s: S, x: S::V) -> S::V {
    s.mul(x, sigmoid_v(s, x))
}

/// `erf` below 0.5 by its Taylor series to `x^11` (relative error under 3e-8), for the caller
/// to select.
#[inline(always)]
fn erf_small<S: Isa>(s: S, x: S::V, z: S::V) -> S::V {
    // 2/sqrt(pi) * (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320)
    let p = horner(
        s,
        z,
        [
            -8.548_327e-4,
            5.223_977_6e-3,
            -2.686_617_1e-2,
            0.112_837_92,
            -0.376_126_4,
            std::f32::consts::FRAC_2_SQRT_PI,
        ],
    );
    s.mul(x, p)
}

/// `erfc(a)` for `a >= 0` by the Chebyshev-fitted form of Numerical Recipes' `erfcc`
/// (relative error under 1.2e-7); `z = a^2`.
#[inline(always)]
fn erfc_pos<S: Isa>(s: S, a: S::V, z: S::V) -> S::V {
    let t = s.recip(s.fma(s.splat(0.5), a, s.splat(1.0)));
    let poly = horner(
        s,
        t,
        [
            0.170_872_77,
            -0.822_152_23,
            1.488_515_87,
            -1.135_203_98,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
            -1.265_512_2,
        ],
    );
    s.mul(t, exp_v(s, s.sub(poly, z)))
}

/// `erf(x)`: [`erf_small`] below 0.5, `1 - erfc(|x|)` above, with the sign of `x`.
#[inline(always)]
fn erf_v<S: Isa>(s: S, x: S::V) -> S::V {
    let a = s.abs(x);
    let z = s.mul(x, x);
    let large = s.sub(s.splat(1.0), erfc_pos(s, a, z));
    s.select(
        s.lt(a, s.splat(0.5)),
        erf_small(s, x, z),
        s.copysign(large, x),
    )
}

/// `gelu`, erf form: `x/2 (1 + erf(x / sqrt 2))`, with `1 + erf(y)` as `erfc(|y|)` for
/// negative `y` and `2 - erfc(y)` for positive: `erfcc`'s relative error holds on the whole
/// range, so there is no cancellation on the negative side and no second piece near 0 (where
/// `1 + erf` is near 1).
#[inline(always)]
fn gelu_v<S: Isa>(s: S, x: S::V) -> S::V {
    let y = s.mul(x, s.splat(std::f32::consts::FRAC_1_SQRT_2));
    let c = erfc_pos(s, s.abs(y), s.mul(y, y));
    let one_plus = s.select(s.lt(y, s.splat(0.0)), c, s.sub(s.splat(2.0), c));
    s.mul(s.mul(s.splat(0.5), x), one_plus)
}

/// `gelu`, tanh form: `x/2 (1 + tanh(u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)`, computed
/// as the equal `x / (1 + e^(-2u))` (no cancellation for negative `u`).
#[inline(always)]
fn gelu_tanh_v<S: Isa>(s: S, x: S::V) -> S::V {
    // -2 sqrt(2/pi)
    const K: f32 = -1.595_769_1;
    let x3 = s.mul(s.mul(x, x), x);
    let u = s.fma(s.splat(0.044715), x3, x);
    let e = exp_v(s, s.mul(s.splat(K), u));
    s.mul(x, s.recip(s.add(s.splat(1.0), e)))
}

/// A vector kernel of one operand, called through a generic (a call through `Fn` would go
/// through a shim compiled without the instruction set, where the operations do not inline);
/// `self` holds its attributes.
trait Kernel {
    fn apply<S: Isa>(&self, s: S, x: S::V) -> S::V;
}

/// The identity: [`map_v`] with it converts between element types.
struct Same;

impl Kernel for Same {
    #[inline(always)]
    fn apply<S: Isa>(&self, _: S, x: S::V) -> S::V {
        x
    }
}

/// From one list of `Variant = scalar_name = kernel_fn` of a family of kernels with the same
/// operands (`(x)` for the unary ops, `(g, x)` for the gradients): the scalar forms (the
/// kernels at one lane), the family's enum of the ops with a vector kernel, a type per op
/// implementing the family's kernel trait (in the module named), and the body that runs the
/// op's kernel over slices through the family's map.
macro_rules! vector_kernels {
    (
        $(#[$edoc:meta])* enum $enum:ident: $tr:ident in $m:ident, $body:ident by $map:ident,
        $args:tt;
        $($(#[$doc:meta])* $variant:ident = $name:ident = $v:ident;)*
    ) => {
        $(vector_kernels!(@scalar $(#[$doc])* $name $v $args);)*

        $(#[$edoc])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub(crate) enum $enum {
            $($variant,)*
        }

        impl $enum {
            #[cfg(test)]
            pub(crate) const ALL: &[$enum] = &[$($enum::$variant,)*];

            /// The scalar form, with the same results as the vector kernel up to rounding.
            pub(crate) fn scalar(self) -> vector_kernels!(@fn $args) {
                match self {
                    $($enum::$variant => $name,)*
                }
            }
        }

        mod $m {
            use super::*;
            $(vector_kernels!(@kernel $tr $variant $v $args);)*
        }

        vector_kernels!(@body $enum $m $body $map $args [$($variant)*]);
    };
    (@scalar $(#[$doc:meta])* $name:ident $v:ident ($($a:ident),+)) => {
        $(#[$doc])*
        #[inline(always)]
        pub(crate) fn $name($($a: f32),+) -> f32 {
            $v(Scalar, $($a),+)
        }
    };
    (@fn (x)) => { fn(f32) -> f32 };
    (@fn (g, x)) => { fn(f32, f32) -> f32 };
    (@kernel $tr:ident $variant:ident $v:ident ($($a:ident),+)) => {
        pub(super) struct $variant;
        impl $tr for $variant {
            #[inline(always)]
            fn apply<S: Isa>(&self, s: S, $($a: S::V),+) -> S::V {
                $v(s, $($a),+)
            }
        }
    };
    (@body $enum:ident $m:ident $body:ident $map:ident ($($a:ident),+) [$($variant:ident)*]) => {
        #[inline(always)]
        fn $body<S: Isa, T: Elem>(s: S, op: $enum, $($a: &[T],)+ o: &mut [T]) {
            vector_kernels!(@arms op $enum $m $map (s, $($a,)+ o) [$($variant)*])
        }
    };
    (@arms $op:ident $enum:ident $m:ident $map:ident $call:tt [$($variant:ident)*]) => {
        match $op {
            $($enum::$variant => vector_kernels!(@call $map $m $variant $call),)*
        }
    };
    (@call $map:ident $m:ident $variant:ident ($s:ident, $($a:ident),+)) => {
        $map($s, &$m::$variant, $($a),+)
    };
}

vector_kernels! {
    /// The unary ops with a vector kernel here.
    enum Unary: Kernel in kernel, unary_body by map_v, (x);
    /// `e^x`.
    Exp = exp = exp_v;
    /// `tanh(x)`.
    Tanh = tanh = tanh_v;
    /// `1 / (1 + e^-x)`.
    Sigmoid = sigmoid = sigmoid_v;
    /// `x * sigmoid(x)`.
    Silu = silu = silu_v;
    /// `erf(x)`.
    Erf = erf = erf_v;
    /// `gelu`, erf form.
    Gelu = gelu = gelu_v;
    /// `gelu`, tanh form.
    GeluTanh = gelu_tanh = gelu_tanh_v;
}

/// `e^x - 1`: by its Taylor polynomial of degree 7 where `|x| < 0.25` (relative error under
/// 3e-8 before rounding; the subtraction would lose the digits there), else from [`exp_v`].
#[inline(always)]
fn expm1_v<S: Isa>(s: S, x: S::V) -> S::V {
    let p = horner(
        s,
        x,
        [
            1.0 / 5040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
        ],
    );
    let small = s.lt(s.abs(x), s.splat(0.25));
    s.select(small, s.mul(p, x), s.sub(exp_v(s, x), s.splat(1.0)))
}

/// `elu`: `x` where `x > 0`, else `alpha (e^x - 1)` (NaN kept).
#[inline(always)]
fn elu_v<S: Isa>(s: S, x: S::V, alpha: f32) -> S::V {
    let pos = s.lt(s.splat(0.0), x);
    s.select(pos, x, s.mul(s.splat(alpha), expm1_v(s, x)))
}

/// `elu_backward`: `g alpha e^x` where `x <= 0`, else `g` (a NaN x too, as the reference).
#[inline(always)]
fn elu_grad_v<S: Isa>(s: S, g: S::V, x: S::V, alpha: f32) -> S::V {
    // x <= 0 as x below the least positive float: false for NaN.
    let neg = s.lt(x, s.splat(f32::from_bits(1)));
    s.select(neg, s.mul(s.mul(g, s.splat(alpha)), exp_v(s, x)), g)
}

/// `ln(1 + e)` for `e` in `[0, 1]`: `2 atanh(z)`, `z = e / (2 + e)` in `[0, 1/3]`, by its odd
/// series to `z^17` (truncation under 3e-11 relative): no cancellation for small `e`.
#[inline(always)]
fn log1p_unit_v<S: Isa>(s: S, e: S::V) -> S::V {
    let z = s.mul(e, s.recip(s.add(s.splat(2.0), e)));
    let p = horner(
        s,
        s.mul(z, z),
        [
            1.0 / 17.0,
            1.0 / 15.0,
            1.0 / 13.0,
            1.0 / 11.0,
            1.0 / 9.0,
            1.0 / 7.0,
            1.0 / 5.0,
            1.0 / 3.0,
            1.0,
        ],
    );
    s.mul(s.add(z, z), p)
}

/// `softplus`: `x` where `t = x beta > threshold`, else `(max(t, 0) + ln(1 + e^-|t|)) / beta`
/// (never overflows; NaN kept).
#[inline(always)]
fn softplus_v<S: Isa>(s: S, x: S::V, beta: f32, threshold: f32) -> S::V {
    let t = s.mul(x, s.splat(beta));
    // max(t, 0) is 0 for a NaN t; the exponential keeps the NaN.
    let l = s.add(
        s.max(t, s.splat(0.0)),
        log1p_unit_v(s, exp_v(s, s.sub(s.splat(0.0), s.abs(t)))),
    );
    let above = s.lt(s.splat(threshold), t);
    s.select(above, x, s.mul(l, s.splat(1.0 / beta)))
}

/// `softplus_backward`: `g` where `t = x beta > threshold`, else `g sigmoid(t)`.
#[inline(always)]
fn softplus_grad_v<S: Isa>(s: S, g: S::V, x: S::V, beta: f32, threshold: f32) -> S::V {
    let t = s.mul(x, s.splat(beta));
    let above = s.lt(s.splat(threshold), t);
    s.select(above, g, s.mul(g, sigmoid_v(s, t)))
}

/// The activations with float attributes that have vector kernels here.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    /// `elu` with `alpha`.
    Elu(f32),
    /// `softplus` with `beta` (not 0) and `threshold`.
    Softplus(f32, f32),
}

#[inline(always)]
fn act_v<S: Isa>(s: S, a: Act, x: S::V) -> S::V {
    match a {
        Act::Elu(alpha) => elu_v(s, x, alpha),
        Act::Softplus(beta, threshold) => softplus_v(s, x, beta, threshold),
    }
}

#[inline(always)]
fn act_grad_v<S: Isa>(s: S, a: Act, g: S::V, x: S::V) -> S::V {
    match a {
        Act::Elu(alpha) => elu_grad_v(s, g, x, alpha),
        Act::Softplus(beta, threshold) => softplus_grad_v(s, g, x, beta, threshold),
    }
}

impl Kernel for Act {
    #[inline(always)]
    fn apply<S: Isa>(&self, s: S, x: S::V) -> S::V {
        act_v(s, *self, x)
    }
}

/// The gradient of an [`Act`], `dx` from `g` and `x`.
struct ActGrad(Act);

impl Kernel2 for ActGrad {
    #[inline(always)]
    fn apply<S: Isa>(&self, s: S, g: S::V, x: S::V) -> S::V {
        act_grad_v(s, self.0, g, x)
    }
}

#[inline(always)]
fn act_body<S: Isa>(s: S, a: Act, x: &[f32], o: &mut [f32]) {
    map_v(s, &a, x, o)
}

#[inline(always)]
fn act_grad_body<S: Isa>(s: S, a: Act, g: &[f32], x: &[f32], o: &mut [f32]) {
    map2_v(s, &ActGrad(a), g, x, o)
}

/// `e / (1 + e)^2`, the derivative of the sigmoid at `x` (of tanh at `x / 2`, over 4), from
/// `e = e^-|x|`: no cancellation.
#[inline(always)]
fn bell<S: Isa>(s: S, e: S::V) -> S::V {
    let d = s.add(s.splat(1.0), e);
    s.mul(e, s.recip(s.mul(d, d)))
}

/// `x d`, or 0 where the derivative `d` (never negative) underflowed to 0, so that `x = +-inf`
/// gives the limit 0 rather than NaN.
#[inline(always)]
fn times_small<S: Isa>(s: S, x: S::V, d: S::V) -> S::V {
    s.select(s.lt(s.splat(0.0), d), s.mul(x, d), s.splat(0.0))
}

/// `sigmoid_backward`: `g e / (1 + e)^2` with `e = e^-|x|`.
#[inline(always)]
fn sigmoid_grad_v<S: Isa>(s: S, g: S::V, x: S::V) -> S::V {
    s.mul(g, bell(s, exp_v(s, s.sub(s.splat(0.0), s.abs(x)))))
}

/// `tanh_backward`: `g (1 - tanh(x)^2)` as `g 4e / (1 + e)^2` with `e = e^-2|x|`.
#[inline(always)]
fn tanh_grad_v<S: Isa>(s: S, g: S::V, x: S::V) -> S::V {
    let e = exp_v(s, s.mul(s.splat(-2.0), s.abs(x)));
    s.mul(g, s.mul(s.splat(4.0), bell(s, e)))
}

/// `silu_backward`: `g (s + x s (1 - s))` with `s = sigmoid(x)`, from one exponential `e =
/// e^-|x|`: `s (1 - s) = e / (1 + e)^2`, `s = 1 / (1 + e)` for `x >= 0` and `e / (1 + e)`
/// below.
#[inline(always)]
fn silu_grad_v<S: Isa>(s: S, g: S::V, x: S::V) -> S::V {
    let e = exp_v(s, s.sub(s.splat(0.0), s.abs(x)));
    let r = s.recip(s.add(s.splat(1.0), e));
    let sig = s.select(s.lt(x, s.splat(0.0)), s.mul(e, r), r);
    s.mul(g, s.add(sig, times_small(s, x, s.mul(e, s.mul(r, r)))))
}

/// `gelu_backward`, erf form: `g (Phi(x) + x phi(x))`, `Phi(x) = erfc(-x / sqrt 2) / 2` as in
/// [`gelu_v`] and `phi(x) = e^(-x^2 / 2) / sqrt(2 pi)`.
#[inline(always)]
fn gelu_grad_v<S: Isa>(s: S, g: S::V, x: S::V) -> S::V {
    let y = s.mul(x, s.splat(std::f32::consts::FRAC_1_SQRT_2));
    let y2 = s.mul(y, y);
    let c = erfc_pos(s, s.abs(y), y2);
    let cdf = s.mul(
        s.splat(0.5),
        s.select(s.lt(y, s.splat(0.0)), c, s.sub(s.splat(2.0), c)),
    );
    // 1 / sqrt(2 pi)
    let pdf = s.mul(exp_v(s, s.sub(s.splat(0.0), y2)), s.splat(0.398_942_3));
    s.mul(g, s.add(cdf, times_small(s, x, pdf)))
}

/// `gelu_backward`, tanh form: `g ((1 + tanh u) / 2 + x/2 (1 - tanh(u)^2) u')` with `u =
/// sqrt(2/pi) (x + 0.044715 x^3)` and `u' = sqrt(2/pi) (1 + 3 0.044715 x^2)`, from one
/// exponential `e = e^-2|u|`: `(1 + tanh u) / 2` is `1 / (1 + e)` for `u >= 0` and `e / (1 +
/// e)` below (no cancellation for negative `u`), `1 - tanh(u)^2 = 4e / (1 + e)^2`.
#[inline(always)]
fn gelu_tanh_grad_v<S: Isa>(s: S, g: S::V, x: S::V) -> S::V {
    // sqrt(2 / pi)
    const K: f32 = 0.797_884_6;
    let x2 = s.mul(x, x);
    let u = s.mul(
        s.splat(K),
        s.mul(x, s.fma(s.splat(0.044715), x2, s.splat(1.0))),
    );
    let e = exp_v(s, s.mul(s.splat(-2.0), s.abs(u)));
    let r = s.recip(s.add(s.splat(1.0), e));
    let left = s.select(s.lt(u, s.splat(0.0)), s.mul(e, r), r);
    let d = s.mul(s.splat(4.0), s.mul(e, s.mul(r, r)));
    let du = s.mul(s.splat(K), s.fma(s.splat(3.0 * 0.044715), x2, s.splat(1.0)));
    let right = times_small(s, s.mul(s.mul(s.splat(0.5), x), du), d);
    s.mul(g, s.add(left, right))
}

/// A vector kernel of two operands (an activation gradient: `dx` from `g` and `x`), called as
/// [`Kernel`] is.
trait Kernel2 {
    fn apply<S: Isa>(&self, s: S, g: S::V, x: S::V) -> S::V;
}

vector_kernels! {
    /// The activation gradients with a vector kernel here.
    enum Grad: Kernel2 in grad_kernel, grad_body by map2_v, (g, x);
    /// `sigmoid_backward`.
    Sigmoid = sigmoid_grad = sigmoid_grad_v;
    /// `tanh_backward`.
    Tanh = tanh_grad = tanh_grad_v;
    /// `silu_backward`.
    Silu = silu_grad = silu_grad_v;
    /// `gelu_backward`, erf form.
    Gelu = gelu_grad = gelu_grad_v;
    /// `gelu_backward`, tanh form.
    GeluTanh = gelu_tanh_grad = gelu_tanh_grad_v;
}

/// The element types the unary kernels read and write: f32, or a 16-bit float widened on
/// load and rounded once on store.
pub(crate) trait Elem: Copy {
    const ZERO: Self;
    fn load<S: Isa>(s: S, x: &[Self]) -> S::V;
    fn store<S: Isa>(s: S, v: S::V, o: &mut [Self]);
}

impl Elem for f32 {
    const ZERO: f32 = 0.0;
    #[inline(always)]
    fn load<S: Isa>(s: S, x: &[f32]) -> S::V {
        s.load(x)
    }
    #[inline(always)]
    fn store<S: Isa>(s: S, v: S::V, o: &mut [f32]) {
        s.store(v, o)
    }
}

impl Elem for f16 {
    const ZERO: f16 = f16::ZERO;
    #[inline(always)]
    fn load<S: Isa>(s: S, x: &[f16]) -> S::V {
        s.load_f16(x)
    }
    #[inline(always)]
    fn store<S: Isa>(s: S, v: S::V, o: &mut [f16]) {
        s.store_f16(v, o)
    }
}

impl Elem for bf16 {
    const ZERO: bf16 = bf16::ZERO;
    #[inline(always)]
    fn load<S: Isa>(s: S, x: &[bf16]) -> S::V {
        s.load_bf16(x)
    }
    #[inline(always)]
    fn store<S: Isa>(s: S, v: S::V, o: &mut [bf16]) {
        s.store_bf16(v, o)
    }
}

#[inline(always)]
fn widen_f16<S: Isa>(s: S, x: &[f16], o: &mut [f32]) {
    map_v(s, &Same, x, o)
}

#[inline(always)]
fn widen_bf16<S: Isa>(s: S, x: &[bf16], o: &mut [f32]) {
    map_v(s, &Same, x, o)
}

#[inline(always)]
fn narrow_f16<S: Isa>(s: S, x: &[f32], o: &mut [f16]) {
    map_v(s, &Same, x, o)
}

#[inline(always)]
fn narrow_bf16<S: Isa>(s: S, x: &[f32], o: &mut [bf16]) {
    map_v(s, &Same, x, o)
}

/// `o[i] = k(x[i])` vector by vector, widened from `A` on load and rounded to `B` on store;
/// the tail goes through a zero-padded vector, so every element gets the vector kernel's
/// result whatever its position.
#[inline(always)]
fn map_v<S: Isa, K: Kernel, A: Elem, B: Elem>(s: S, k: &K, x: &[A], o: &mut [B]) {
    let (mut xc, mut oc) = (x.chunks_exact(S::N), o.chunks_exact_mut(S::N));
    for (c, y) in (&mut xc).zip(&mut oc) {
        B::store(s, k.apply(s, A::load(s, c)), y);
    }
    let (xt, ot) = (xc.remainder(), oc.into_remainder());
    if !xt.is_empty() {
        let mut buf = [A::ZERO; 16];
        buf[..xt.len()].copy_from_slice(xt);
        let mut out = [B::ZERO; 16];
        B::store(s, k.apply(s, A::load(s, &buf)), &mut out);
        ot.copy_from_slice(&out[..ot.len()]);
    }
}

/// `o[i] = k(g[i], x[i])` vector by vector, the tail as in [`map_v`].
#[inline(always)]
fn map2_v<S: Isa, K: Kernel2, T: Elem>(s: S, k: &K, g: &[T], x: &[T], o: &mut [T]) {
    let (mut gc, mut xc, mut oc) = (
        g.chunks_exact(S::N),
        x.chunks_exact(S::N),
        o.chunks_exact_mut(S::N),
    );
    for ((a, b), y) in (&mut gc).zip(&mut xc).zip(&mut oc) {
        T::store(s, k.apply(s, T::load(s, a), T::load(s, b)), y);
    }
    let (gt, xt, ot) = (gc.remainder(), xc.remainder(), oc.into_remainder());
    if !ot.is_empty() {
        let (mut ga, mut xa) = ([T::ZERO; 16], [T::ZERO; 16]);
        ga[..gt.len()].copy_from_slice(gt);
        xa[..xt.len()].copy_from_slice(xt);
        let v = k.apply(s, T::load(s, &ga), T::load(s, &xa));
        T::store(s, v, &mut ga);
        ot.copy_from_slice(&ga[..ot.len()]);
    }
}

#[inline(always)]
fn grad_f32<S: Isa>(s: S, op: Grad, g: &[f32], x: &[f32], o: &mut [f32]) {
    grad_body(s, op, g, x, o)
}

#[inline(always)]
fn grad_f16<S: Isa>(s: S, op: Grad, g: &[f16], x: &[f16], o: &mut [f16]) {
    grad_body(s, op, g, x, o)
}

#[inline(always)]
fn grad_bf16<S: Isa>(s: S, op: Grad, g: &[bf16], x: &[bf16], o: &mut [bf16]) {
    grad_body(s, op, g, x, o)
}

#[inline(always)]
fn unary_f32<S: Isa>(s: S, op: Unary, x: &[f32], o: &mut [f32]) {
    unary_body(s, op, x, o)
}

#[inline(always)]
fn unary_f16<S: Isa>(s: S, op: Unary, x: &[f16], o: &mut [f16]) {
    unary_body(s, op, x, o)
}

#[inline(always)]
fn unary_bf16<S: Isa>(s: S, op: Unary, x: &[bf16], o: &mut [bf16]) {
    unary_body(s, op, x, o)
}

/// The instruction sets the loops here are compiled for, chosen once per call by the CPU's
/// features.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Level {
    Avx512,
    Avx2,
    Baseline,
}

#[cfg(test)]
thread_local! {
    /// A level the tests choose instead of the widest (never one the CPU lacks).
    static FORCED: std::cell::Cell<Option<Level>> = const { std::cell::Cell::new(None) };
}

fn level() -> Level {
    #[cfg(test)]
    if let Some(l) = FORCED.with(|f| f.get()) {
        return l;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("fma") {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") && has!("f16c") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Whether the loops of this module run compiled for AVX-512 ([`level`]; tests may force a
/// lower level), for kernels elsewhere that dispatch the same way.
pub(crate) fn avx512() -> bool {
    matches!(level(), Level::Avx512)
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$body`, generic over the
/// [`Isa`] it takes first, compiled for AVX-512, for AVX2 with FMA or for the baseline
/// ([`Scalar`]), by [`level`].
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: this function runs only where the CPU has AVX-512 ([`level`]),
                    // and is compiled for it.
                    $body(unsafe { Avx512::new_unchecked() }, $($arg),*)
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: as above, for AVX2, FMA and F16C.
                    $body(unsafe { Avx2::new_unchecked() }, $($arg),*)
                }
                match level() {
                    // SAFETY: the features the function is compiled for are present.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            $body(Scalar, $($arg),*)
        }
    };
}

multiversion! {
    /// The activation `a` of each element of `x` into `o` (slices of one length).
    fn act(a: Act, x: &[f32], o: &mut [f32]) = act_body
}

multiversion! {
    /// The gradient of the activation `a`: `o[i]` from the gradient `g[i]` and `x[i]`.
    fn act_grad(a: Act, g: &[f32], x: &[f32], o: &mut [f32]) = act_grad_body
}

multiversion! {
    /// `o[i] = x[i]` as f32 (slices of one length).
    fn widen_16(x: &[f16], o: &mut [f32]) = widen_f16
}

multiversion! {
    /// [`widen_16`] from bf16.
    fn widen_b16(x: &[bf16], o: &mut [f32]) = widen_bf16
}

multiversion! {
    /// `o[i] = x[i]` rounded to f16, to nearest even (slices of one length).
    fn narrow_16(x: &[f32], o: &mut [f16]) = narrow_f16
}

multiversion! {
    /// [`narrow_16`] to bf16.
    fn narrow_b16(x: &[f32], o: &mut [bf16]) = narrow_bf16
}

multiversion! {
    /// `o[i] = op(x[i])` with the vector kernel of `op` (`x` and `o` of one length).
    fn unary(op: Unary, x: &[f32], o: &mut [f32]) = unary_f32
}

multiversion! {
    /// [`unary`] on f16, computed in f32 and rounded once.
    fn unary_16(op: Unary, x: &[f16], o: &mut [f16]) = unary_f16
}

multiversion! {
    /// [`unary`] on bf16, computed in f32 and rounded once.
    fn unary_b16(op: Unary, x: &[bf16], o: &mut [bf16]) = unary_bf16
}

multiversion! {
    /// `o[i] = op(g[i], x[i])` with the vector kernel of the gradient `op` (slices of one
    /// length).
    fn grad(op: Grad, g: &[f32], x: &[f32], o: &mut [f32]) = grad_f32
}

multiversion! {
    /// [`grad`] on f16, computed in f32 and rounded once.
    fn grad_16(op: Grad, g: &[f16], x: &[f16], o: &mut [f16]) = grad_f16
}

multiversion! {
    /// [`grad`] on bf16, computed in f32 and rounded once.
    fn grad_b16(op: Grad, g: &[bf16], x: &[bf16], o: &mut [bf16]) = grad_bf16
}

/// `o[i] = f(x[i])`, compiled for the CPU's widest vectors (generic, so written out rather
/// than through [`multiversion`]).
#[inline(always)]
pub(crate) fn map<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
    #[inline(always)]
    fn body<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
            body(x, o, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
            body(x, o, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(x, o, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(x, o, f) },
            Level::Baseline => {}
        }
    }
    body(x, o, f)
}

/// `sum f(x[i])` in f64 lanes, compiled for the CPU's widest vectors (generic, as [`map`]).
pub(crate) fn sum_by<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
            sum_of(x, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
            sum_of(x, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(x, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(x, f) },
            Level::Baseline => {}
        }
    }
    sum_of(x, f)
}

/// `o[i] = f(a[i], b[i])` over slices of one length, compiled for the CPU's widest vectors
/// (generic, as [`map`]).
#[inline(always)]
pub(crate) fn map2<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(a: &[A], b: &[B], o: &mut [O], f: &F) {
    #[inline(always)]
    fn body<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(a: &[A], b: &[B], o: &mut [O], f: &F) {
        for ((o, &u), &v) in o.iter_mut().zip(a).zip(b) {
            *o = f(u, v);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(
            a: &[A],
            b: &[B],
            o: &mut [O],
            f: &F,
        ) {
            body(a, b, o, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(
            a: &[A],
            b: &[B],
            o: &mut [O],
            f: &F,
        ) {
            body(a, b, o, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(a, b, o, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(a, b, o, f) },
            Level::Baseline => {}
        }
    }
    body(a, b, o, f)
}

/// `sum f(a[i], b[i])` in f64 lanes over slices of one length (generic, as [`map`]).
pub(crate) fn sum_zip<F: Fn(f32, f32) -> f64>(a: &[f32], b: &[f32], f: F) -> f64 {
    #[inline(always)]
    fn body<F: Fn(f32, f32) -> f64>(a: &[f32], b: &[f32], f: F) -> f64 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0f64; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail = ac.remainder().iter().zip(bc.remainder());
        let tail: f64 = tail.map(|(&u, &v)| f(u, v)).sum();
        for (u, v) in ac.zip(bc) {
            for l in 0..LANES {
                acc[l] += f(u[l], v[l]);
            }
        }
        acc.iter().sum::<f64>() + tail
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<F: Fn(f32, f32) -> f64>(a: &[f32], b: &[f32], f: F) -> f64 {
            body(a, b, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<F: Fn(f32, f32) -> f64>(a: &[f32], b: &[f32], f: F) -> f64 {
            body(a, b, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(a, b, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(a, b, f) },
            Level::Baseline => {}
        }
    }
    body(a, b, f)
}

multiversion! {
    /// `softmax` (or `log_softmax`) of each row of `len` elements of `x` into `o`.
    fn softmax_rows(x: &[f32], o: &mut [f32], len: usize, log: bool) = softmax_body
}

multiversion! {
    /// `softmax_backward` (`o = y (g - sum(g y))`) or, with `log`, `log_softmax_backward` (`o =
    /// g - e^y sum(g)`) of each row of `len` elements of `g` and `y` into `o`.
    fn softmax_grad_rows(g: &[f32], y: &[f32], o: &mut [f32], len: usize, log: bool) = softmax_grad_body
}

multiversion! {
    /// `layer_norm_backward` (or, with `rms`, `rms_norm_backward`) of each row of `len`
    /// elements of `x` and `dy` into `dx`, adding each row's weight gradient terms (`dy xhat`)
    /// into `pw` and, for layer_norm, its bias gradient terms (`dy`) into `pb` (f32, `len`
    /// each), in the pass that writes dx.
    fn norm_grad_rows(
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        pw: &mut [f32],
        pb: &mut [f32],
        p: NormGrad
    ) = norm_grad_body
}

multiversion! {
    /// The softmax of a row of attention logits into `p`: the probabilities (the sum in
    /// f64), or 0 everywhere when every logit is -inf (a row that sees no key).
    fn probabilities(logits: &[f32], p: &mut [f32]) = probabilities_body
}

multiversion! {
    /// `layer_norm` or `rms_norm` of each row of `len` elements of `x` into `o`.
    fn norm_rows(x: &[f32], o: &mut [f32], len: usize, norm: Norm<'_>) = norm_body
}

/// The normalisation of [`norm_rows`]: `layer_norm` or `rms_norm`, and its optional affine
/// parameters (each `len` long) and epsilon.
#[derive(Clone, Copy)]
pub(crate) struct Norm<'a> {
    pub rms: bool,
    pub weight: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
    pub eps: f64,
}

multiversion! {
    /// `group_norm_backward` of one group: `x`, `dy` and `dx` hold its channels one after the
    /// other (`g.s` elements each); each channel's weight and bias gradient terms (`sum dy
    /// xhat`, `sum dy`) are added into `sums` (one `[weight, bias]` a channel).
    fn group_grad(x: &[f32], dy: &[f32], dx: &mut [f32], g: GroupGrad<'_>, sums: &mut [[f64; 2]]) = group_grad_body
}

/// The geometry of [`group_grad`]: each channel's weight (or none), the elements of a channel
/// and epsilon.
#[derive(Clone, Copy)]
pub(crate) struct GroupGrad<'a> {
    pub w: Option<&'a [f32]>,
    pub s: usize,
    pub eps: f64,
}

/// The rows of a normalisation gradient ([`norm_grad_rows`]): `len` elements a row, the
/// optional weight (`len` elements), `rms_norm` rather than `layer_norm`, and epsilon.
#[derive(Clone, Copy)]
pub(crate) struct NormGrad<'a> {
    pub w: Option<&'a [f32]>,
    pub len: usize,
    pub rms: bool,
    pub eps: f64,
}

/// Vectors of the row kernels' accumulators: four independent dependency chains.
const CHAINS: usize = 4;

/// Elements summed in f32 lanes before their sums join the f64 total: at most 16 additions
/// into one lane.
const BLOCK: usize = 16 * CHAINS * 16;

/// The largest element of `x` (NaN ignored, as `f64::max` does; `-inf` when empty).
#[inline(always)]
fn max_of<S: Isa>(s: S, x: &[f32]) -> f32 {
    let mut acc = [s.splat(f32::NEG_INFINITY); CHAINS];
    let chunks = x.chunks_exact(CHAINS * S::N);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, acc) in acc.iter_mut().enumerate() {
            // NaN in `x` is the first operand: ignored.
            *acc = s.max(s.load(&c[l * S::N..]), *acc);
        }
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc {
        let v = s.max_lane(a);
        m = if v > m { v } else { m };
    }
    for &v in tail {
        m = if v > m { v } else { m };
    }
    m
}

/// `o[i] = e^(x[i] - m)`, returning their sum: f32 lanes over blocks of [`BLOCK`] elements,
/// the blocks' sums added in f64.
#[inline(always)]
fn exp_into<S: Isa>(s: S, x: &[f32], o: &mut [f32], m: f32) -> f64 {
    let mut total = 0f64;
    let mv = s.splat(m);
    for (xb, ob) in x.chunks(BLOCK).zip(o.chunks_mut(BLOCK)) {
        let mut acc = [s.splat(0.0); CHAINS];
        let step = CHAINS * S::N;
        let (mut xc, mut oc) = (xb.chunks_exact(step), ob.chunks_exact_mut(step));
        for (c, y) in (&mut xc).zip(&mut oc) {
            for (l, a) in acc.iter_mut().enumerate() {
                let e = exp_v(s, s.sub(s.load(&c[l * S::N..]), mv));
                s.store(e, &mut y[l * S::N..]);
                *a = s.add(*a, e);
            }
        }
        let (mut xc, mut oc) = (
            xc.remainder().chunks_exact(S::N),
            oc.into_remainder().chunks_exact_mut(S::N),
        );
        for (c, y) in (&mut xc).zip(&mut oc) {
            let e = exp_v(s, s.sub(s.load(c), mv));
            s.store(e, y);
            acc[0] = s.add(acc[0], e);
        }
        let mut tail = 0f32;
        for (&v, y) in xc.remainder().iter().zip(oc.into_remainder()) {
            *y = exp_v(Scalar, v - m);
            tail += *y;
        }
        let mut block = 0f64;
        for a in acc {
            block += s.sum_f64(a);
        }
        total += block + tail as f64;
    }
    total
}

/// `sum f(x[i])` in f64 lanes.
#[inline(always)]
fn sum_of<T: Copy>(x: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| f(v)).sum::<f64>()
}

/// The terms of `M` sums taken in one pass by [`block_sums`]: the lanes of each from element
/// `i` added into `acc`, and element `i` alone added into `out`.
trait Terms<const M: usize> {
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; M]);
    fn one(&self, i: usize, out: &mut [f64; M]);
}

/// One sum of [`Terms`].
trait Term {
    fn add<S: Isa>(&self, s: S, i: usize, acc: S::V) -> S::V;
    fn one(&self, i: usize) -> f64;
}

impl<T: Term> Terms<1> for T {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; 1]) {
        acc[0] = Term::add(self, s, i, acc[0]);
    }
    #[inline(always)]
    fn one(&self, i: usize, out: &mut [f64; 1]) {
        out[0] += Term::one(self, i);
    }
}

/// The `M` sums of `t` over elements `0..len` in one pass: [`CHAINS`] vector accumulators per
/// sum in f32 over a block of [`BLOCK`] elements, the blocks added in f64.
#[inline(always)]
fn block_sums<S: Isa, const M: usize, T: Terms<M>>(s: S, len: usize, t: &T) -> [f64; M] {
    let mut total = [0f64; M];
    let step = CHAINS * S::N;
    for b0 in (0..len).step_by(BLOCK) {
        let b1 = (b0 + BLOCK).min(len);
        let whole = b0 + (b1 - b0) / step * step;
        let mut acc = [[s.splat(0.0); M]; CHAINS];
        for at in (b0..whole).step_by(step) {
            for (l, c) in acc.iter_mut().enumerate() {
                t.add(s, at + l * S::N, c);
            }
        }
        let mut block = [0f64; M];
        for i in whole..b1 {
            t.one(i, &mut block);
        }
        for c in acc {
            for (b, v) in block.iter_mut().zip(c) {
                *b += s.sum_f64(v);
            }
        }
        for (t, b) in total.iter_mut().zip(block) {
            *t += b;
        }
    }
    total
}

/// The sum of `t` over elements `0..len`, as [`block_sums`] takes it.
#[inline(always)]
fn block_sum<S: Isa, T: Term>(s: S, len: usize, t: &T) -> f64 {
    let [sum] = block_sums(s, len, t);
    sum
}

/// `dy[i] w[i]` (`dy[i]` without a weight), a vector from element `i`.
#[inline(always)]
fn weighted<S: Isa>(s: S, dy: &[f32], w: Option<&[f32]>, i: usize) -> S::V {
    let y = s.load(&dy[i..]);
    match w {
        Some(w) => s.mul(y, s.load(&w[i..])),
        None => y,
    }
}

/// `sum x^2` and `sum dy w x` over a row: rms_norm's gradient sums.
struct RmsSums<'a>(&'a [f32], &'a [f32], Option<&'a [f32]>);

impl Terms<2> for RmsSums<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; 2]) {
        let x = s.load(&self.0[i..]);
        acc[0] = s.fma(x, x, acc[0]);
        acc[1] = s.fma(weighted(s, self.1, self.2, i), x, acc[1]);
    }
    #[inline(always)]
    fn one(&self, i: usize, out: &mut [f64; 2]) {
        let x = self.0[i];
        let d = self.2.map_or(self.1[i], |w| self.1[i] * w[i]);
        out[0] += f64::from(x * x);
        out[1] += f64::from(d * x);
    }
}

/// `sum (x - x0)` and `sum dy w` over a row: layer_norm's gradient's first pass, which reads
/// both rows at once (two streams from memory rather than one pass each).
struct LayerFirst<'a>(&'a [f32], f32, &'a [f32], Option<&'a [f32]>);

impl Terms<2> for LayerFirst<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; 2]) {
        acc[0] = s.add(acc[0], s.sub(s.load(&self.0[i..]), s.splat(self.1)));
        acc[1] = s.add(acc[1], weighted(s, self.2, self.3, i));
    }
    #[inline(always)]
    fn one(&self, i: usize, out: &mut [f64; 2]) {
        out[0] += f64::from(self.0[i] - self.1);
        out[1] += f64::from(self.3.map_or(self.2[i], |w| self.2[i] * w[i]));
    }
}

/// `sum dy w c` and `sum c^2` with `c = (x - mh) - ml` over a row: layer_norm's gradient sums
/// about its mean `mh + ml` (split into two f32).
struct LayerSums<'a>(&'a [f32], &'a [f32], Option<&'a [f32]>, f32, f32);

impl Terms<2> for LayerSums<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; 2]) {
        let x = s.load(&self.0[i..]);
        let c = s.sub(s.sub(x, s.splat(self.3)), s.splat(self.4));
        let d = weighted(s, self.1, self.2, i);
        acc[0] = s.fma(d, c, acc[0]);
        acc[1] = s.fma(c, c, acc[1]);
    }
    #[inline(always)]
    fn one(&self, i: usize, out: &mut [f64; 2]) {
        let c = (self.0[i] - self.3) - self.4;
        let d = self.2.map_or(self.1[i], |w| self.1[i] * w[i]);
        out[0] += f64::from(d * c);
        out[1] += f64::from(c * c);
    }
}

/// `sum dy` and `sum dy xhat`, `xhat = ((x - mh) - ml) r`, over a channel: group_norm's
/// gradient sums.
struct GroupSums<'a>(&'a [f32], &'a [f32], f32, f32, f32);

impl Terms<2> for GroupSums<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: &mut [S::V; 2]) {
        let y = s.load(&self.0[i..]);
        let c = s.sub(
            s.sub(s.load(&self.1[i..]), s.splat(self.2)),
            s.splat(self.3),
        );
        acc[0] = s.add(acc[0], y);
        acc[1] = s.fma(y, s.mul(c, s.splat(self.4)), acc[1]);
    }
    #[inline(always)]
    fn one(&self, i: usize, out: &mut [f64; 2]) {
        let y = self.0[i];
        out[0] += f64::from(y);
        out[1] += f64::from(y * (((self.1[i] - self.2) - self.3) * self.4));
    }
}

/// `sum a[i]`.
struct Plain<'a>(&'a [f32]);

impl Term for Plain<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: S::V) -> S::V {
        s.add(acc, s.load(&self.0[i..]))
    }
    #[inline(always)]
    fn one(&self, i: usize) -> f64 {
        f64::from(self.0[i])
    }
}

/// `sum a[i] b[i]`.
struct Dot<'a>(&'a [f32], &'a [f32]);

impl Term for Dot<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: S::V) -> S::V {
        s.fma(s.load(&self.0[i..]), s.load(&self.1[i..]), acc)
    }
    #[inline(always)]
    fn one(&self, i: usize) -> f64 {
        f64::from(self.0[i] * self.1[i])
    }
}

/// `sum (x[i] - x0)`.
struct Centred<'a>(&'a [f32], f32);

impl Term for Centred<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: S::V) -> S::V {
        s.add(acc, s.sub(s.load(&self.0[i..]), s.splat(self.1)))
    }
    #[inline(always)]
    fn one(&self, i: usize) -> f64 {
        f64::from(self.0[i] - self.1)
    }
}

/// `sum ((x[i] - mh) - ml)^2`: `mh + ml` a mean split into two f32, so that the differences
/// keep their digits when the spread is small next to the mean.
struct CentredSquares<'a>(&'a [f32], f32, f32);

impl Term for CentredSquares<'_> {
    #[inline(always)]
    fn add<S: Isa>(&self, s: S, i: usize, acc: S::V) -> S::V {
        let d = s.sub(
            s.sub(s.load(&self.0[i..]), s.splat(self.1)),
            s.splat(self.2),
        );
        s.fma(d, d, acc)
    }
    #[inline(always)]
    fn one(&self, i: usize) -> f64 {
        let d = (self.0[i] - self.1) - self.2;
        f64::from(d * d)
    }
}

#[inline(always)]
fn softmax_grad_body<S: Isa>(s: S, g: &[f32], y: &[f32], o: &mut [f32], len: usize, log: bool) {
    let rows = g.chunks_exact(len).zip(y.chunks_exact(len));
    for ((gr, yr), or) in rows.zip(o.chunks_exact_mut(len)) {
        let sum = if log {
            block_sum(s, len, &Plain(gr))
        } else {
            block_sum(s, len, &Dot(gr, yr))
        } as f32;
        let sv = s.splat(sum);
        let mut oc = or.chunks_exact_mut(S::N);
        let (mut gc, mut yc) = (gr.chunks_exact(S::N), yr.chunks_exact(S::N));
        for ((ov, gv), yv) in (&mut oc).zip(&mut gc).zip(&mut yc) {
            let (gv, yv) = (s.load(gv), s.load(yv));
            let v = if log {
                s.sub(gv, s.mul(exp_v(s, yv), sv))
            } else {
                s.mul(yv, s.sub(gv, sv))
            };
            s.store(v, ov);
        }
        let tail = oc.into_remainder().iter_mut();
        for ((ov, &gv), &yv) in tail.zip(gc.remainder()).zip(yc.remainder()) {
            *ov = if log {
                gv - exp_v(Scalar, yv) * sum
            } else {
                yv * (gv - sum)
            };
        }
    }
}

#[inline(always)]
fn norm_grad_body<S: Isa>(
    s: S,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    pw: &mut [f32],
    pb: &mut [f32],
    p: NormGrad,
) {
    if p.len == 0 {
        return;
    }
    let group = DX_ROWS * p.len;
    let groups = x.chunks(group).zip(dy.chunks(group));
    for ((xg, yg), dg) in groups.zip(dx.chunks_mut(group)) {
        let mut k = [RowTerms::default(); DX_ROWS];
        let rows = xg.chunks_exact(p.len).zip(yg.chunks_exact(p.len));
        for (k, (xr, yr)) in k.iter_mut().zip(rows) {
            *k = row_terms(s, xr, yr, p);
        }
        let k = &k[..xg.len() / p.len];
        let g = DxRows {
            x: xg,
            dy: yg,
            w: p.w,
            len: p.len,
            k,
        };
        if p.rms {
            dx_rows::<S, false>(s, &g, dg, (pw, pb));
        } else {
            dx_rows::<S, true>(s, &g, dg, (pw, pb));
        }
    }
}

/// Rows whose dx pass [`dx_rows`] runs together, a run of columns at a time across them, so
/// that their weight and bias terms are added into `pw` and `pb` in registers: one load and
/// store of `pw` and `pb` for these rows rather than for each (the rows, read once from memory
/// for their sums, are still in the cache).
const DX_ROWS: usize = 4;

/// One row's statistics and sums ([`norm_grad_rows`]): what its dx needs.
#[inline(always)]
fn row_terms<S: Isa>(s: S, xr: &[f32], yr: &[f32], p: NormGrad) -> RowTerms {
    let NormGrad { w, len, rms, eps } = p;
    let n = len as f64;
    if rms {
        // xhat = x r: sum dy w xhat is r sum dy w x, both sums in one pass.
        let [squares, sd] = block_sums(s, len, &RmsSums(xr, yr, w));
        let r = 1.0 / (squares / n + eps).sqrt();
        RowTerms {
            r: r as f32,
            mb: (sd * r / n) as f32,
            ..RowTerms::default()
        }
    } else {
        // The mean as the first element plus the mean of the differences from it (in f32
        // lanes per block, added in f64: the differences keep their digits when the spread
        // is small next to the mean), the squares about it from the mean split into two f32.
        // With it, sum dy w; then sum dy w (x - mean) and the squares about the mean.
        let x0 = xr[0];
        let [centred, sa] = block_sums(s, len, &LayerFirst(xr, x0, yr, w));
        let mean = f64::from(x0) + centred / n;
        let mh = mean as f32;
        let ml = (mean - mh as f64) as f32;
        let [sc, squares] = block_sums(s, len, &LayerSums(xr, yr, w, mh, ml));
        let r = 1.0 / (squares / n + eps).sqrt();
        RowTerms {
            mh,
            ml,
            r: r as f32,
            ma: (sa / n) as f32,
            mb: (sc * r / n) as f32,
        }
    }
}

/// What one row's dx needs: its mean split in two f32 (`mh + ml`), inverse deviation `r`, and
/// the two mean terms: `dx = r (dy w - ma - xhat mb)`, `xhat = ((x - mh) - ml) r`.
#[derive(Clone, Copy, Default)]
struct RowTerms {
    mh: f32,
    ml: f32,
    r: f32,
    ma: f32,
    mb: f32,
}

/// Consecutive rows of [`dx_rows`]: `k.len()` rows of `len` elements of x and dy, each row's
/// terms, and the weight.
struct DxRows<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    w: Option<&'a [f32]>,
    len: usize,
    k: &'a [RowTerms],
}

/// dx of the rows of `g` into `dx`, adding their weight terms (`dy xhat`) into `pw` and, with
/// `BIAS`, their bias terms (`dy`) into `pb`, row after row for each column (the order of one
/// row at a time): runs of `U` vectors of columns across all rows, then single vectors, then
/// single columns.
#[inline(always)]
fn dx_rows<S: Isa, const BIAS: bool>(
    s: S,
    g: &DxRows,
    dx: &mut [f32],
    (pw, pb): (&mut [f32], &mut [f32]),
) {
    let len = g.len;
    let (wide, one) = if S::N >= 16 {
        (len / (4 * S::N) * 4 * S::N, len / S::N * S::N)
    } else {
        (len / (2 * S::N) * 2 * S::N, len / S::N * S::N)
    };
    for j in (0..wide).step_by(if S::N >= 16 { 4 } else { 2 } * S::N) {
        if S::N >= 16 {
            dx_cols::<S, BIAS, 4>(s, g, dx, (pw, pb), j);
        } else {
            dx_cols::<S, BIAS, 2>(s, g, dx, (pw, pb), j);
        }
    }
    for j in (wide..one).step_by(S::N) {
        dx_cols::<S, BIAS, 1>(s, g, dx, (pw, pb), j);
    }
    for i in one..len {
        for (r, k) in g.k.iter().enumerate() {
            let at = r * len + i;
            let (xe, ye) = (g.x[at], g.dy[at]);
            let h = ((xe - k.mh) - k.ml) * k.r;
            let d = g.w.map_or(ye, |w| ye * w[i]);
            dx[at] = k.r * ((d - k.ma) - h * k.mb);
            pw[i] += ye * h;
            if BIAS {
                pb[i] += ye;
            }
        }
    }
}

/// [`dx_rows`] for the `U` vectors of columns from `j`, the sums held in registers.
#[inline(always)]
fn dx_cols<S: Isa, const BIAS: bool, const U: usize>(
    s: S,
    g: &DxRows,
    dx: &mut [f32],
    (pw, pb): (&mut [f32], &mut [f32]),
    j: usize,
) {
    let mut aw: [S::V; U] = std::array::from_fn(|u| s.load(&pw[j + u * S::N..]));
    let mut ab: [S::V; U] = std::array::from_fn(|u| {
        if BIAS {
            s.load(&pb[j + u * S::N..])
        } else {
            s.splat(0.0)
        }
    });
    let wv: Option<[S::V; U]> =
        g.w.map(|w| std::array::from_fn(|u| s.load(&w[j + u * S::N..])));
    for (r, k) in g.k.iter().enumerate() {
        let (mh, ml, rv) = (s.splat(k.mh), s.splat(k.ml), s.splat(k.r));
        let (ma, mb) = (s.splat(k.ma), s.splat(k.mb));
        let o = r * g.len + j;
        for u in 0..U {
            let at = o + u * S::N;
            let h = s.mul(s.sub(s.sub(s.load(&g.x[at..]), mh), ml), rv);
            let y = s.load(&g.dy[at..]);
            let d = match wv {
                Some(w) => s.mul(y, w[u]),
                None => y,
            };
            s.store(s.mul(rv, s.sub(s.sub(d, ma), s.mul(h, mb))), &mut dx[at..]);
            aw[u] = s.fma(y, h, aw[u]);
            if BIAS {
                ab[u] = s.add(ab[u], y);
            }
        }
    }
    for u in 0..U {
        s.store(aw[u], &mut pw[j + u * S::N..]);
        if BIAS {
            s.store(ab[u], &mut pb[j + u * S::N..]);
        }
    }
}

#[inline(always)]
fn group_grad_body<S: Isa>(
    s: S,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    g: GroupGrad,
    sums: &mut [[f64; 2]],
) {
    let len = x.len();
    if len == 0 || g.s == 0 {
        return;
    }
    let n = len as f64;
    // The statistics as row_terms computes them for layer_norm.
    let x0 = x[0];
    let mean = f64::from(x0) + block_sum(s, len, &Centred(x, x0)) / n;
    let mh = mean as f32;
    let ml = (mean - mh as f64) as f32;
    let squares = block_sum(s, len, &CentredSquares(x, mh, ml));
    let r = (1.0 / (squares / n + g.eps).sqrt()) as f32;
    // Per channel, sum dy and sum dy xhat: the bias and weight terms, and (times the channel's
    // weight, added in f64) the sums of dy w and dy w xhat that dx's mean terms need.
    let (mut sa, mut sb) = (0f64, 0f64);
    let channels = x.chunks_exact(g.s).zip(dy.chunks_exact(g.s));
    for (c, ((xc, yc), sum)) in channels.zip(sums.iter_mut()).enumerate() {
        let [sy, sh] = block_sums(s, g.s, &GroupSums(yc, xc, mh, ml, r));
        sum[0] += sh;
        sum[1] += sy;
        let wc = g.w.map_or(1.0, |w| f64::from(w[c]));
        sa += wc * sy;
        sb += wc * sh;
    }
    let (ma, mb) = ((sa / n) as f32, (sb / n) as f32);
    // dx = r (dy w - ma - xhat mb), channel by channel.
    let (mhv, mlv, rv) = (s.splat(mh), s.splat(ml), s.splat(r));
    let (mav, mbv) = (s.splat(ma), s.splat(mb));
    let channels = x.chunks_exact(g.s).zip(dy.chunks_exact(g.s));
    for (c, ((xc, yc), oc)) in channels.zip(dx.chunks_exact_mut(g.s)).enumerate() {
        let wc = g.w.map_or(1.0, |w| w[c]);
        let wv = s.splat(wc);
        let (mut xv, mut yv) = (xc.chunks_exact(S::N), yc.chunks_exact(S::N));
        let mut ov = oc.chunks_exact_mut(S::N);
        for ((xl, yl), ol) in (&mut xv).zip(&mut yv).zip(&mut ov) {
            let h = s.mul(s.sub(s.sub(s.load(xl), mhv), mlv), rv);
            let d = s.mul(s.load(yl), wv);
            s.store(s.mul(rv, s.sub(s.sub(d, mav), s.mul(h, mbv))), ol);
        }
        let tail = xv.remainder().iter().zip(yv.remainder());
        for ((&xe, &ye), o) in tail.zip(ov.into_remainder()) {
            let h = ((xe - mh) - ml) * r;
            *o = r * ((ye * wc - ma) - h * mb);
        }
    }
}

/// `o[i] = x[i] * k`.
#[inline(always)]
fn scale_into<S: Isa>(s: S, o: &mut [f32], k: f32) {
    let kv = s.splat(k);
    let mut oc = o.chunks_exact_mut(S::N);
    for y in &mut oc {
        s.store(s.mul(s.load(y), kv), y);
    }
    for y in oc.into_remainder() {
        *y *= k;
    }
}

#[inline(always)]
fn softmax_body<S: Isa>(s: S, x: &[f32], o: &mut [f32], len: usize, log: bool) {
    for (xr, or) in x.chunks_exact(len).zip(o.chunks_exact_mut(len)) {
        let m = max_of(s, xr);
        let sum = exp_into(s, xr, or, m);
        if log {
            // (x - m) - ln(sum), the reference's order: the row's maximum gives -ln(sum).
            let ls = sum.ln() as f32;
            for (y, &v) in or.iter_mut().zip(xr) {
                *y = (v - m) - ls;
            }
        } else {
            scale_into(s, or, (1.0 / sum) as f32);
        }
    }
}

#[inline(always)]
fn probabilities_body<S: Isa>(s: S, logits: &[f32], p: &mut [f32]) {
    let m = max_of(s, logits);
    if m == f32::NEG_INFINITY && logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        p.fill(0.0);
        return;
    }
    let inv = (1.0 / exp_into(s, logits, p, m)) as f32;
    scale_into(s, p, inv);
}

#[inline(always)]
fn norm_body<S: Isa>(_: S, x: &[f32], o: &mut [f32], len: usize, norm: Norm) {
    let n = len as f64;
    for (xr, or) in x.chunks_exact(len).zip(o.chunks_exact_mut(len)) {
        if norm.rms {
            let ms = sum_of(xr, |v| v as f64 * v as f64) / n;
            let r = (1.0 / (ms + norm.eps).sqrt()) as f32;
            match norm.weight {
                Some(w) => {
                    for ((y, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                        *y = v * r * w;
                    }
                }
                None => {
                    for (y, &v) in or.iter_mut().zip(xr) {
                        *y = v * r;
                    }
                }
            }
        } else {
            // Two passes in f64 (mean, then the squares about it), and the normalised values
            // in f64, rounded once: f32 would lose the digits of x - mean when the spread is
            // small next to the mean.
            let mean = sum_of(xr, |v| v as f64) / n;
            let var = sum_of(xr, |v| (v as f64 - mean) * (v as f64 - mean)) / n;
            let r = 1.0 / (var + norm.eps).sqrt();
            match (norm.weight, norm.bias) {
                (Some(w), Some(b)) => {
                    for (((y, &v), &w), &b) in or.iter_mut().zip(xr).zip(w).zip(b) {
                        *y = ((v as f64 - mean) * r * w as f64 + b as f64) as f32;
                    }
                }
                (Some(w), None) => {
                    for ((y, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                        *y = ((v as f64 - mean) * r * w as f64) as f32;
                    }
                }
                (None, Some(b)) => {
                    for ((y, &v), &b) in or.iter_mut().zip(xr).zip(b) {
                        *y = ((v as f64 - mean) * r + b as f64) as f32;
                    }
                }
                (None, None) => {
                    for (y, &v) in or.iter_mut().zip(xr) {
                        *y = ((v as f64 - mean) * r) as f32;
                    }
                }
            }
        }
    }
}

/// One output row of a pooling over f32 input rows of unit stride: the input rows its windows
/// read (those inside the input, in order), each with the plane index of its first element;
/// per output column, the taps inside the input as [`super::conv`]'s tap ranges give them
/// (`k0..k1`, tap `k` at column `base + k dilation`); the columns `lo..hi` whose every tap is
/// inside; the column stride and dilation.
pub(crate) struct PoolRow<'a> {
    pub rows: &'a [(&'a [f32], i32)],
    pub cols: &'a [(usize, usize, usize)],
    pub interior: (usize, usize),
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
}

impl PoolRow<'_> {
    /// The interior columns' tap `kx` of `row`: the elements `hi - lo` apart by the stride
    /// from the first one, which is returned with them.
    #[inline(always)]
    fn segment<'r>(&self, row: &'r [f32], kx: usize) -> (&'r [f32], usize) {
        let (lo, hi) = self.interior;
        let first = self.cols[lo].2.wrapping_add(kx * self.dilation);
        (&row[first..=first + (hi - lo - 1) * self.stride], first)
    }
}

/// One tap of a max pool's window for a run of columns: `v[j]` replaces `best[j]` (and its
/// index `base + j step` replaces `at[j]`) where it is larger, or NaN over a number; taps in
/// row-major order so give the first NaN, else the first of the largest. Branch-free, so that
/// it compiles to vector selects.
#[inline(always)]
fn max_tap<'v>(
    v: impl Iterator<Item = &'v f32>,
    best: &mut [f32],
    at: &mut [i32],
    (base, step): (i32, i32),
) {
    let mut i = base;
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
        let take = (v > *b) | (v.is_nan() & !b.is_nan());
        *b = if take { v } else { *b };
        *a = if take { i } else { *a };
        i += step;
    }
}

/// [`max_pool_row`] over the interior columns, with the column stride `ST` (0: `p.stride`).
#[inline(always)]
fn max_interior<const ST: usize>(p: &PoolRow, best: &mut [f32], at: &mut [i32]) {
    let st = if ST == 0 { p.stride } else { ST };
    let (lo, hi) = p.interior;
    let (best, at) = (&mut best[lo..hi], &mut at[lo..hi]);
    let mut first = true;
    for &(row, ri) in p.rows {
        for kx in 0..p.kernel {
            let (seg, c0) = p.segment(row, kx);
            let base = (ri + c0 as i32, st as i32);
            if first {
                // The first tap wins whatever it holds (-inf included).
                let taps = seg.iter().step_by(st).enumerate();
                for ((b, a), (j, &v)) in best.iter_mut().zip(at.iter_mut()).zip(taps) {
                    (*b, *a) = (v, base.0 + (j * st) as i32);
                }
                first = false;
                continue;
            }
            match ST {
                1 => max_tap(seg.iter(), best, at, base),
                2 => {
                    // Pairs, the last element alone (the segment ends on it).
                    let n = seg.len() / 2;
                    max_tap(
                        seg.chunks_exact(2).map(|c| &c[0]),
                        &mut best[..n],
                        &mut at[..n],
                        base,
                    );
                    let last = (base.0 + (n * 2) as i32, 2);
                    max_tap(seg[n * 2..].iter(), &mut best[n..], &mut at[n..], last);
                }
                _ => max_tap(seg.iter().step_by(st), best, at, base),
            }
        }
    }
}

#[inline(always)]
fn max_pool_row_body<S: Isa>(_: S, p: &PoolRow, best: &mut [f32], at: &mut [i32]) {
    let (lo, hi) = p.interior;
    let border = (0..lo).chain(hi..p.cols.len());
    for ox in border.chain(if p.rows.is_empty() { lo..hi } else { 0..0 }) {
        let (k0, k1, c0) = p.cols[ox];
        let (mut b, mut a) = (f32::NEG_INFINITY, -1i32);
        'window: for &(row, ri) in p.rows {
            for kx in k0..k1 {
                let ix = c0.wrapping_add(kx * p.dilation);
                let v = row[ix];
                if v.is_nan() {
                    (b, a) = (v, ri + ix as i32);
                    break 'window;
                }
                if v > b || a < 0 {
                    (b, a) = (v, ri + ix as i32);
                }
            }
        }
        (best[ox], at[ox]) = (b, a);
    }
    if lo < hi && !p.rows.is_empty() {
        match p.stride {
            1 => max_interior::<1>(p, best, at),
            2 => max_interior::<2>(p, best, at),
            _ => max_interior::<0>(p, best, at),
        }
    }
}

/// [`avg_pool_row`] over the interior columns, with the column stride `ST` (0: `p.stride`).
#[inline(always)]
fn sum_interior<const ST: usize>(p: &PoolRow, sum: &mut [f64]) {
    let st = if ST == 0 { p.stride } else { ST };
    let (lo, hi) = p.interior;
    let sum = &mut sum[lo..hi];
    for &(row, _) in p.rows {
        for kx in 0..p.kernel {
            let (seg, _) = p.segment(row, kx);
            for (j, s) in sum.iter_mut().enumerate() {
                *s += f64::from(seg[j * st]);
            }
        }
    }
}

#[inline(always)]
fn avg_pool_row_body<S: Isa>(_: S, p: &PoolRow, sum: &mut [f64]) {
    sum.fill(0.0);
    let (lo, hi) = p.interior;
    for ox in (0..lo).chain(hi..p.cols.len()) {
        let (k0, k1, c0) = p.cols[ox];
        for &(row, _) in p.rows {
            for kx in k0..k1 {
                sum[ox] += f64::from(row[c0.wrapping_add(kx * p.dilation)]);
            }
        }
    }
    if lo == hi {
        return;
    }
    match p.stride {
        1 => sum_interior::<1>(p, sum),
        2 => sum_interior::<2>(p, sum),
        _ => sum_interior::<0>(p, sum),
    }
}

multiversion! {
    /// One output row of a max pool: per column, the largest tap of its window in row-major
    /// order (the first NaN, else the first of the largest; `-inf` and -1 for a window with no
    /// tap inside) into `best`, and its plane index into `at`.
    fn max_pool_row(p: &PoolRow, best: &mut [f32], at: &mut [i32]) = max_pool_row_body
}

multiversion! {
    /// One output row of an average pool: per column, the sum in f64 of its window's taps
    /// inside the input, in row-major order, into `sum`.
    fn avg_pool_row(p: &PoolRow, sum: &mut [f64]) = avg_pool_row_body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 997th f32 bit pattern, both signs.
    fn sweep() -> Vec<f32> {
        (0..u32::MAX).step_by(997).map(f32::from_bits).collect()
    }

    /// The levels this CPU runs, widest first.
    fn levels() -> Vec<Level> {
        let mut l = vec![Level::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                l.insert(0, Level::Avx2);
            }
            if has!("avx512f") && has!("avx512vl") && has!("avx512dq") && has!("fma") {
                l.insert(0, Level::Avx512);
            }
        }
        l
    }

    /// Max and average pool rows against a plain row-major scan of each window, over values
    /// full of ties, NaN and infinities, for strides 1 to 3, dilations 1 and 2 and every
    /// padding up to half the kernel, at every level.
    #[test]
    fn pool_rows_match_a_window_scan() {
        let pick = [
            f32::NEG_INFINITY,
            0.0,
            1.0,
            f32::NAN,
            1.0,
            -0.0,
            f32::INFINITY,
            2.0,
        ];
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            pick[(seed >> 28) as usize % pick.len()]
        };
        let (iw, kh) = (23, 2);
        let rows: Vec<Vec<f32>> = (0..kh).map(|_| (0..iw).map(|_| next()).collect()).collect();
        let taps: Vec<(&[f32], i32)> = rows
            .iter()
            .enumerate()
            .map(|(r, v)| (&v[..], (r * iw) as i32))
            .collect();
        for level in levels() {
            for (kw, stride, dilation) in [(3, 1, 1), (3, 2, 1), (3, 3, 1), (2, 2, 2), (4, 1, 1)] {
                for padding in 0..=kw / 2 {
                    let ow = (iw + 2 * padding - dilation * (kw - 1) - 1) / stride + 1;
                    let cols =
                        super::super::conv::tap_ranges(ow, stride, padding, kw, dilation, iw);
                    let whole = |c: &(usize, usize, usize)| c.0 == 0 && c.1 == kw;
                    let lo = cols.iter().position(whole).unwrap_or(ow);
                    let hi = cols.iter().rposition(whole).map_or(lo, |p| p + 1);
                    let p = PoolRow {
                        rows: &taps,
                        cols: &cols,
                        interior: (lo, hi),
                        kernel: kw,
                        stride,
                        dilation,
                    };
                    let (mut best, mut at_, mut sum) =
                        (vec![0f32; ow], vec![0i32; ow], vec![0f64; ow]);
                    at(level, || {
                        max_pool_row(&p, &mut best, &mut at_);
                        avg_pool_row(&p, &mut sum);
                    });
                    for (ox, &(k0, k1, c0)) in cols.iter().enumerate() {
                        let (mut b, mut a, mut s) = (f32::NEG_INFINITY, -1i32, 0f64);
                        let mut nan = false;
                        for &(row, ri) in &taps {
                            for kx in k0..k1 {
                                let ix = c0.wrapping_add(kx * dilation);
                                let v = row[ix];
                                s += f64::from(v);
                                if !nan && (v.is_nan() || v > b || a < 0) {
                                    (b, a, nan) = (v, ri + ix as i32, v.is_nan());
                                }
                            }
                        }
                        let what =
                            format!("{level:?} k{kw} s{stride} d{dilation} p{padding} ox{ox}");
                        assert_eq!(at_[ox], a, "{what}: index");
                        assert_eq!(best[ox].to_bits(), b.to_bits(), "{what}: max");
                        // NaN from inf - inf has no defined sign.
                        let same =
                            sum[ox].to_bits() == s.to_bits() || sum[ox].is_nan() && s.is_nan();
                        assert!(same, "{what}: sum {} against {s}", sum[ox]);
                    }
                }
            }
        }
    }

    /// Runs `f` with the loops of this module compiled for `level`.
    fn at<R>(level: Level, f: impl FnOnce() -> R) -> R {
        FORCED.with(|c| c.set(Some(level)));
        let r = f();
        FORCED.with(|c| c.set(None));
        r
    }

    /// `got[i]` against `reference(x[i])` in f64 within the contract's elementwise tolerance
    /// (1e-5 absolute plus 1e-5 relative), NaN for NaN, infinities exact; and within a few
    /// ulp where the result is not tiny.
    fn compare(name: &str, x: &[f32], got: &[f32], reference: impl Fn(f64) -> f64) {
        compare_above(name, x, got, reference, 1e-30, 1e-6)
    }

    /// [`compare`], with the relative error within `bound` where the result's magnitude is
    /// above `floor`.
    fn compare_above(
        name: &str,
        x: &[f32],
        got: &[f32],
        reference: impl Fn(f64) -> f64,
        floor: f32,
        bound: f64,
    ) {
        let (mut worst, mut at_x) = (0f64, 0f32);
        for (&x, &got) in x.iter().zip(got) {
            let want = reference(x as f64) as f32;
            if want.is_nan() {
                assert!(got.is_nan(), "{name}({x:e}) = {got:e}, expected NaN");
                continue;
            }
            if want.is_infinite() {
                assert_eq!(got, want, "{name}({x:e})");
                continue;
            }
            let err = (got as f64 - want as f64).abs();
            assert!(
                err <= 1e-5 + 1e-5 * (want as f64).abs(),
                "{name}({x:e}) = {got:e}, expected {want:e}"
            );
            if want.abs() > floor && err / (want as f64).abs() > worst {
                (worst, at_x) = (err / (want as f64).abs(), x);
            }
        }
        // Far inside the tolerance: a few ulp.
        assert!(
            worst < bound,
            "{name}: worst relative error {worst:e} at {at_x:e}"
        );
    }

    /// The scalar function `f` over the sweep against `reference`.
    fn check(name: &str, f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64) {
        let x = sweep();
        let got: Vec<f32> = x.iter().map(|&v| f(v)).collect();
        compare(name, &x, &got, reference);
    }

    /// The f64 reference of each vector kernel.
    fn reference(op: Unary) -> fn(f64) -> f64 {
        match op {
            Unary::Exp => f64::exp,
            Unary::Tanh => f64::tanh,
            Unary::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
            Unary::Silu => |x| x / (1.0 + (-x).exp()),
            Unary::Erf => libm::erf,
            Unary::Gelu => |x| 0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2),
            Unary::GeluTanh => |x| {
                // 0.5 x (1 + tanh(u)) without its cancellation for negative u.
                let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                x / (1.0 + (-2.0 * u).exp())
            },
        }
    }

    /// Every vector kernel at every level this CPU runs, over the sweep (whole vectors and,
    /// from an odd length, a tail), and its scalar form, against f64.
    #[test]
    fn unary_kernels_match_f64() {
        let x = sweep();
        for &op in Unary::ALL {
            // gelu's negative side is e^(-x^2/2) (erf form) or e^(-2u) (tanh form) of a
            // rounded argument: its relative error grows with the argument's size in ulp (far
            // inside the absolute tolerance where that is large).
            let (floor, bound) = if matches!(op, Unary::Gelu | Unary::GeluTanh) {
                (1e-4, 2e-6)
            } else {
                (1e-30, 1e-6)
            };
            let compare = |name: &str, x: &[f32], got: &[f32], r| {
                compare_above(name, x, got, r, floor, bound)
            };
            let f = op.scalar();
            let scalar: Vec<f32> = x.iter().map(|&v| f(v)).collect();
            compare(&format!("{op:?} scalar"), &x, &scalar, reference(op));
            for level in levels() {
                let mut got = vec![0f32; x.len()];
                let n = x.len() - 13;
                at(level, || unary(op, &x[..n], &mut got[..n]));
                at(level, || unary(op, &x[n..], &mut got[n..]));
                compare(&format!("{op:?} at {level:?}"), &x, &got, reference(op));
            }
        }
    }

    /// Infinities, zeros of both signs, NaN, the ends of the polynomials' ranges.
    const EDGES: &[f32] = &[
        0.0,
        -0.0,
        0.5,
        -0.5,
        0.625,
        -0.625,
        0.4999,
        10.0,
        -10.0,
        88.72,
        -88.72,
        104.0,
        -104.0,
        -110.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        3.4,
        -3.4,
    ];

    /// Values at the edges of each kernel: infinities, zeros of both signs, NaN, the ends of
    /// the polynomials' ranges.
    #[test]
    fn elu_and_its_gradient_match_f64() {
        let mut x = sweep();
        x.extend(EDGES);
        let g: Vec<f32> = (0..x.len()).map(|i| [1.0, -0.5, 3.0][i % 3]).collect();
        for alpha in [1.0f32, 0.3] {
            let a = f64::from(alpha);
            let elu_ref = |v: f64| if v > 0.0 { v } else { a * v.exp_m1() };
            for level in levels() {
                let mut got = vec![0f32; x.len()];
                let n = x.len() - 13;
                at(level, || act(Act::Elu(alpha), &x[..n], &mut got[..n]));
                at(level, || act(Act::Elu(alpha), &x[n..], &mut got[n..]));
                compare_above(
                    &format!("elu {alpha} at {level:?}"),
                    &x,
                    &got,
                    elu_ref,
                    1e-30,
                    1e-6,
                );
                at(level, || {
                    act_grad(Act::Elu(alpha), &g[..n], &x[..n], &mut got[..n])
                });
                at(level, || {
                    act_grad(Act::Elu(alpha), &g[n..], &x[n..], &mut got[n..])
                });
                for ((&v, &gv), &d) in x.iter().zip(&g).zip(&got) {
                    // The reference's branch: x <= 0 (NaN takes the other one).
                    let (v, gv) = (f64::from(v), f64::from(gv));
                    let want = (if v <= 0.0 { gv * a * v.exp() } else { gv }) as f32;
                    let ok = (want.is_nan() && d.is_nan())
                        || want == d
                        || f64::from((d - want).abs()) <= 4e-7 * f64::from(want.abs()) + 1e-37;
                    assert!(
                        ok,
                        "elu_grad {alpha}({gv:e}, {v:e}) at {level:?}: {d:e}, expected {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn softplus_and_its_gradient_match_f64() {
        let mut x = sweep();
        x.extend(EDGES);
        let g: Vec<f32> = (0..x.len()).map(|i| [1.0, -0.5, 3.0][i % 3]).collect();
        for (beta, threshold) in [(1.0f32, 20.0f32), (2.5, 3.0), (-0.5, 20.0)] {
            let (b, th) = (f64::from(beta), f64::from(threshold));
            // t in f32, as the kernels compute it.
            let t_of = |v: f64| f64::from(v as f32 * beta);
            let reference = |v: f64| {
                let t = t_of(v);
                if t > th {
                    v
                } else {
                    (t.max(0.0) + (-t.abs()).exp().ln_1p()) / b
                }
            };
            let a = Act::Softplus(beta, threshold);
            for level in levels() {
                let mut got = vec![0f32; x.len()];
                let n = x.len() - 13;
                at(level, || act(a, &x[..n], &mut got[..n]));
                at(level, || act(a, &x[n..], &mut got[n..]));
                let name = format!("softplus {beta} {threshold} at {level:?}");
                compare_above(&name, &x, &got, reference, 1e-30, 2e-6);
                at(level, || act_grad(a, &g[..n], &x[..n], &mut got[..n]));
                at(level, || act_grad(a, &g[n..], &x[n..], &mut got[n..]));
                for ((&v, &gv), &d) in x.iter().zip(&g).zip(&got) {
                    let (t, gv) = (t_of(f64::from(v)), f64::from(gv));
                    let want = (if t > th { gv } else { gv / (1.0 + (-t).exp()) }) as f32;
                    let ok = (want.is_nan() && d.is_nan())
                        || want == d
                        || f64::from((d - want).abs()) <= 1e-6 * f64::from(want.abs()) + 1e-37;
                    assert!(
                        ok,
                        "{name} gradient ({gv:e}, {v:e}): {d:e}, expected {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn unary_kernels_edges() {
        let x = EDGES.to_vec();
        for &op in Unary::ALL {
            for level in levels() {
                let mut got = vec![0f32; x.len()];
                at(level, || unary(op, &x, &mut got));
                compare(&format!("{op:?} at {level:?}"), &x, &got, reference(op));
                let f = op.scalar();
                for (&v, &g) in x.iter().zip(&got) {
                    let s = f(v);
                    assert!(
                        s == g
                            || (s.is_nan() && g.is_nan())
                            || (s - g).abs() <= 4e-7 * s.abs() + 1e-35,
                        "{op:?}({v:e}) at {level:?}: {g:e}, scalar {s:e}"
                    );
                }
            }
        }
    }

    /// Each 16-bit result (of the inputs `h` and `b`) is the f32 kernel's result on the
    /// widened value (`fh`, `fb`), rounded with `half` (NaN for NaN).
    fn rounded_once(
        name: &str,
        (h, gh, fh): (&[f16], &[f16], &[f32]),
        (b, gb, fb): (&[bf16], &[bf16], &[f32]),
    ) {
        for i in 0..h.len() {
            let (want, got) = (f16::from_f32(fh[i]), gh[i]);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{name}: f16 {}: {got} != {want}",
                h[i]
            );
        }
        for i in 0..b.len() {
            let (want, got) = (bf16::from_f32(fb[i]), gb[i]);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{name}: bf16 {}: {got} != {want}",
                b[i]
            );
        }
    }

    /// The 16-bit forms at every level: every f16 and every bf16 bit pattern (whole vectors and
    /// a tail) gives exactly the f32 kernel's result on the widened value, rounded with
    /// `half` (NaN for NaN).
    #[test]
    fn unary_kernels_16_bit_round_once() {
        let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        let n = h.len() - 5;
        for &op in Unary::ALL {
            for level in levels() {
                let (mut gh, mut gb) = (vec![f16::ZERO; h.len()], vec![bf16::ZERO; b.len()]);
                at(level, || {
                    unary_16(op, &h[..n], &mut gh[..n]);
                    unary_16(op, &h[n..], &mut gh[n..]);
                    unary_b16(op, &b[..n], &mut gb[..n]);
                    unary_b16(op, &b[n..], &mut gb[n..]);
                });
                let wh: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
                let wb: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
                let (mut fh, mut fb) = (vec![0f32; h.len()], vec![0f32; b.len()]);
                at(level, || {
                    unary(op, &wh, &mut fh);
                    unary(op, &wb, &mut fb);
                });
                let name = format!("{op:?} at {level:?}");
                rounded_once(&name, (&h, &gh, &fh), (&b, &gb, &fb));
            }
        }
    }

    /// The f64 derivative of each gradient kernel's activation (limits at the infinities).
    fn derivative(op: Grad) -> fn(f64) -> f64 {
        // e / (1 + e)^2 with e = e^-|x|: sigmoid'(x).
        fn bell(x: f64) -> f64 {
            let e = (-x.abs()).exp();
            e / ((1.0 + e) * (1.0 + e))
        }
        fn limit(x: f64, d: f64) -> f64 {
            if d == 0.0 {
                0.0
            } else {
                x * d
            }
        }
        match op {
            Grad::Sigmoid => bell,
            Grad::Tanh => |x| 4.0 * bell(2.0 * x),
            Grad::Silu => |x| {
                let s = 1.0 / (1.0 + (-x).exp());
                s + limit(x, bell(x))
            },
            Grad::Gelu => |x| {
                let cdf = 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + limit(x, pdf)
            },
            Grad::GeluTanh => |x| {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                let u = k * (x + 0.044715 * x * x * x);
                let du = k * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + u.tanh()) + limit(0.5 * x * du, 4.0 * bell(2.0 * u))
            },
        }
    }

    /// Every gradient kernel at every level this CPU runs, over the sweep and the edges (whole
    /// vectors and a tail), against `g d(x)` in f64 within the contract's elementwise tolerance
    /// and a few ulp where the result is not tiny (of `|g| / 20` next to a root); its scalar form and its 16-bit forms (every
    /// f16 and bf16 pattern of x) as the f32 kernel, rounded once.
    #[test]
    fn grad_kernels_match_f64() {
        let mut x = sweep();
        x.extend(EDGES);
        let g: Vec<f32> = (0..x.len()).map(|i| [1.0, -0.5, 3.0][i % 3]).collect();
        for &op in Grad::ALL {
            let d = derivative(op);
            let check = |name: &str, got: &[f32]| {
                let mut worst = (0f64, 0f32);
                for ((&x, &g), &got) in x.iter().zip(&g).zip(got) {
                    let want = (g as f64 * d(x as f64)) as f32;
                    if want.is_nan() {
                        assert!(got.is_nan(), "{name}({x:e}) = {got:e}, expected NaN");
                        continue;
                    }
                    let err = (got as f64 - want as f64).abs();
                    assert!(
                        err <= 1e-5 + 1e-5 * (want as f64).abs(),
                        "{name}({x:e}) = {got:e}, expected {want:e}"
                    );
                    // Relative to the result, or near a root of silu' and gelu' (where two
                    // terms of size |g| / 4 cancel) to a twentieth of |g|.
                    let scale = (want as f64).abs().max(g.abs() as f64 / 20.0);
                    if want.abs() > 1e-4 && err / scale > worst.0 {
                        worst = (err / scale, x);
                    }
                }
                assert!(worst.0 < 4e-6, "{name}: worst relative error {worst:?}");
            };
            let f = op.scalar();
            let scalar: Vec<f32> = x.iter().zip(&g).map(|(&x, &g)| f(g, x)).collect();
            check(&format!("{op:?} scalar"), &scalar);
            for level in levels() {
                let mut got = vec![0f32; x.len()];
                let n = x.len() - 13;
                at(level, || {
                    grad(op, &g[..n], &x[..n], &mut got[..n]);
                    grad(op, &g[n..], &x[n..], &mut got[n..]);
                });
                check(&format!("{op:?} at {level:?}"), &got);
                let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
                let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
                let gh = vec![f16::from_f32(-0.5); h.len()];
                let gb = vec![bf16::from_f32(-0.5); b.len()];
                let (mut oh, mut ob) = (vec![f16::ZERO; h.len()], vec![bf16::ZERO; b.len()]);
                let wh: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
                let wb: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
                let (mut fh, mut fb) = (vec![0f32; h.len()], vec![0f32; b.len()]);
                let half = vec![-0.5f32; h.len()];
                at(level, || {
                    grad_16(op, &gh, &h, &mut oh);
                    grad_b16(op, &gb, &b, &mut ob);
                    grad(op, &half, &wh, &mut fh);
                    grad(op, &half, &wb, &mut fb);
                });
                let name = format!("{op:?} at {level:?}");
                rounded_once(&name, (&h, &oh, &fh), (&b, &ob, &fb));
            }
        }
    }

    /// The row kernels give the same values at every level.
    #[test]
    fn rows_agree_across_levels() {
        let len = 1000 + 37;
        let x: Vec<f32> = (0..len * 3)
            .map(|i| ((i * 7919) % 1000) as f32 / 25.0 - 20.0)
            .collect();
        let mut want = vec![0f32; x.len()];
        at(Level::Baseline, || softmax_rows(&x, &mut want, len, false));
        for level in levels() {
            let mut got = vec![0f32; x.len()];
            at(level, || softmax_rows(&x, &mut got, len, false));
            for (&w, &g) in want.iter().zip(&got) {
                assert!(
                    (w - g).abs() <= 1e-6 * w.abs() + 1e-30,
                    "{level:?}: {g:e} vs {w:e}"
                );
            }
        }
    }

    /// norm_grad_rows at every level against f64: rows in groups of [`DX_ROWS`] and a short
    /// last group, columns in wide runs, single vectors and single columns.
    #[test]
    fn norm_grad_rows_match_f64() {
        let (len, rows) = (4 * 16 * 2 + 16 + 5, 2 * DX_ROWS + 3);
        let x: Vec<f32> = (0..len * rows)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0 + (i / len) as f32)
            .collect();
        let dy: Vec<f32> = (0..len * rows)
            .map(|i| ((i * 104_729) % 997) as f32 / 300.0 - 1.5)
            .collect();
        let w: Vec<f32> = (0..len).map(|i| 0.5 + (i % 7) as f32 / 4.0).collect();
        let close = |what: &str, got: f32, want: f64| {
            assert!(
                (got as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs(),
                "{what}: {got:e} vs {want:e}"
            );
        };
        for rms in [false, true] {
            for weight in [None, Some(&w[..])] {
                // The f64 reference: dx, and the weight and bias terms summed over the rows.
                let (mut dx, mut sw, mut sb) =
                    (vec![0f64; x.len()], vec![0f64; len], vec![0f64; len]);
                let n = len as f64;
                for a in 0..rows {
                    let xr: Vec<f64> = x[a * len..][..len].iter().map(|&v| v as f64).collect();
                    let yr = &dy[a * len..][..len];
                    let mean = if rms { 0.0 } else { xr.iter().sum::<f64>() / n };
                    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                    let r = 1.0 / (var + 1e-5).sqrt();
                    let d = |i: usize| yr[i] as f64 * weight.map_or(1.0, |w| w[i] as f64);
                    let h = |i: usize| (xr[i] - mean) * r;
                    let ma = if rms {
                        0.0
                    } else {
                        (0..len).map(d).sum::<f64>() / n
                    };
                    let mb = (0..len).map(|i| d(i) * h(i)).sum::<f64>() / n;
                    for i in 0..len {
                        dx[a * len + i] = r * (d(i) - ma - h(i) * mb);
                        sw[i] += yr[i] as f64 * h(i);
                        sb[i] += yr[i] as f64;
                    }
                }
                for level in levels() {
                    let (mut got, mut pw, mut pb) =
                        (vec![0f32; x.len()], vec![0f32; len], vec![0f32; len]);
                    let p = NormGrad {
                        w: weight,
                        len,
                        rms,
                        eps: 1e-5,
                    };
                    at(level, || {
                        norm_grad_rows(&x, &dy, &mut got, &mut pw, &mut pb, p)
                    });
                    let what = format!("{level:?} rms {rms} weight {}", weight.is_some());
                    for (i, (&g, &want)) in got.iter().zip(&dx).enumerate() {
                        close(&format!("{what} dx[{i}]"), g, want);
                    }
                    for i in 0..len {
                        close(&format!("{what} dweight[{i}]"), pw[i], sw[i]);
                        if !rms {
                            close(&format!("{what} dbias[{i}]"), pb[i], sb[i]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exp_matches_f64() {
        check("exp", exp, f64::exp);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(88.8), f32::INFINITY);
        assert!(exp(88.72).is_finite());
        assert!((exp(88.72) as f64 / (88.72f32 as f64).exp() - 1.0).abs() < 1e-6);
        // A subnormal result is rounded once: within one unit of the least subnormal.
        let want = (-100f64).exp() as f32;
        assert!(
            (exp(-100.0) - want).abs() <= f32::from_bits(1),
            "{:e}",
            exp(-100.0)
        );
    }

    #[test]
    fn tanh_matches_f64() {
        check("tanh", tanh, f64::tanh);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn sigmoid_matches_f64() {
        check("sigmoid", sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
    }

    #[test]
    fn erf_matches_f64() {
        // f64 erf from libm, the reference's own.
        check("erf", erf, libm::erf);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(-1e30), -1.0);
    }

    #[test]
    fn rows_match_f64() {
        let len = 37;
        let x: Vec<f32> = (0..len * 5)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0 + 1000.0 * (i / len) as f32)
            .collect();
        let mut o = vec![0f32; x.len()];
        for log in [false, true] {
            softmax_rows(&x, &mut o, len, log);
            for (xr, or) in x.chunks(len).zip(o.chunks(len)) {
                let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                for (&v, &y) in xr.iter().zip(or) {
                    let want = if log {
                        v as f64 - m - s.ln()
                    } else {
                        (v as f64 - m).exp() / s
                    };
                    assert!((y as f64 - want).abs() <= 1e-6 + 1e-5 * want.abs());
                }
            }
        }
        let w: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 / 10.0).collect();
        let b: Vec<f32> = (0..len).map(|i| i as f32 - 3.0).collect();
        for rms in [false, true] {
            let norm = Norm {
                rms,
                weight: Some(&w),
                bias: (!rms).then_some(&b[..]),
                eps: 1e-5,
            };
            norm_rows(&x, &mut o, len, norm);
            for (xr, or) in x.chunks(len).zip(o.chunks(len)) {
                let n = len as f64;
                let mean = if rms {
                    0.0
                } else {
                    xr.iter().map(|&v| v as f64).sum::<f64>() / n
                };
                let var = xr
                    .iter()
                    .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                    .sum::<f64>()
                    / n;
                for (j, (&v, &y)) in xr.iter().zip(or).enumerate() {
                    let mut want = (v as f64 - mean) / (var + 1e-5).sqrt() * w[j] as f64;
                    if !rms {
                        want += b[j] as f64;
                    }
                    assert!((y as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs());
                }
            }
        }
    }
}
