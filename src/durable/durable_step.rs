//! The number of the last durable step, and who waits for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The number of the last durable step, and the requests waiting for a
/// step to be: each is woken once, when its own step is (a channel that
/// woke every waiter at every sync would wake most of them for nothing,
/// as under load half of them wait for the next sync).
pub(super) struct Durable {
    last: AtomicU64,
    /// Who waits, by the step they wait for.
    waiting: Mutex<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
}

impl Durable {
    /// `last` durable, nobody waiting.
    pub(super) fn new(last: u64) -> Durable {
        Durable {
            last: AtomicU64::new(last),
            waiting: Mutex::default(),
        }
    }

    /// The number of the last durable step.
    pub(super) fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Raises the last durable step to `durable` and wakes those waiting
    /// for a step up to it; whether it grew.
    pub(super) fn raise(&self, durable: u64) -> bool {
        if self.last.fetch_max(durable, Ordering::AcqRel) >= durable {
            return false;
        }
        // A waiter looks at `last` under this lock after it was raised, or
        // is in the map when it is taken below.
        let ready = {
            let mut waiting = lock(&self.waiting);
            let later = waiting.split_off(&(durable + 1));
            std::mem::replace(&mut *waiting, later)
        };
        for reply in ready.into_values().flatten() {
            let _ = reply.send(());
        }
        true
    }

    /// Waits until step `seq` is durable (an error only if the disk is
    /// dropped first).
    pub(super) async fn reached(&self, seq: u64) -> Result<(), Arc<str>> {
        if self.last.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let woken = {
            let mut waiting = lock(&self.waiting);
            if self.last.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            let (reply, woken) = oneshot::channel();
            waiting.entry(seq).or_default().push(reply);
            woken
        };
        woken.await.map_err(|_| "the disk is closed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(future.poll(&mut cx), Poll::Ready(_))
    }

    #[test]
    fn a_waiter_is_woken_when_its_own_step_is_durable_not_before() {
        let d = Durable::new(3);
        assert!(ready(pin!(d.reached(3))), "a step already durable");
        let mut five = pin!(d.reached(5));
        let mut seven = pin!(d.reached(7));
        assert!(!ready(five.as_mut()) && !ready(seven.as_mut()));
        assert!(d.raise(4));
        assert!(!ready(five.as_mut()), "step 5 is not durable at 4");
        assert!(d.raise(6));
        assert!(ready(five.as_mut()));
        assert!(!ready(seven.as_mut()), "step 7 is not durable at 6");
        assert_eq!(lock(&d.waiting).keys().copied().collect::<Vec<_>>(), [7]);
        assert!(!d.raise(5), "the last durable step never goes back");
        assert_eq!(d.last(), 6);
        assert!(d.raise(9));
        assert!(ready(seven.as_mut()));
        assert!(lock(&d.waiting).is_empty());
    }
}
