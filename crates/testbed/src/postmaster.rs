//! Owning the postmaster process.
//!
//! The server is spawned by a dedicated supervisor thread that then blocks
//! waiting for it. Two reasons:
//! - the parent-death signal (see `privilege::configure`) fires when the
//!   *thread* that forked exits; test threads and tokio's blocking pool come
//!   and go, so the forking thread must live exactly as long as the server;
//! - the supervisor reaps the child as soon as it exits, so callers can ask
//!   "is it still running?" without polling `waitpid` themselves, and we
//!   never signal a pid that has been reaped and possibly reused.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Exit status shared between the supervisor and the handle.
#[derive(Default)]
struct ExitState {
    status: Mutex<Option<ExitStatus>>,
    exited: Condvar,
}

impl ExitState {
    fn lock(&self) -> MutexGuard<'_, Option<ExitStatus>> {
        // A poisoned lock only means another thread panicked while holding
        // it; the Option inside is still meaningful.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a running (or exited) postmaster.
pub(crate) struct Postmaster {
    pid: i32,
    state: Arc<ExitState>,
}

impl Postmaster {
    /// Spawns `cmd` from a new supervisor thread and returns once the
    /// process exists (not once it is ready: see `cluster`).
    pub(crate) fn spawn(mut cmd: Command) -> io::Result<Postmaster> {
        let state = Arc::new(ExitState::default());
        let thread_state = Arc::clone(&state);
        let (tx, rx) = mpsc::channel::<io::Result<i32>>();
        std::thread::Builder::new()
            .name("portcullis-postmaster".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id() as i32;
                let _ = tx.send(Ok(pid));
                supervise(&mut child, pid, &thread_state);
            })?;
        let pid = rx
            .recv()
            .map_err(|_| io::Error::other("postmaster supervisor thread died"))??;
        Ok(Postmaster { pid, state })
    }

    /// The postmaster's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.state.lock()
    }

    /// Sends `signal` unless the process has already exited (and so been
    /// reaped, making its pid free for reuse). Returns whether it was sent.
    pub(crate) fn signal(&self, signal: i32) -> bool {
        let guard = self.state.lock();
        if guard.is_some() {
            return false;
        }
        // SAFETY: kill has no memory-safety preconditions; the lock held
        // above guarantees the pid has not been reaped yet.
        unsafe { libc::kill(self.pid, signal) == 0 }
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.state.lock();
        loop {
            if let Some(status) = *guard {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = match self.state.exited.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Stops the server: `first` signal (SIGINT = fast shutdown, SIGQUIT =
    /// immediate), escalating to SIGQUIT and finally SIGKILL if it lingers.
    /// Returns the exit status, or `None` if even SIGKILL did not work.
    pub(crate) fn stop(&self, first: i32, grace: Duration) -> Option<ExitStatus> {
        let mut signals = vec![first];
        if first != libc::SIGQUIT {
            signals.push(libc::SIGQUIT);
        }
        signals.push(libc::SIGKILL);
        for signal in signals {
            self.signal(signal);
            if let Some(status) = self.wait_timeout(grace) {
                return Some(status);
            }
        }
        None
    }
}

/// Body of the supervisor thread: wait for exit *without* reaping
/// (`WNOWAIT`), record the status under the lock, and only then reap, so
/// `Postmaster::signal` can never hit a recycled pid.
fn supervise(child: &mut Child, pid: i32, state: &ExitState) {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut guard = state.lock();
    let status = match child.wait() {
        Ok(status) => status,
        // Should not happen (we own the child); record *something* so
        // waiters are released rather than hanging.
        Err(_) => std::os::unix::process::ExitStatusExt::from_raw(0x7f00),
    };
    *guard = Some(status);
    state.exited.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_signal_and_reap() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let pm = Postmaster::spawn(cmd).unwrap();
        assert!(pm.pid() > 0);
        assert!(pm.exit_status().is_none());
        let status = pm.stop(libc::SIGTERM, Duration::from_secs(5)).unwrap();
        assert!(!status.success());
        assert!(!pm.signal(libc::SIGTERM), "no signals after reaping");
    }

    #[test]
    fn spawn_failure_is_reported() {
        assert!(Postmaster::spawn(Command::new("/nonexistent/portcullis")).is_err());
    }
}
