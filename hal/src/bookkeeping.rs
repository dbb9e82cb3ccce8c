//! Queue bookkeeping: the sticky-failure rule of [`crate::Queue`], kept once for every backend.
//!
//! A queue numbers its commands in submission order ([`Bookkeeping::admit`]); a command that
//! fails asynchronously is recorded under its number ([`Bookkeeping::fail`]); while a failure
//! waits to be reported, new commands are skipped (`admit` gives `None`); `read` and `finish`
//! report it ([`Bookkeeping::report`]), after which the queue runs again; an event recorded
//! before that report carries a [`Mark`] that finds the failures of the commands before it.
//! Waiting on an event of another queue or device is [`Bookkeeping::wait_foreign`] (on the
//! calling thread) or [`Bookkeeping::wait_foreign_then`] (on a helper thread), both of which
//! record the awaited work's failure as the wait's own. What a pending command keeps alive
//! until it retires is [`Retiring`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Error, Event};

#[derive(Default)]
struct Log {
    /// The first failure that no `read` or `finish` has reported yet.
    unreported: Option<Error>,
    /// Every failure, by command number, for the events recorded after them. Failures are rare,
    /// so the log is short.
    log: Vec<(u64, Error)>,
    /// Failures of commands numbered below this have been reported.
    reported_below: u64,
}

/// A queue's asynchronous failures, by the sequence number of the command that failed. Shared
/// (in an `Arc`) between a queue, its events and whatever threads complete its commands.
#[derive(Default)]
pub struct FailureLog(Mutex<Log>);

impl FailureLog {
    /// An empty log.
    pub fn new() -> FailureLog {
        FailureLog::default()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while a failure waits to be reported: the queue skips new commands.
    pub fn unreported(&self) -> bool {
        self.lock().unreported.is_some()
    }

    /// The failure that waits to be reported, if any.
    pub fn peek(&self) -> Option<Error> {
        self.lock().unreported.clone()
    }

    /// Records that command `seq` failed; the first unreported failure is kept as it was.
    pub fn record(&self, seq: u64, error: Error) {
        let mut log = self.lock();
        if log.unreported.is_none() {
            log.unreported = Some(error.clone());
        }
        if !log.log.iter().any(|(s, _)| *s == seq) {
            log.log.push((seq, error));
        }
    }

    /// Takes the unreported failure (a sync reports it); commands numbered below `next` count
    /// as reported from now on.
    pub fn take(&self, next: u64) -> Option<Error> {
        let mut log = self.lock();
        log.reported_below = log.reported_below.max(next);
        log.unreported.take()
    }

    /// Commands numbered below this have had their failures reported.
    pub fn reported_below(&self) -> u64 {
        self.lock().reported_below
    }

    /// The first failure of a command numbered in `from..to`.
    pub fn first_in(&self, from: u64, to: u64) -> Option<Error> {
        self.lock()
            .log
            .iter()
            .filter(|(s, _)| (from..to).contains(s))
            .min_by_key(|(s, _)| *s)
            .map(|(_, e)| e.clone())
    }
}

/// The sticky-failure rule for one queue: command numbers and the [`FailureLog`]. Number
/// commands under the lock that orders their submission, so that numbers follow that order.
#[derive(Default)]
pub struct Bookkeeping {
    failures: Arc<FailureLog>,
    next: AtomicU64,
}

impl Bookkeeping {
    /// A queue with no commands and no failures.
    pub fn new() -> Bookkeeping {
        Bookkeeping::default()
    }

    /// The number of a command about to be submitted, or `None` while a failure waits to be
    /// reported: then the command is skipped (and the call that submitted it succeeds).
    pub fn admit(&self) -> Option<u64> {
        if self.failures.unreported() {
            return None;
        }
        Some(self.number())
    }

    /// The number of something that is not skipped after a failure (a sync, an event).
    pub fn number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// True while a failure waits to be reported.
    pub fn failed(&self) -> bool {
        self.failures.unreported()
    }

    /// The failure that waits to be reported, if any (it stays unreported).
    pub fn unreported(&self) -> Option<Error> {
        self.failures.peek()
    }

    /// Records that command `seq` failed.
    pub fn fail(&self, seq: u64, error: Error) {
        self.failures.record(seq, error);
    }

    /// At `read` or `finish`, once the earlier commands have completed (or failed): the first
    /// unreported failure, which is now reported, else `result`.
    pub fn report(&self, result: crate::Result<()>) -> crate::Result<()> {
        match self.failures.take(self.next.load(Ordering::Relaxed)) {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// A mark for an event recorded now, after every command numbered so far.
    pub fn mark(&self) -> Mark {
        let from = self.failures.reported_below();
        Mark {
            failures: self.failures.clone(),
            from,
            seq: self.number(),
        }
    }

    /// Waits here for `event` of another queue (of any device) as command `seq`; its failure
    /// becomes that command's.
    pub fn wait_foreign(&self, seq: u64, event: &dyn Event) {
        wait_and_record(&self.failures, seq, event);
    }

    /// As [`Bookkeeping::wait_foreign`], on a helper thread, then `then` (which releases the
    /// commands that wait behind it, even when the awaited work failed). Runs here when no
    /// thread can be started (correct, only less asynchronous).
    pub fn wait_foreign_then(
        &self,
        seq: u64,
        event: Arc<dyn Event>,
        then: impl FnOnce() + Send + 'static,
    ) {
        let failures = self.failures.clone();
        run_detached(
            "anyaccel-wait-event",
            Box::new(move || {
                wait_and_record(&failures, seq, &*event);
                then();
            }),
        );
    }
}

/// Work for a helper thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a new thread called `name`, or here when no thread can be started (correct,
/// only less asynchronous): waits on other devices' events, frees what a dropped queue's
/// unfinished commands keep.
pub fn run_detached(name: &str, job: Job) {
    let job = Arc::new(Mutex::new(Some(job)));
    let run = |job: &Mutex<Option<Job>>| {
        let f = job.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(f) = f {
            f();
        }
    };
    let for_thread = job.clone();
    if std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || run(&for_thread))
        .is_err()
    {
        run(&job);
    }
}

fn wait_and_record(failures: &FailureLog, seq: u64, event: &dyn Event) {
    if let Err(e) = event.wait() {
        // A [`crate::FailedEvent`] stands for a failure of this queue's own work (the op
        // layer's report of an error found while an op ran): its error comes back unchanged.
        let e = if event.as_any().is::<crate::FailedEvent>() {
            e
        } else {
            e.context("wait_event: the awaited work failed")
        };
        failures.record(seq, e);
    }
}

/// Where an event stands in its queue's commands: it reports the first failure of the commands
/// before it that was not reported before it was recorded.
#[derive(Clone)]
pub struct Mark {
    failures: Arc<FailureLog>,
    from: u64,
    seq: u64,
}

impl Mark {
    /// The first failure of the commands before the event, as known now (complete once the
    /// commands before the event have completed).
    pub fn failure(&self) -> Option<Error> {
        self.failures.first_in(self.from, self.seq)
    }

    /// The event's own number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// What pending commands keep alive (buffers, host bytes, kernels) until they retire, in
/// submission order, each with the number of the last command that needs it.
pub struct Retiring<K> {
    pending: std::collections::VecDeque<(u64, K)>,
}

impl<K> Default for Retiring<K> {
    fn default() -> Self {
        Retiring {
            pending: Default::default(),
        }
    }
}

impl<K> Retiring<K> {
    /// Nothing kept.
    pub fn new() -> Retiring<K> {
        Retiring::default()
    }

    /// Keeps `k` until command `seq` retires.
    pub fn keep(&mut self, seq: u64, k: K) {
        self.pending.push_back((seq, k));
    }

    /// Releases what the commands numbered below `done` kept (they have completed).
    pub fn retire_below(&mut self, done: u64) {
        while self.pending.front().is_some_and(|(s, _)| *s < done) {
            self.pending.pop_front();
        }
    }

    /// Releases everything (every command has completed).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// How many things are kept.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_sticks_until_taken() {
        let f = FailureLog::new();
        assert!(!f.unreported());
        f.record(3, Error::launch_failed("first"));
        f.record(5, Error::launch_failed("second"));
        assert!(f.unreported());
        assert_eq!(f.first_in(4, 9).unwrap().message(), "second");
        assert_eq!(f.take(6).unwrap().message(), "first");
        assert!(!f.unreported() && f.take(2).is_none());
        assert_eq!(f.reported_below(), 6);
        assert!(f.first_in(6, 10).is_none());
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn skipped_while_unreported_and_marks_see_earlier_failures() {
        let b = Bookkeeping::new();
        let first = b.admit().unwrap();
        let before = b.mark();
        b.fail(first, Error::launch_failed("boom"));
        let after = b.mark();
        assert!(
            b.failed() && b.admit().is_none(),
            "skipped while unreported"
        );
        assert!(
            before.failure().is_some(),
            "the failure is before both marks"
        );
        assert_eq!(after.failure().unwrap().message(), "boom");
        assert_eq!(b.report(Ok(())).unwrap_err().message(), "boom");
        // Reported: the queue runs again; marks made before still see the failure, marks made
        // after do not.
        assert!(b.admit().is_some() && b.report(Ok(())).is_ok());
        assert_eq!(after.failure().unwrap().message(), "boom");
        assert!(b.mark().failure().is_none());
    }

    #[test]
    fn retiring_releases_in_order() {
        let mut r = Retiring::new();
        r.keep(1, "a");
        r.keep(3, "b");
        r.keep(3, "c");
        r.retire_below(3);
        assert_eq!(r.len(), 2);
        r.retire_below(4);
        assert!(r.is_empty());
    }

    struct Failing;
    impl Event for Failing {
        fn wait(&self) -> crate::Result<()> {
            Err(Error::launch_failed("far away"))
        }
        fn is_done(&self) -> bool {
            true
        }
        fn elapsed_since(&self, _: &dyn Event) -> crate::Result<std::time::Duration> {
            Err(Error::unsupported("none"))
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn a_failed_foreign_wait_is_the_wait_commands_failure() {
        let b = Bookkeeping::new();
        let seq = b.admit().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        b.wait_foreign_then(seq, Arc::new(Failing), move || tx.send(()).unwrap());
        rx.recv().unwrap();
        let e = b.report(Ok(())).unwrap_err();
        assert!(e.message().contains("far away"), "{e}");
        assert!(e.message().contains("wait_event"), "{e}");
    }
}
