//! Running the server binaries as an unprivileged user.
//!
//! `initdb` and `postgres` refuse to run as root. Dev machines and CI run
//! as root, so when our effective uid is 0 we switch to the `postgres`
//! system account (created by the Debian packages) in the child process,
//! through std's `CommandExt::uid/gid` (which also clears supplementary
//! groups). Doing it in-process rather than via `runuser`/`setpriv` keeps
//! the postmaster our *direct* child: we know its pid, can signal and reap
//! it, and can give it a parent-death signal (see [`configure`]), none of
//! which survive an intermediate `runuser` process.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::error::{Result, TestbedError};

/// The account the server runs as when we are root.
pub const SERVICE_USER: &str = "postgres";

/// The uid/gid to switch to in child processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `None` when we are not root (binaries run as ourselves); the
    /// `postgres` account when we are; an error if root has no such account.
    pub(crate) fn detect() -> Result<Option<RunAs>> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        lookup_user(SERVICE_USER)?
            .map(Some)
            .ok_or_else(|| TestbedError::NoServiceUser {
                user: SERVICE_USER.to_owned(),
            })
    }

    /// Gives `path` to the service user, so the server can write to
    /// directories and read key files we created as root.
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| TestbedError::io(format!("chown {}", path.display()), e))
    }
}

/// Chowns `path` when running as root; no-op otherwise.
pub(crate) fn chown_if(run_as: Option<RunAs>, path: &Path) -> Result<()> {
    match run_as {
        Some(r) => r.chown(path),
        None => Ok(()),
    }
}

/// Looks up a user's uid and primary gid with `getpwnam_r` (thread-safe,
/// unlike `getpwnam`, and tests start clusters from many threads).
fn lookup_user(name: &str) -> Result<Option<RunAs>> {
    let cname = CString::new(name)
        .map_err(|_| TestbedError::InvalidOption(format!("user name {name:?} contains NUL")))?;
    let mut buf_len = 1024usize;
    loop {
        let mut buf = vec![0u8; buf_len];
        // SAFETY: an all-zero passwd is a valid value for a C struct of
        // pointers and integers; getpwnam_r fills it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the duration of the call and
        // `buf` is `buf_len` bytes long.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf_len < (1 << 20) {
            buf_len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(TestbedError::io(
                format!("looking up user {name}"),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// Prepares `cmd` to run as `run_as` (if any) and, when `parent_death_signal`
/// is given, to receive that signal when the spawning *thread* exits.
///
/// The parent-death signal is what keeps a crashed or SIGKILLed test binary
/// from leaving a postmaster running forever: the kernel signals the child
/// when its parent goes away, however it goes away. It is tied to the thread
/// that forked, which is why the postmaster is spawned from a dedicated
/// thread that lives exactly as long as the server (see `postmaster`). It
/// must be set after the uid switch, which clears it; std runs `pre_exec`
/// hooks after applying `uid`/`gid`, so that order holds.
pub(crate) fn configure(
    cmd: &mut Command,
    run_as: Option<RunAs>,
    parent_death_signal: Option<i32>,
) {
    if let Some(r) = run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    if let Some(signal) = parent_death_signal {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the hook only makes async-signal-safe syscalls (prctl,
        // getppid) and does not allocate, as required between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then no
                // signal will ever come, so refuse to start.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root_and_missing_users() {
        assert_eq!(lookup_user("root").unwrap().map(|r| r.uid), Some(0));
        assert_eq!(lookup_user("no-such-user-portcullis").unwrap(), None);
    }
}
