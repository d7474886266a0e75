//! The threads that run sessions: one single-threaded runtime each.
//!
//! A session is two pumps in one task, woken by its two sockets. On a
//! work-stealing runtime every wake-up may land on another thread, and a
//! thread that finds work queued wakes a sleeping one to steal it: about
//! one futex call and an extra context switch per transaction on a small
//! machine, more CPU than judging the statement. Here each session lives
//! on one thread from login to end, with that thread's own epoll and
//! timers, so a wake-up is one socket event on the thread that owns the
//! socket. Connections go to the thread with the fewest live sessions.
//!
//! The price: a session that keeps a thread busy (a cold analysis of a
//! huge statement) delays the other sessions on that thread, where a
//! work-stealing scheduler would move them. Judging is bounded
//! (`max_statement_bytes`, the parser's depth limit), so the delay is too.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The session threads; stopping them drops whatever still runs on them.
pub(crate) struct Workers {
    workers: Vec<Worker>,
    /// Where the search for the least-loaded thread starts (rotates, so
    /// ties are spread).
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    live: Arc<AtomicUsize>,
    /// Dropping it ends the thread's runtime.
    _stop: oneshot::Sender<()>,
}

impl Workers {
    /// Starts `threads` session threads (0: one per CPU core).
    pub fn start(threads: usize) -> std::io::Result<Workers> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = (0..threads)
            .map(start_worker)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Runs `session` on the thread with the fewest live sessions.
    pub fn spawn<F>(&self, session: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let w = (0..n)
            .map(|i| &self.workers[(start + i) % n])
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
            .expect("at least one worker");
        let live = LiveGuard::new(w.live.clone());
        w.handle.spawn(async move {
            let _live = live;
            session.await;
        });
    }

    /// Live sessions per thread (for tests and metrics).
    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.live.load(Ordering::Relaxed))
            .collect()
    }
}

fn start_worker(i: usize) -> std::io::Result<Worker> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("portcullis-worker-{i}"))
        .build()?;
    let handle = rt.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("portcullis-worker-{i}"))
        .spawn(move || {
            // Returns when the sender is dropped; the runtime is dropped
            // here, outside any async context, cancelling what is left.
            rt.block_on(async {
                let _ = stopped.await;
            });
        })?;
    Ok(Worker {
        handle,
        live: Arc::new(AtomicUsize::new(0)),
        _stop: stop,
    })
}

/// Counts a session as live from its spawn until its future is dropped
/// (finished or cancelled).
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(live)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sessions_go_to_the_least_loaded_thread_and_stay_there() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let (release, released) = tokio::sync::watch::channel(false);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let mut released = released.clone();
            let tx = tx.clone();
            workers.spawn(async move {
                let before = std::thread::current().id();
                let _ = released.wait_for(|r| *r).await;
                tokio::task::yield_now().await;
                tx.send((before, std::thread::current().id())).unwrap();
            });
        }
        assert_eq!(workers.loads(), vec![2, 2]);
        release.send(true).unwrap();
        for _ in 0..4 {
            let (before, after) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(before, after, "a session never changes threads");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while workers.loads() != vec![0, 0] {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                workers.loads()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn stopping_the_workers_cancels_what_still_runs() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        workers.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The sender is dropped with the cancelled session.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
