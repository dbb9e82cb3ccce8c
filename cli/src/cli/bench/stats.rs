//! Timing: sorted repetition times and their quantiles, the clock and the budget of one
//! figure, and the timed loops on a queue and on the host.

use std::time::{Duration, Instant};

use anyaccel::hal::Queue;

use super::{MAX_REPS, MIN_REPS, SETTLE};

/// Sorted repetition times in seconds.
pub struct Samples(Vec<f64>);

impl Samples {
    pub(super) fn new(mut times: Vec<f64>) -> Samples {
        times.sort_by(f64::total_cmp);
        Samples(times)
    }

    /// The value at quantile `q` (nearest rank); the median averages the two middle values.
    pub fn quantile(&self, q: f64) -> f64 {
        let v = &self.0;
        if v.is_empty() {
            return f64::NAN;
        }
        if q == 0.5 && v.len().is_multiple_of(2) {
            return (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0;
        }
        let rank = (q * (v.len() - 1) as f64).round() as usize;
        v[rank.min(v.len() - 1)]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
        self.0.sort_by(f64::total_cmp);
    }

    pub(super) fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }

    pub(super) fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Clock {
    Events,
    Host,
}

impl Clock {
    pub(super) fn name(self) -> &'static str {
        match self {
            Clock::Events => "events",
            Clock::Host => "host",
        }
    }
}

/// How long to warm up and measure one figure.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    warmup: Duration,
    pub(super) measure: Duration,
    max_reps: usize,
}

impl Budget {
    pub(super) fn new(time_s: f64) -> Budget {
        let measure = Duration::from_secs_f64(time_s);
        Budget {
            warmup: measure.mul_f64(0.2),
            measure,
            max_reps: MAX_REPS,
        }
    }

    pub(super) fn with_max_reps(self, max_reps: usize) -> Budget {
        Budget { max_reps, ..self }
    }

    pub(super) fn scaled(self, factor: f64) -> Budget {
        Budget {
            warmup: self.warmup.mul_f64(factor),
            measure: self.measure.mul_f64(factor),
            max_reps: ((self.max_reps as f64 * factor).ceil() as usize).max(MIN_REPS),
        }
    }

    /// True when a measurement that has taken `elapsed` for `reps` repetitions is done.
    fn done(&self, reps: usize, elapsed: Duration) -> bool {
        reps >= self.max_reps
            || (reps >= MIN_REPS && elapsed >= self.measure)
            || (reps >= 1 && elapsed >= self.measure * 10)
    }
}

pub(super) type BenchResult<T> = std::result::Result<T, anyaccel::Error>;

/// Times `f`, which submits work to `queue`, as the clock says.
pub(super) fn time_on_queue(
    queue: &dyn Queue,
    clock: Clock,
    budget: Budget,
    mut f: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Samples> {
    std::thread::sleep(SETTLE);
    queue.finish()?;
    let start = Instant::now();
    let mut warm = 0;
    while warm == 0 || (start.elapsed() < budget.warmup && warm < budget.max_reps / 4) {
        f()?;
        queue.finish()?;
        warm += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while !budget.done(times.len(), start.elapsed()) {
        let t = match clock {
            Clock::Events => {
                let before = queue.record_event()?;
                f()?;
                let after = queue.record_event()?;
                after.wait()?;
                after.elapsed_since(&*before)?
            }
            Clock::Host => {
                let t0 = Instant::now();
                f()?;
                queue.finish()?;
                t0.elapsed()
            }
        };
        times.push(t.as_secs_f64());
    }
    Ok(Samples::new(times))
}

/// Times `f`, which runs on the host and returns when done, with the host clock.
pub(super) fn time_on_host(
    budget: Budget,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Samples, String> {
    std::thread::sleep(SETTLE);
    let start = Instant::now();
    let mut warm = 0;
    while warm == 0 || (start.elapsed() < budget.warmup && warm < budget.max_reps / 4) {
        f()?;
        warm += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while !budget.done(times.len(), start.elapsed()) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(Samples::new(times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_samples() {
        let s = Samples::new(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.median(), 3.0);
        assert_eq!((s.min(), s.max()), (1.0, 5.0));
        assert_eq!(s.quantile(0.1), 1.0);
        assert_eq!(s.quantile(0.9), 5.0);
        let even = Samples::new(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(even.median(), 2.5);
        assert!(Samples::new(Vec::new()).median().is_nan());
    }
}
