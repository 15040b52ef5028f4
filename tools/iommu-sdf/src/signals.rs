//! The termination signals (`SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGTERM`) `verify DIR -- COMMAND`
//! receives while its private copy exists (`crate::private_copy`). Left to their default
//! action they ended `verify` at once: the copy was left behind, and a signal sent to
//! `verify` alone (a CI timeout, `kill PID`) left COMMAND running on. Caught, a signal is
//! only noted (the handler stores a number: async-signal-safe, signal-safety(7));
//! `verify` then passes it on to COMMAND (while COMMAND is its unreaped child, so its
//! process ID cannot have been reused), waits for it, removes the copy, and ends by the
//! same signal, so that whoever sent it sees it. `SIGKILL` cannot be caught: it still
//! leaves the copy. A signal the caller ignores (`nohup`) stays ignored.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use libc::c_int;

/// The signals caught.
const SIGNALS: [c_int; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// The last signal received since `Caught::catch`, 0 if none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// The termination signals caught from `catch` on (each not ignored by the caller).
#[derive(Debug)]
pub struct Caught {
    signals: Vec<c_int>,
}

impl Caught {
    /// Catch every signal of `SIGNALS` the process does not ignore.
    pub fn catch() -> io::Result<Caught> {
        RECEIVED.store(0, Ordering::SeqCst);
        let mut signals = Vec::new();
        for signal in SIGNALS {
            // SAFETY: sigaction is plain data, all zeros a valid value (no handler, empty
            // mask, no flags) that sigaction(2) fills in.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above; the handler is set below.
            let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
            new.sa_sigaction = note as extern "C" fn(c_int) as usize;
            new.sa_flags = libc::SA_RESTART;
            // SAFETY: `new.sa_mask` is a sigset_t owned here.
            unsafe { libc::sigemptyset(&mut new.sa_mask) };
            // SAFETY: `note` only stores to an atomic (async-signal-safe); both pointers
            // are to sigaction values owned here.
            if unsafe { libc::sigaction(signal, &new, &mut old) } != 0 {
                return Err(io::Error::last_os_error());
            }
            if old.sa_sigaction == libc::SIG_IGN {
                // SAFETY: puts back the caller's disposition, read just above.
                unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
            } else {
                signals.push(signal);
            }
        }
        Ok(Caught { signals })
    }

    /// The signal received since `catch`, if any.
    pub fn received(&self) -> Option<c_int> {
        Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }

    /// Wait for `child`, passing it a signal received meanwhile (once).
    pub fn wait(&self, child: &mut Child) -> io::Result<ExitStatus> {
        let mut passed = false;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if let (Some(signal), false) = (self.received(), passed) {
                let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
                // SAFETY: `pid` is `child`'s, which `try_wait` has not reaped (it returned
                // None above), so the ID is still its process's.
                unsafe { libc::kill(pid, signal) };
                passed = true;
            }
            // The Microkit tool runs for seconds: a poll every 10 ms costs nothing.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// End the process by `signal`, as its default action would have (call once the
    /// private copy is removed).
    pub fn die_of(self, signal: c_int) -> ! {
        for s in &self.signals {
            // SAFETY: restores the default action for a signal this process caught.
            unsafe { libc::signal(*s, libc::SIG_DFL) };
        }
        // SAFETY: raise(3) sends `signal` to this thread; its default action ends the
        // process.
        unsafe { libc::raise(signal) };
        std::process::exit(128 + signal)
    }
}
