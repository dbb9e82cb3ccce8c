//! Splitting a batch across devices of different speeds (heterogeneous data parallelism).
//!
//! A [`Balancer`] holds the split of a batch of `total` items over `n` devices. The caller runs
//! each device's share, times it, and tells the balancer ([`Balancer::observe`]); every so often
//! it asks for a new split ([`Balancer::rebalance`]). Each device's time is modelled as
//! `fixed + per_item * items` (a launch and weight cost that does not depend on the share, and a
//! cost per item), fitted by least squares to its latest observations (proportional to the
//! items while they are too alike to tell a fixed cost from noise); the new split is the
//! one whose slowest device finishes first (the shares that make every modelled time equal,
//! rounded to whole items). Every device keeps at least one item, so that it is still measured
//! and a device that has become fast again gets work back.
//!
//! The balancer is deterministic: the same observations give the same split. Under MPI every
//! rank observes every rank's timings (gathered) and so computes the same split.

use std::collections::VecDeque;
use std::ops::Range;

use crate::{Error, Result};

/// How many of a device's latest observations its model is fitted to.
pub const WINDOW: usize = 8;

/// The least spread of share sizes (largest minus smallest, over their mean) from which a fixed
/// cost is fitted; below it the timings' noise would dominate the slope.
pub const SPREAD: f64 = 0.25;

/// A device's modelled time for a share of `items`: `fixed + per_item * items` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Seconds that do not depend on the share (>= 0).
    pub fixed: f64,
    /// Seconds an item (> 0).
    pub per_item: f64,
}

impl Cost {
    /// The modelled seconds for `items`.
    pub fn seconds(&self, items: usize) -> f64 {
        self.fixed + self.per_item * items as f64
    }

    /// Fits `fixed + per_item * items` to `(items, seconds)` observations by least squares;
    /// shares too alike (a spread below [`SPREAD`]) or a fit that makes a cost negative give a
    /// cost proportional to the items. `None` without observations.
    pub fn fit(observations: &[(usize, f64)]) -> Option<Cost> {
        let n = observations.len() as f64;
        if observations.is_empty() {
            return None;
        }
        let (sx, st) = observations
            .iter()
            .fold((0.0, 0.0), |(sx, st), &(x, t)| (sx + x as f64, st + t));
        let proportional = Cost {
            fixed: 0.0,
            per_item: st / sx,
        };
        let (mx, mt) = (sx / n, st / n);
        let (mut sxx, mut sxt) = (0.0, 0.0);
        for &(x, t) in observations {
            let dx = x as f64 - mx;
            sxx += dx * dx;
            sxt += dx * (t - mt);
        }
        let (lo, hi) = observations
            .iter()
            .fold((usize::MAX, 0), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
        if sxx <= 0.0 || ((hi - lo) as f64) < SPREAD * mx {
            return Some(proportional);
        }
        let per_item = sxt / sxx;
        let fixed = mt - per_item * mx;
        if per_item > 0.0 && fixed >= 0.0 {
            Some(Cost { fixed, per_item })
        } else {
            Some(proportional)
        }
    }
}

/// The split of a batch over devices, rebalanced from measured times.
#[derive(Debug, Clone)]
pub struct Balancer {
    total: usize,
    split: Vec<usize>,
    observed: Vec<VecDeque<(usize, f64)>>,
}

impl Balancer {
    /// An even split of `total` items over `devices` devices (the first ones get one more
    /// where it does not divide). Needs at least one device and one item a device.
    pub fn new(devices: usize, total: usize) -> Result<Balancer> {
        if devices == 0 || total < devices {
            return Err(Error::invalid_argument(format!(
                "Balancer::new: {total} items over {devices} devices, expected at least one \
                 device and at least one item a device"
            )));
        }
        let split = (0..devices)
            .map(|d| total / devices + usize::from(d < total % devices))
            .collect();
        Ok(Balancer {
            total,
            split,
            observed: vec![VecDeque::new(); devices],
        })
    }

    /// The number of devices.
    pub fn devices(&self) -> usize {
        self.split.len()
    }

    /// The number of items split.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Each device's share, in device order; they add up to [`Balancer::total`].
    pub fn split(&self) -> &[usize] {
        &self.split
    }

    /// Each device's items as a range of the batch, in device order.
    pub fn ranges(&self) -> Vec<Range<usize>> {
        let mut start = 0;
        self.split
            .iter()
            .map(|&n| {
                start += n;
                start - n..start
            })
            .collect()
    }

    /// Records that `device` took `seconds` for `items` items (its latest [`WINDOW`]
    /// observations are kept).
    pub fn observe(&mut self, device: usize, items: usize, seconds: f64) -> Result<()> {
        let devices = self.devices();
        let Some(observed) = self.observed.get_mut(device) else {
            return Err(Error::invalid_argument(format!(
                "Balancer::observe: device {device}, expected one of 0..{devices}"
            )));
        };
        if items == 0 || !(seconds.is_finite() && seconds > 0.0) {
            return Err(Error::invalid_argument(format!(
                "Balancer::observe: {items} items in {seconds} s on device {device}, expected \
                 at least one item and a finite positive time"
            )));
        }
        if observed.len() == WINDOW {
            observed.pop_front();
        }
        observed.push_back((items, seconds));
        Ok(())
    }

    /// `device`'s fitted cost, once it has been observed.
    pub fn cost(&self, device: usize) -> Option<Cost> {
        let observed: Vec<(usize, f64)> = self.observed.get(device)?.iter().copied().collect();
        Cost::fit(&observed)
    }

    /// The modelled time of the slowest device under `split`, once every device has been
    /// observed.
    pub fn predicted_seconds(&self, split: &[usize]) -> Option<f64> {
        if split.len() != self.devices() {
            return None;
        }
        let mut worst: f64 = 0.0;
        for (d, &items) in split.iter().enumerate() {
            worst = worst.max(self.cost(d)?.seconds(items));
        }
        Some(worst)
    }

    /// Splits the batch anew from every device's fitted cost and returns the new split.
    /// Fails (leaving the split as it was) while a device has no observation.
    pub fn rebalance(&mut self) -> Result<&[usize]> {
        let mut costs = Vec::with_capacity(self.devices());
        for d in 0..self.devices() {
            costs.push(self.cost(d).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "Balancer::rebalance: device {d} has not been observed yet; observe every \
                     device's time before rebalancing"
                ))
            })?);
        }
        self.split = optimal_split(&costs, self.total);
        Ok(&self.split)
    }
}

/// The split of `total` items (at least one a device, `total >= costs.len()`) that minimises
/// the largest `costs[d].seconds(split[d])`: the finishing time `t` at which the shares
/// `max(1, (t - fixed) / per_item)` add up to `total` (by bisection), rounded down, and the
/// items left over given one at a time to the device that would finish soonest with one more.
pub fn optimal_split(costs: &[Cost], total: usize) -> Vec<usize> {
    let share = |c: &Cost, t: f64| ((t - c.fixed) / c.per_item).max(1.0);
    let sum = |t: f64| costs.iter().map(|c| share(c, t)).sum::<f64>();
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for c in costs {
        hi = hi.max(c.seconds(total));
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if sum(mid) > total as f64 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let mut split: Vec<usize> = costs
        .iter()
        .map(|c| (share(c, lo).floor() as usize).max(1))
        .collect();
    // Rounding down can only leave items over (or, when every share is the minimum of one,
    // too many devices at one: impossible, as total >= devices); hand them out greedily.
    while split.iter().sum::<usize>() > total {
        let d = (0..split.len())
            .filter(|&d| split[d] > 1)
            .max_by(|&a, &b| {
                costs[a]
                    .seconds(split[a])
                    .total_cmp(&costs[b].seconds(split[b]))
            })
            .expect("a share above one");
        split[d] -= 1;
    }
    let mut left = total - split.iter().sum::<usize>();
    while left > 0 {
        let d = (0..split.len())
            .min_by(|&a, &b| {
                costs[a]
                    .seconds(split[a] + 1)
                    .total_cmp(&costs[b].seconds(split[b] + 1))
            })
            .expect("at least one device");
        split[d] += 1;
        left -= 1;
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_split_first_then_shares_by_speed() {
        let mut b = Balancer::new(3, 10).unwrap();
        assert_eq!(b.split(), &[4, 3, 3]);
        assert_eq!(b.ranges(), vec![0..4, 4..7, 7..10]);
        // Device 1 is four times as fast as device 0 and twice as fast as device 2.
        b.observe(0, 4, 4.0).unwrap();
        b.observe(1, 3, 0.75).unwrap();
        b.observe(2, 3, 1.5).unwrap();
        let split = b.rebalance().unwrap().to_vec();
        // Rates 1, 4, 2 items/s: 10 items in 10/7 s ideally; whole items: 1, 6, 3.
        assert_eq!(split, vec![1, 6, 3]);
        assert_eq!(split.iter().sum::<usize>(), 10);
    }

    #[test]
    fn a_fixed_cost_is_fitted_and_split_around() {
        // Device 0: 1 s + 0.01 s an item; device 1: 0.02 s an item.
        let mut b = Balancer::new(2, 1000).unwrap();
        for items in [100, 300, 500] {
            b.observe(0, items, 1.0 + 0.01 * items as f64).unwrap();
            b.observe(1, items, 0.02 * items as f64).unwrap();
        }
        let c = b.cost(0).unwrap();
        assert!((c.fixed - 1.0).abs() < 1e-9 && (c.per_item - 0.01).abs() < 1e-12);
        // Equal times: 1 + 0.01 a = 0.02 (1000 - a) gives a = 633.3; 633 and 634 both finish
        // in 7.34 s, the best whole split.
        let split = b.rebalance().unwrap().to_vec();
        assert!(split == [633, 367] || split == [634, 366], "{split:?}");
        let t = b.predicted_seconds(&split).unwrap();
        assert!((t - 7.34).abs() < 1e-9, "{t}");
        assert!((b.predicted_seconds(&[500, 500]).unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn every_device_keeps_an_item() {
        let mut b = Balancer::new(2, 5).unwrap();
        b.observe(0, 1, 1000.0).unwrap();
        b.observe(1, 4, 0.001).unwrap();
        assert_eq!(b.rebalance().unwrap(), &[1, 4]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Balancer::new(0, 4).is_err());
        assert!(Balancer::new(3, 2).is_err());
        let mut b = Balancer::new(2, 4).unwrap();
        assert!(b.observe(2, 1, 1.0).is_err());
        assert!(b.observe(0, 0, 1.0).is_err());
        assert!(b.observe(0, 1, f64::NAN).is_err());
        assert!(b.observe(0, 1, 0.0).is_err());
        b.observe(0, 2, 1.0).unwrap();
        let e = b.rebalance().unwrap_err();
        assert!(e.message().contains("device 1"), "{e}");
        assert_eq!(b.split(), &[2, 2]);
    }

    #[test]
    fn a_noisy_fit_with_a_negative_fixed_cost_falls_back_to_proportional() {
        let c = Cost::fit(&[(10, 1.0), (20, 3.0)]).unwrap();
        assert_eq!(c.fixed, 0.0);
        assert!((c.per_item - 4.0 / 30.0).abs() < 1e-12);
        assert_eq!(Cost::fit(&[]), None);
        // Shares 100 and 110: the slope would be noise; proportional.
        let c = Cost::fit(&[(100, 2.0), (110, 2.05)]).unwrap();
        assert_eq!(c.fixed, 0.0);
        // Shares 100 and 200: a fixed cost of 1 s.
        let c = Cost::fit(&[(100, 2.0), (200, 3.0)]).unwrap();
        assert!((c.fixed - 1.0).abs() < 1e-12 && (c.per_item - 0.01).abs() < 1e-12);
    }
}
