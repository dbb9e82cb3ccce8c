//! Inference through Burn on anyaccel: a transformer block (embedding, rms norm, rotary
//! position embedding, grouped attention with a causal mask, a SwiGLU feed-forward, the output
//! projection) written once against Burn's backend traits, on every device against Burn's own
//! CPU backend with the same weights.

use anyaccel_burn::Anyaccel;

use burn_backend::tensor::{FloatTensor, IntTensor};
use burn_backend::{Backend, Scalar, Shape, Slice, TensorData, TensorMetadata};
use burn_flex::Flex;
use burn_std::AttentionModuleOptions;

mod common;

/// Weights uniform in +-1/sqrt(rows).
fn weights(rng: &mut common::Rng, shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    let bound = 1.0 / (shape[0] as f32).sqrt();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.unit() as f32 * 2.0 - 1.0) * bound)
        .collect();
    TensorData::new(v, shape.to_vec())
}

const VOCAB: usize = 50;
const DIM: usize = 32;
const HEADS: usize = 4;
const HEAD: usize = DIM / HEADS;
const SEQ: usize = 9;
const BATCH: usize = 2;
const HIDDEN: usize = 48;

fn rms_norm<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    let ms = B::float_mean_dim(B::float_mul(x.clone(), x.clone()), last);
    let inv = B::float_recip(B::float_sqrt(B::float_add_scalar(ms, Scalar::Float(1e-6))));
    B::float_mul(B::float_mul(x, inv), w)
}

/// Rotary embedding on [B, H, S, D] (pairs (i, i + D/2)).
fn rope<B: Backend>(x: FloatTensor<B>, cos: FloatTensor<B>, sin: FloatTensor<B>) -> FloatTensor<B> {
    let h = HEAD / 2;
    let full = Slice::new(0, None, 1);
    let x1 = B::float_slice(
        x.clone(),
        &[full, full, full, Slice::new(0, Some(h as isize), 1)],
    );
    let x2 = B::float_slice(x, &[full, full, full, Slice::new(h as isize, None, 1)]);
    let r1 = B::float_sub(
        B::float_mul(x1.clone(), cos.clone()),
        B::float_mul(x2.clone(), sin.clone()),
    );
    let r2 = B::float_add(B::float_mul(x2, cos), B::float_mul(x1, sin));
    B::float_cat(vec![r1, r2], 3)
}

fn heads<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    // [B, S, H*D] -> [B, H, S, D]
    B::float_swap_dims(
        B::float_reshape(x, Shape::from(vec![BATCH, SEQ, HEADS, HEAD])),
        1,
        2,
    )
}

fn block<B: Backend>(
    w: &[FloatTensor<B>],
    tokens: IntTensor<B>,
    device: &B::Device,
) -> FloatTensor<B> {
    let x = B::embedding(w[0].clone(), tokens);
    let h = rms_norm::<B>(x.clone(), w[1].clone());
    let (q, k, v) = (
        heads::<B>(B::float_matmul(h.clone(), w[2].clone())),
        heads::<B>(B::float_matmul(h.clone(), w[3].clone())),
        heads::<B>(B::float_matmul(h, w[4].clone())),
    );
    // Rotary angles pos * 10000^(-i / (D/2)).
    let mut ang = Vec::new();
    for p in 0..SEQ {
        for i in 0..HEAD / 2 {
            ang.push(p as f32 * 10000f32.powf(-(i as f32) / (HEAD / 2) as f32));
        }
    }
    let ang = B::float_from_data(TensorData::new(ang, [1, 1, SEQ, HEAD / 2]), device);
    let (cos, sin) = (B::float_cos(ang.clone()), B::float_sin(ang));
    let q = rope::<B>(q, cos.clone(), sin.clone());
    let k = rope::<B>(k, cos, sin);
    let o = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: true,
    };
    let a = B::attention(q, k, v, None, None, o);
    let a = B::float_reshape(
        B::float_swap_dims(a, 1, 2),
        Shape::from(vec![BATCH, SEQ, DIM]),
    );
    let x = B::float_add(x, B::float_matmul(a, w[5].clone()));
    let h = rms_norm::<B>(x.clone(), w[6].clone());
    let gate = B::float_mul(
        B::float_matmul(h.clone(), w[7].clone()),
        B::sigmoid(B::float_matmul(h.clone(), w[7].clone())),
    );
    let up = B::float_matmul(h, w[8].clone());
    let x = B::float_add(x, B::float_matmul(B::float_mul(gate, up), w[9].clone()));
    let logits = B::float_matmul(rms_norm::<B>(x, w[10].clone()), w[11].clone());
    B::log_softmax(logits, 2)
}

fn run<B: Backend>(device: &B::Device) -> Vec<f32> {
    let mut rng = common::Rng(11);
    let shapes: [&[usize]; 12] = [
        &[VOCAB, DIM],
        &[DIM],
        &[DIM, DIM],
        &[DIM, DIM],
        &[DIM, DIM],
        &[DIM, DIM],
        &[DIM],
        &[DIM, HIDDEN],
        &[DIM, HIDDEN],
        &[HIDDEN, DIM],
        &[DIM],
        &[DIM, VOCAB],
    ];
    let w: Vec<FloatTensor<B>> = shapes
        .iter()
        .map(|s| B::float_from_data(weights(&mut rng, s), device))
        .collect();
    let tokens: Vec<i64> = (0..BATCH * SEQ)
        .map(|_| (rng.next() % VOCAB as u64) as i64)
        .collect();
    let tokens = B::int_from_data(TensorData::new(tokens, [BATCH, SEQ]), device);
    let out = block::<B>(&w, tokens, device);
    burn_backend::read_sync(B::float_into_data(out))
        .expect("logits")
        .iter::<f32>()
        .collect()
}

#[test]
fn transformer_block_matches_burn_flex_on_every_device() {
    let reference = run::<Flex>(&Default::default());
    assert_eq!(reference.len(), BATCH * SEQ * VOCAB);
    for (id, device) in common::devices() {
        let ours = run::<Anyaccel>(&device);
        for (k, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                "{id}: log-prob {k}: {a}, burn-flex {b}"
            );
        }
    }
}
