//! The failure log behind the sticky-error rule of [`crate::Queue`], for backends whose commands
//! complete asynchronously and are numbered in submission order.

use std::sync::{Mutex, MutexGuard};

use crate::Error;

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
