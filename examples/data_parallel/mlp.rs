//! A small MLP classifier trained data-parallel across devices of any kinds: each device holds a
//! replica of the parameters and takes a share of every batch sized by its measured speed
//! ([`Balancer`]); the gradients are all-reduced (in one process with a [`DeviceGroup`], across
//! processes with an MPI group), and every replica applies the same update, so the replicas stay
//! bit-identical.
//!
//! The model: `logits = relu(x W1 + b1) W2 + b2`, cross-entropy against the class, plain SGD.
//! The backward pass is composed from the op set (`matmul` on transposed views, `sum`,
//! `relu_backward`, `cross_entropy_backward`). The data set is synthetic (Gaussian clusters, one
//! a class), generated on the host from a seed, so that every process draws the same batches.
//!
//! Each replica's gradients and the loss of its share live in one flat tensor (the gradients,
//! then the loss), so one all-reduce carries them all. Each share's gradients are those of the
//! whole batch's mean loss (the loss gradient is `1 / batch`), so their sum is the gradient of
//! one device training on the whole batch.

use std::sync::Arc;
use std::time::Instant;

use anyaccel::hal::balance::Balancer;
use anyaccel::hal::{DeviceGroup, ReduceOp};
use anyaccel::ops::{self, CrossEntropyOptions, Reduction};
use anyaccel::{DType, Error, Queue, Result, Tensor};

/// The model, the data and the schedule.
#[derive(Debug, Clone)]
pub struct Config {
    /// Input features.
    pub features: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Classes.
    pub classes: usize,
    /// Items a step (over every device together).
    pub batch: usize,
    /// SGD learning rate.
    pub learning_rate: f32,
    /// Seed of the data and the initial parameters.
    pub seed: u64,
    /// Split the batch anew after the first step and then every this many steps (0: never).
    pub rebalance_every: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            features: 16,
            hidden: 32,
            classes: 4,
            batch: 1024,
            learning_rate: 0.5,
            seed: 7,
            rebalance_every: 4,
        }
    }
}

/// Where each parameter lives in the flat parameter (and gradient) tensor.
#[derive(Debug, Clone, Copy)]
struct Layout {
    w1: usize,
    b1: usize,
    w2: usize,
    b2: usize,
    /// The number of parameters; the gradient tensor has one more element, the loss.
    len: usize,
}

impl Layout {
    fn of(c: &Config) -> Layout {
        let w1 = 0;
        let b1 = w1 + c.features * c.hidden;
        let w2 = b1 + c.hidden;
        let b2 = w2 + c.hidden * c.classes;
        Layout {
            w1,
            b1,
            w2,
            b2,
            len: b2 + c.classes,
        }
    }
}

/// SplitMix64: a small, fast, seedable generator, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Gaussian clusters, one a class: an item of class `y` is `centre[y]` plus unit noise.
pub struct Dataset {
    config: Config,
    centres: Vec<f64>,
}

impl Dataset {
    /// The data set of `config.seed`.
    pub fn new(config: &Config) -> Dataset {
        let mut rng = Rng(config.seed);
        let centres = (0..config.classes * config.features)
            .map(|_| 0.5 * rng.normal())
            .collect();
        Dataset {
            config: config.clone(),
            centres,
        }
    }

    /// The batch of `step`: `batch * features` inputs (row-major) and `batch` classes.
    pub fn batch(&self, step: usize) -> (Vec<f32>, Vec<i32>) {
        let c = &self.config;
        let mut rng = Rng(c.seed ^ (step as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut x = Vec::with_capacity(c.batch * c.features);
        let mut y = Vec::with_capacity(c.batch);
        for _ in 0..c.batch {
            let class = (rng.next_u64() % c.classes as u64) as usize;
            let centre = &self.centres[class * c.features..(class + 1) * c.features];
            x.extend(centre.iter().map(|m| (m + rng.normal()) as f32));
            y.push(class as i32);
        }
        (x, y)
    }
}

/// The initial parameters of `config.seed`: weights uniform in +-1/sqrt(fan-in), biases 0.
pub fn initial_parameters(config: &Config) -> Vec<f32> {
    let l = Layout::of(config);
    let mut rng = Rng(config.seed.wrapping_mul(31).wrapping_add(1));
    let mut p = vec![0f32; l.len];
    let mut init = |range: std::ops::Range<usize>, fan_in: usize| {
        let bound = 1.0 / (fan_in as f64).sqrt();
        for v in &mut p[range] {
            *v = ((2.0 * rng.uniform() - 1.0) * bound) as f32;
        }
    };
    init(l.w1..l.b1, config.features);
    init(l.w2..l.b2, config.hidden);
    p
}

/// One copy of the model on one device.
pub struct Replica {
    queue: Arc<dyn Queue>,
    layout: Layout,
    config: Config,
    /// The parameters, flat.
    params: Tensor,
    /// The gradients, flat, then the loss of the last share.
    grads: Tensor,
}

impl Replica {
    /// A replica on `queue`'s device holding `params` (see [`initial_parameters`]).
    pub fn new(queue: Arc<dyn Queue>, config: &Config, params: &[f32]) -> Result<Replica> {
        let layout = Layout::of(config);
        if params.len() != layout.len {
            return Err(Error::invalid_argument(format!(
                "Replica::new: {} parameters, expected {}",
                params.len(),
                layout.len
            )));
        }
        let q = &*queue;
        let params = Tensor::from_slice(q, params, &[layout.len])?;
        let grads = Tensor::empty(&*q.device(), DType::F32, &[layout.len + 1])?;
        Ok(Replica {
            queue,
            layout,
            config: config.clone(),
            params,
            grads,
        })
    }

    /// The replica's queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The flat gradient tensor (the gradients, then the loss of the last share).
    pub fn gradients(&self) -> &Tensor {
        &self.grads
    }

    fn part(t: &Tensor, start: usize, shape: &[usize]) -> Result<Tensor> {
        t.narrow(0, start, shape.iter().product())?.reshape(shape)
    }

    /// Enqueues the forward and backward pass over a share (`y.len()` items, `x` row-major) of
    /// a batch of `batch` items: the gradients of the batch's mean loss that this share
    /// contributes, and the share's summed loss, into [`Replica::gradients`].
    pub fn compute(&self, x: &[f32], y: &[i32], batch: usize) -> Result<()> {
        let (q, c, l) = (&*self.queue, &self.config, self.layout);
        let (f, h, k, n) = (c.features, c.hidden, c.classes, y.len());
        let p = &self.params;
        let g = &self.grads;
        let (w1, b1) = (Self::part(p, l.w1, &[f, h])?, Self::part(p, l.b1, &[h])?);
        let (w2, b2) = (Self::part(p, l.w2, &[h, k])?, Self::part(p, l.b2, &[k])?);
        let x = Tensor::from_slice(q, x, &[n, f])?;
        let y = Tensor::from_slice(q, y, &[n])?;

        let z = ops::matmul(q, &x, &w1, Some(&b1))?;
        let a = ops::relu(q, &z)?;
        let logits = ops::matmul(q, &a, &w2, Some(&b2))?;
        let sum = CrossEntropyOptions {
            reduction: Reduction::Sum,
            ..CrossEntropyOptions::default()
        };
        let loss = ops::cross_entropy(q, &logits, &y, &sum)?;

        let scale = ops::fill(q, DType::F32, &[], 1.0 / batch as f64)?;
        let dlogits = ops::cross_entropy_backward(q, &scale, &logits, &y, &sum)?;
        ops::matmul_into(
            q,
            &a.transpose(0, 1)?,
            &dlogits,
            None,
            &Self::part(g, l.w2, &[h, k])?,
        )?;
        let db2 = ops::sum(q, &dlogits, &[0], false)?;
        ops::copy_into(q, &db2, &Self::part(g, l.b2, &[k])?)?;
        let da = ops::matmul(q, &dlogits, &w2.transpose(0, 1)?, None)?;
        let dz = ops::relu_backward(q, &da, &z)?;
        ops::matmul_into(
            q,
            &x.transpose(0, 1)?,
            &dz,
            None,
            &Self::part(g, l.w1, &[f, h])?,
        )?;
        let db1 = ops::sum(q, &dz, &[0], false)?;
        ops::copy_into(q, &db1, &Self::part(g, l.b1, &[h])?)?;
        ops::copy_into(q, &loss, &Self::part(g, l.len, &[])?)
    }

    /// Enqueues the SGD update with the (all-reduced) gradients.
    pub fn apply(&mut self) -> Result<()> {
        let q = &*self.queue;
        let grads = self.grads.narrow(0, 0, self.layout.len)?;
        let lr = ops::fill(q, DType::F32, &[], f64::from(self.config.learning_rate))?;
        let step = ops::mul(q, &grads, &lr)?;
        self.params = ops::sub(q, &self.params, &step)?;
        Ok(())
    }

    /// The summed loss in the gradient tensor (after an all-reduce: of the whole batch).
    pub fn loss_sum(&self) -> Result<f64> {
        let loss = self.grads.narrow(0, self.layout.len, 1)?;
        Ok(f64::from(loss.to_vec::<f32>(&*self.queue)?[0]))
    }

    /// The parameters' bytes.
    pub fn parameters(&self) -> Result<Vec<u8>> {
        self.params.to_bytes(&*self.queue)
    }

    /// The parameter tensor.
    pub fn parameter_tensor(&self) -> &Tensor {
        &self.params
    }
}

/// How the replicas' gradients meet.
pub enum Group {
    /// Every replica in this process.
    Local(DeviceGroup),
    /// One replica a process, over MPI.
    #[cfg(feature = "mpi")]
    Mpi(anyaccel::mpi::MpiGroup),
}

/// What a step measured.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The mean loss of the batch (before the update).
    pub loss: f64,
    /// Each device's share, in rank order.
    pub split: Vec<usize>,
    /// Each device's forward and backward time, seconds, in rank order.
    pub device_seconds: Vec<f64>,
    /// Seconds until the slowest device finished its forward and backward.
    pub compute_seconds: f64,
    /// Seconds of the whole step (data, compute, all-reduce, update, bookkeeping).
    pub step_seconds: f64,
}

/// Data-parallel training: this process's replicas, the group that joins them to the others,
/// and the balancer that splits each batch.
pub struct Trainer {
    config: Config,
    data: Dataset,
    replicas: Vec<Replica>,
    group: Group,
    /// The rank of `replicas[0]`.
    first_rank: usize,
    balancer: Balancer,
    balancing: bool,
    steps: usize,
}

impl Trainer {
    /// Every replica in this process, one on each queue (rank order = queue order).
    pub fn local(config: &Config, queues: Vec<Arc<dyn Queue>>) -> Result<Trainer> {
        let params = initial_parameters(config);
        let replicas = queues
            .iter()
            .map(|q| Replica::new(Arc::clone(q), config, &params))
            .collect::<Result<Vec<_>>>()?;
        let group = Group::Local(DeviceGroup::new(queues)?);
        Self::with(config, replicas, group, 0)
    }

    /// This process's replica, one of an MPI group's (the group's queue's device).
    #[cfg(feature = "mpi")]
    pub fn mpi(config: &Config, group: anyaccel::mpi::MpiGroup) -> Result<Trainer> {
        let params = initial_parameters(config);
        let replica = Replica::new(Arc::clone(group.queue()), config, &params)?;
        let rank = group.rank();
        Self::with(config, vec![replica], Group::Mpi(group), rank)
    }

    fn with(
        config: &Config,
        replicas: Vec<Replica>,
        group: Group,
        first_rank: usize,
    ) -> Result<Trainer> {
        let ranks = match &group {
            Group::Local(g) => g.size(),
            #[cfg(feature = "mpi")]
            Group::Mpi(g) => g.size(),
        };
        Ok(Trainer {
            config: config.clone(),
            data: Dataset::new(config),
            replicas,
            group,
            first_rank,
            balancer: Balancer::new(ranks, config.batch)?,
            balancing: config.rebalance_every > 0,
            steps: 0,
        })
    }

    /// Runs a forward and backward pass on every device with its share of batch 0, and waits
    /// for it, without updating: the first launch of each op compiles its kernels, which the
    /// balancer must not take for the device's speed.
    pub fn warm_up(&mut self) -> Result<()> {
        self.compute(0).map(|_| ())
    }

    /// The forward and backward pass of `step`'s batch on every local replica, each on its own
    /// thread; each replica's seconds, and the batch.
    fn compute(&self, step: usize) -> Result<Vec<f64>> {
        let c = &self.config;
        let (x, y) = self.data.batch(step);
        let ranges = self.balancer.ranges();
        let (x, y) = (&x, &y);
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .replicas
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let range = ranges[self.first_rank + i].clone();
                    s.spawn(move || -> Result<f64> {
                        let start = Instant::now();
                        r.compute(
                            &x[range.start * c.features..range.end * c.features],
                            &y[range],
                            c.batch,
                        )?;
                        r.queue().finish()?;
                        Ok(start.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::internal("a replica's thread panicked")))
                })
                .collect()
        })
    }

    /// Every rank's `(items, seconds)`, in rank order.
    fn gather_times(&self, mine: &[f64]) -> Result<Vec<(usize, f64)>> {
        let split = self.balancer.split();
        match &self.group {
            Group::Local(_) => Ok(split.iter().copied().zip(mine.iter().copied()).collect()),
            #[cfg(feature = "mpi")]
            Group::Mpi(g) => {
                let q = &**g.queue();
                let input = Tensor::from_slice(q, &[mine[0] as f32], &[1])?;
                let output = Tensor::empty(&*q.device(), DType::F32, &[g.size()])?;
                g.all_gather(&input, &output)?;
                let all = output.to_vec::<f32>(q)?;
                Ok(split
                    .iter()
                    .copied()
                    .zip(all.into_iter().map(f64::from))
                    .collect())
            }
        }
    }

    /// One step of training on the batch of the step's index.
    pub fn step(&mut self) -> Result<StepReport> {
        let start = Instant::now();
        let mine = self.compute(self.steps)?;
        let compute_seconds = start.elapsed().as_secs_f64();
        match &self.group {
            Group::Local(g) => {
                let grads: Vec<Tensor> = self
                    .replicas
                    .iter()
                    .map(|r| r.gradients().clone())
                    .collect();
                g.all_reduce(&grads, ReduceOp::Sum)?;
            }
            #[cfg(feature = "mpi")]
            Group::Mpi(g) => g.all_reduce(self.replicas[0].gradients(), ReduceOp::Sum)?,
        }
        let loss = self.replicas[0].loss_sum()? / self.config.batch as f64;
        for r in &mut self.replicas {
            r.apply()?;
        }
        let times = self.gather_times(&mine)?;
        let split = self.balancer.split().to_vec();
        for (d, &(items, seconds)) in times.iter().enumerate() {
            self.balancer.observe(d, items, seconds.max(1e-9))?;
        }
        self.steps += 1;
        let every = self.config.rebalance_every;
        if self.balancing && (self.steps == 1 || (every > 0 && self.steps.is_multiple_of(every))) {
            self.balancer.rebalance()?;
        }
        Ok(StepReport {
            loss,
            split,
            device_seconds: times.iter().map(|t| t.1).collect(),
            compute_seconds,
            step_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Whether every replica, in this process and in every other, holds the same parameter
    /// bits (every rank gets the same answer).
    pub fn replicas_identical(&self) -> Result<bool> {
        match &self.group {
            Group::Local(_) => {
                let first = self.replicas[0].parameters()?;
                for r in &self.replicas[1..] {
                    if r.parameters()? != first {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            #[cfg(feature = "mpi")]
            Group::Mpi(g) => {
                let q = &**g.queue();
                let mine = self.replicas[0].parameter_tensor();
                let n = mine.numel();
                let all = Tensor::empty(&*q.device(), DType::F32, &[g.size(), n])?;
                g.all_gather(mine, &all)?;
                let bytes = all.to_bytes(q)?;
                let row = n * 4;
                Ok(bytes.chunks(row).all(|r| r == &bytes[..row]))
            }
        }
    }
}

/// Trains `steps` steps and returns each step's report.
pub fn train(trainer: &mut Trainer, steps: usize) -> Result<Vec<StepReport>> {
    (0..steps).map(|_| trainer.step()).collect()
}

/// The F32 accumulating tolerance of the conformance suite (matmul, reductions, softmax):
/// `|got - want| <= ATOL + RTOL * |want|`.
pub const ATOL: f64 = 1e-4;
/// See [`ATOL`].
pub const RTOL: f64 = 1e-4;

/// The first step whose loss differs from `want`'s beyond the tolerance, with both losses; and
/// the largest difference.
pub fn compare_losses(got: &[f64], want: &[f64]) -> (Option<(usize, f64, f64)>, f64) {
    let mut worst: f64 = 0.0;
    let mut first = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        worst = worst.max(d);
        if first.is_none() && (d > ATOL + RTOL * w.abs() || d.is_nan()) {
            first = Some((i, g, w));
        }
    }
    (first, worst)
}

/// Step times measured for the balancer: each device alone, an even split and the balanced
/// split, over the same batch size.
#[derive(Debug, Clone)]
pub struct BalanceReport {
    /// Each device's standalone throughput (items a second) with the whole batch.
    pub standalone: Vec<f64>,
    /// The step time of the ideal split: batch / the sum of the standalone throughputs.
    pub ideal_seconds: f64,
    /// The median compute time of a step split evenly.
    pub even_seconds: f64,
    /// The median compute time of a step split by the balancer (after it settled).
    pub balanced_seconds: f64,
    /// The balanced split.
    pub balanced_split: Vec<usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures [`BalanceReport`] on `queues`: `steps` timed steps each (after a warm-up), and for
/// the balanced case `settle` steps first.
pub fn balance_report(
    config: &Config,
    queues: &[Arc<dyn Queue>],
    steps: usize,
    settle: usize,
) -> Result<BalanceReport> {
    let timed =
        |config: &Config, queues: Vec<Arc<dyn Queue>>, skip: usize| -> Result<(f64, Vec<usize>)> {
            let mut t = Trainer::local(config, queues)?;
            t.warm_up()?;
            train(&mut t, skip)?;
            let reports = train(&mut t, steps)?;
            let split = reports.last().map(|r| r.split.clone()).unwrap_or_default();
            Ok((
                median(reports.iter().map(|r| r.compute_seconds).collect()),
                split,
            ))
        };
    let fixed = Config {
        rebalance_every: 0,
        ..config.clone()
    };
    let mut standalone = Vec::new();
    for q in queues {
        let (seconds, _) = timed(&fixed, vec![Arc::clone(q)], 0)?;
        standalone.push(config.batch as f64 / seconds);
    }
    let ideal_seconds = config.batch as f64 / standalone.iter().sum::<f64>();
    let (even_seconds, _) = timed(&fixed, queues.to_vec(), 0)?;
    let (balanced_seconds, balanced_split) = timed(config, queues.to_vec(), settle)?;
    Ok(BalanceReport {
        standalone,
        ideal_seconds,
        even_seconds,
        balanced_seconds,
        balanced_split,
    })
}
