//! Timeline semaphores, the timestamp queries of events, and the events themselves: a
//! (semaphore, value) pair with the device time at which the work before it had completed.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use anyaccel_hal::{Error, Event, Mark, Result};
use ash::vk;

use crate::device::DeviceShared;

/// A timeline semaphore, destroyed when the last queue or event holding it is gone.
pub(crate) struct Timeline {
    shared: Arc<DeviceShared>,
    pub(super) raw: vk::Semaphore,
}

impl Timeline {
    pub(super) fn new(shared: &Arc<DeviceShared>) -> Result<Arc<Timeline>> {
        let mut kind = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(0);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut kind);
        // SAFETY: a valid create info; timeline semaphores were enabled at device creation.
        let raw = unsafe { shared.raw.create_semaphore(&info, None) }
            .map_err(|e| shared.vk_error("vkCreateSemaphore", e))?;
        Ok(Arc::new(Timeline {
            shared: shared.clone(),
            raw,
        }))
    }

    /// The value reached so far.
    pub(super) fn value(&self) -> Result<u64> {
        // SAFETY: the semaphore is a live timeline semaphore of this device.
        unsafe { self.shared.raw.get_semaphore_counter_value(self.raw) }
            .map_err(|e| self.shared.vk_error("vkGetSemaphoreCounterValue", e))
    }

    /// Waits until the semaphore reaches `value`.
    pub(super) fn wait(&self, value: u64) -> Result<()> {
        if value == 0 {
            return Ok(());
        }
        let semaphores = [self.raw];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default()
            .semaphores(&semaphores)
            .values(&values);
        // SAFETY: a valid wait info on a live semaphore; every value waited on has been
        // submitted for signalling (or is signalled from the host on a failed submission).
        unsafe { self.shared.raw.wait_semaphores(&info, u64::MAX) }
            .map_err(|e| self.shared.vk_error("vkWaitSemaphores", e))
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        // SAFETY: only queues and events hold a timeline; a queue waits for its submissions
        // before it goes, and a submission that waits on another queue's timeline holds that
        // timeline (through the batch) until it completes.
        unsafe { self.shared.raw.destroy_semaphore(self.raw, None) };
    }
}

/// A one-query timestamp pool, written by the submission of an event.
pub(super) struct TimestampQuery {
    pub(super) shared: Arc<DeviceShared>,
    pub(super) pool: vk::QueryPool,
}

impl Drop for TimestampQuery {
    fn drop(&mut self) {
        // SAFETY: the submission that writes the query holds it until it completes.
        unsafe { self.shared.raw.destroy_query_pool(self.pool, None) };
    }
}

/// A point in a Vulkan queue: its timeline semaphore reaching a value, with the device time
/// at which the work before it had completed where the device has timestamps.
pub struct VulkanEvent {
    pub(super) shared: Arc<DeviceShared>,
    pub(super) timeline: Arc<Timeline>,
    pub(super) value: u64,
    pub(super) query: Option<Arc<TimestampQuery>>,
    /// The failures of the queue's work before the event come back from `wait`.
    pub(super) mark: Mark,
}

impl VulkanEvent {
    fn timestamp(&self) -> Result<u64> {
        if let Some(e) = self.mark.failure() {
            // The batch of a failed queue is skipped, so its timestamp was never written.
            return Err(e.context("elapsed_since"));
        }
        let query = self.query.as_ref().ok_or_else(|| {
            Error::unsupported(format!(
                "elapsed_since: {} has no timestamps on its compute queue \
                 (timestampComputeAndGraphics)",
                self.shared.id
            ))
        })?;
        let mut ticks = [0u64; 1];
        // SAFETY: the query was reset and written by a submission that has completed (the
        // caller checked the event is done); the result array matches one 64-bit query.
        unsafe {
            self.shared.raw.get_query_pool_results(
                query.pool,
                0,
                &mut ticks,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )
        }
        .map_err(|e| self.shared.vk_error("vkGetQueryPoolResults", e))?;
        Ok(ticks[0] & self.shared.timestamp_mask)
    }
}

impl Event for VulkanEvent {
    fn wait(&self) -> Result<()> {
        self.timeline.wait(self.value)?;
        match self.mark.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_done(&self) -> bool {
        // A failed query means the device is lost: nothing more will complete, and `wait`
        // reports the error.
        self.timeline.value().map_or(true, |v| v >= self.value)
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start
            .as_any()
            .downcast_ref::<VulkanEvent>()
            .filter(|s| Arc::ptr_eq(&s.shared, &self.shared))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "elapsed_since: the start event is not from a queue of {}; both events \
                     must come from the same device",
                    self.shared.id
                ))
            })?;
        if !start.is_done() || !self.is_done() {
            return Err(Error::invalid_argument(
                "elapsed_since: both events must have completed; wait on them first",
            ));
        }
        let (t0, t1) = (start.timestamp()?, self.timestamp()?);
        let ticks = t1.wrapping_sub(t0) & self.shared.timestamp_mask;
        let nanos = ticks as f64 * self.shared.limits.timestamp_period_ns;
        Ok(Duration::from_nanos(nanos as u64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
