//! Polling a future only when its own waker fired.
//!
//! A session's pumps and its shutdown watch run in one task under
//! `tokio::select!`, which polls every branch whenever the task wakes. Most
//! wake-ups are for one branch only (bytes from the server, say), so the
//! others would be polled for nothing, and the shutdown watch's poll takes
//! a lock that every session shares. [`Woken`] gives its future a waker of
//! its own and skips the poll until that waker has fired: a pending future
//! has promised to wake its waker when it can make progress, so a poll
//! without a wake-up could only return `Pending` again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pub(crate) struct Woken<F> {
    future: F,
    flag: Arc<Flag>,
    /// `flag` as a waker, made once.
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    /// The task polling the [`Woken`].
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Woken<F> {
    pub fn new(future: F) -> Self {
        let flag = Arc::new(Flag {
            // The first poll always happens: it registers the waker.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Woken {
            future,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future + Unpin> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read, so a wake-up between the two
        // reaches the task.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the polls of a future that is ready on its third poll, and
    /// wakes itself on each.
    struct Counting<'a> {
        polls: &'a mut u32,
        wake: bool,
    }

    impl Future for Counting<'_> {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            *this.polls += 1;
            if *this.polls == 3 {
                return Poll::Ready(());
            }
            if this.wake {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    fn noop() -> Waker {
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }

    #[test]
    fn polls_only_after_its_own_wake_up() {
        let mut polls = 0;
        let mut w = Woken::new(Counting {
            polls: &mut polls,
            wake: false,
        });
        let waker = noop();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..5 {
            assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        }
        // Only the first poll reached the future: nothing woke it since.
        w.waker.wake_by_ref();
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        drop(w);
        assert_eq!(polls, 2);
    }

    #[test]
    fn a_future_that_wakes_itself_runs_to_the_end() {
        let mut polls = 0;
        let mut w = Woken::new(Counting {
            polls: &mut polls,
            wake: true,
        });
        let waker = noop();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut w).poll(&mut cx).is_ready());
        drop(w);
        assert_eq!(polls, 3);
    }

    #[tokio::test]
    async fn a_wake_up_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let task = tokio::spawn(Woken::new(rx));
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), 7);
    }
}
