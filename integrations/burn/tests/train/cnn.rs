//! A small CNN trained with Burn's autodiff (`Autodiff<B>`) and Adam, written once against
//! Burn's backend traits so the same code trains on anyaccel and on Burn's own CPU backend:
//! conv2d, batch norm (training statistics), relu, max pool, conv2d, group norm, relu, adaptive
//! average pool, linear, cross-entropy, on a synthetic image set.

use burn_backend::ops::FloatTensorOps;
use burn_backend::tensor::{FloatTensor, IntTensor};
use burn_backend::{AutodiffBackend, Backend, Scalar, Shape, TensorData};
use burn_std::ops::ConvOptions;
use burn_std::IntDType;

/// Classes, image side and batch size of the synthetic set.
pub const CLASSES: usize = 4;
pub const SIDE: usize = 12;
pub const BATCH: usize = 16;
const C1: usize = 8;
const C2: usize = 16;
const GROUPS: usize = 4;
const EPS: f64 = 1e-5;

use super::common::Rng;

/// A normal draw as f32.
fn normal(rng: &mut Rng) -> f32 {
    rng.normal() as f32
}

/// A uniform draw in [0, 1) as f32.
fn unit(rng: &mut Rng) -> f32 {
    rng.unit() as f32
}

/// One batch: images [BATCH, 1, SIDE, SIDE] whose bright square sits in the quadrant of the
/// class, plus noise, and the classes as i64.
pub fn batch(rng: &mut Rng) -> (TensorData, TensorData) {
    let mut x = vec![0f32; BATCH * SIDE * SIDE];
    let mut y = vec![0i64; BATCH];
    let h = SIDE / 2;
    for n in 0..BATCH {
        let c = (rng.next() % CLASSES as u64) as usize;
        y[n] = c as i64;
        let (oy, ox) = ((c / 2) * h, (c % 2) * h);
        for i in 0..SIDE {
            for j in 0..SIDE {
                let inside = (oy + 1..oy + h - 1).contains(&i) && (ox + 1..ox + h - 1).contains(&j);
                x[(n * SIDE + i) * SIDE + j] = if inside { 1.0 } else { 0.0 } + 0.3 * normal(rng);
            }
        }
    }
    (
        TensorData::new(x, [BATCH, 1, SIDE, SIDE]),
        TensorData::new(y, [BATCH]),
    )
}

/// The parameters (on the inner backend between steps) and Adam's moments.
pub struct Cnn<B: AutodiffBackend> {
    params: Vec<FloatTensor<B::InnerBackend>>,
    m: Vec<FloatTensor<B::InnerBackend>>,
    v: Vec<FloatTensor<B::InnerBackend>>,
    step: i32,
}

fn shapes() -> Vec<Vec<usize>> {
    vec![
        vec![C1, 1, 3, 3],  // conv1 weight
        vec![C1],           // conv1 bias
        vec![C1],           // batch norm gamma
        vec![C1],           // batch norm beta
        vec![C2, C1, 3, 3], // conv2 weight
        vec![C2],           // conv2 bias
        vec![C2],           // group norm gamma
        vec![C2],           // group norm beta
        vec![C2, CLASSES],  // linear weight
        vec![CLASSES],      // linear bias
    ]
}

impl<B: AutodiffBackend> Cnn<B> {
    /// Weights uniform in +-1/sqrt(fan in) (norm scales 1, shifts 0) from `seed`.
    pub fn new(device: &B::Device, seed: u64) -> Cnn<B> {
        let mut rng = Rng(seed);
        let mut params = Vec::new();
        for (k, s) in shapes().into_iter().enumerate() {
            let n: usize = s.iter().product();
            let values: Vec<f32> = match k {
                2 | 6 => vec![1.0; n],
                3 | 7 => vec![0.0; n],
                _ => {
                    let fan_in: usize = if s.len() > 1 {
                        s[1..].iter().product()
                    } else {
                        s[0]
                    };
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..n)
                        .map(|_| (2.0 * unit(&mut rng) - 1.0) * bound)
                        .collect()
                }
            };
            params.push(B::InnerBackend::float_from_data(
                TensorData::new(values, s),
                device,
            ));
        }
        let zeros = |p: &FloatTensor<B::InnerBackend>| {
            use burn_backend::TensorMetadata;
            B::InnerBackend::float_zeros(p.shape(), device, burn_std::FloatDType::F32)
        };
        let m = params.iter().map(zeros).collect();
        let v = params.iter().map(zeros).collect();
        Cnn {
            params,
            m,
            v,
            step: 0,
        }
    }

    /// The mean cross-entropy of one batch, and the gradients applied by Adam (lr `lr`).
    pub fn train_step(&mut self, x: TensorData, y: TensorData, lr: f64, device: &B::Device) -> f32 {
        let p: Vec<FloatTensor<B>> = self
            .params
            .iter()
            .map(|t| B::float_set_require_grad(B::from_inner(t.clone()), true))
            .collect();
        let x = B::float_from_data(x, device);
        let y = B::int_from_data(y, device);
        let loss = forward::<B>(&p, x, y);
        let value = {
            let d = burn_backend::read_sync(B::float_into_data(B::float_detach(loss.clone())))
                .expect("loss");
            let v: f32 = d.iter::<f32>().next().expect("one loss");
            v
        };
        let grads = B::backward(loss);
        self.step += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        for (k, param) in p.iter().enumerate() {
            let g = B::grad(param, &grads).expect("every parameter has a gradient");
            let m = I::<B>::float_add(
                I::<B>::float_mul_scalar(self.m[k].clone(), Scalar::Float(b1)),
                I::<B>::float_mul_scalar(g.clone(), Scalar::Float(1.0 - b1)),
            );
            let v = I::<B>::float_add(
                I::<B>::float_mul_scalar(self.v[k].clone(), Scalar::Float(b2)),
                I::<B>::float_mul_scalar(I::<B>::float_mul(g.clone(), g), Scalar::Float(1.0 - b2)),
            );
            let mhat = I::<B>::float_div_scalar(m.clone(), Scalar::Float(1.0 - b1.powi(self.step)));
            let vhat = I::<B>::float_div_scalar(v.clone(), Scalar::Float(1.0 - b2.powi(self.step)));
            let update = I::<B>::float_div(
                mhat,
                I::<B>::float_add_scalar(I::<B>::float_sqrt(vhat), Scalar::Float(eps)),
            );
            self.params[k] = I::<B>::float_sub(
                self.params[k].clone(),
                I::<B>::float_mul_scalar(update, Scalar::Float(lr)),
            );
            self.m[k] = m;
            self.v[k] = v;
        }
        value
    }
}

/// Group norm over [N, C, H, W] in `GROUPS` groups, with per-channel scale and shift.
fn group_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
) -> FloatTensor<B> {
    use burn_backend::TensorMetadata;
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let g = B::float_reshape(x, Shape::from(vec![n, GROUPS, (c / GROUPS) * h * w]));
    let mean = B::float_mean_dim(g.clone(), 2);
    let centered = B::float_sub(g, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 2);
    let inv = B::float_recip(B::float_sqrt(B::float_add_scalar(var, Scalar::Float(EPS))));
    let normed = B::float_reshape(B::float_mul(centered, inv), Shape::from(vec![n, c, h, w]));
    let gamma = B::float_reshape(gamma, Shape::from(vec![1, c, 1, 1]));
    let beta = B::float_reshape(beta, Shape::from(vec![1, c, 1, 1]));
    B::float_add(B::float_mul(normed, gamma), beta)
}

/// The network's mean cross-entropy on (x, y).
pub fn forward<B: Backend>(
    p: &[FloatTensor<B>],
    x: FloatTensor<B>,
    y: IntTensor<B>,
) -> FloatTensor<B> {
    let same = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let h = B::conv2d(x, p[0].clone(), Some(p[1].clone()), same.clone());
    let h = B::batch_norm_train(h, p[2].clone(), p[3].clone(), EPS).output;
    let h = B::relu(h);
    let h = B::max_pool2d(h, [2, 2], [2, 2], [0, 0], [1, 1], false);
    let h = B::conv2d(h, p[4].clone(), Some(p[5].clone()), same);
    let h = group_norm::<B>(h, p[6].clone(), p[7].clone());
    let h = B::relu(h);
    let h = B::adaptive_avg_pool2d(h, [1, 1]);
    let h = B::float_reshape(h, Shape::from(vec![BATCH, C2]));
    let logits = B::float_add(
        B::float_matmul(h, p[8].clone()),
        B::float_reshape(p[9].clone(), Shape::from(vec![1, CLASSES])),
    );
    let logp = B::log_softmax(logits, 1);
    let y = B::int_reshape(B::int_cast(y, IntDType::I64), Shape::from(vec![BATCH, 1]));
    let picked = B::float_gather(1, logp, y);
    B::float_neg(B::float_mean(picked))
}

/// The loss of each of `steps` training steps from `seed` (data and weights).
pub fn train<B: AutodiffBackend>(device: &B::Device, steps: usize, seed: u64) -> Vec<f32> {
    let mut model = Cnn::<B>::new(device, seed);
    let mut data = Rng(seed ^ 0xda7a);
    (0..steps)
        .map(|_| {
            let (x, y) = batch(&mut data);
            model.train_step(x, y, 0.01, device)
        })
        .collect()
}
