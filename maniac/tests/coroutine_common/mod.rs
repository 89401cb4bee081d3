#![cfg(not(loom))]
//! Helpers shared by the `coroutine_*` tests: thread ids, checksums over data held across a
//! switch, runtimes with coroutine settings, a quiet panic hook that also hides the library's own
//! `sync_await` refusals, and child processes (for process-global stack counters, stderr and
//! signals).
//!
//! A child-process test is one `#[test]` that runs its real body only when the environment
//! variable [`CHILD_ENV`] names it; otherwise it re-executes this test binary with
//! `--exact <name> --test-threads=1` and checks what the child did. Every wait is bounded: a
//! child that runs out of time is killed (by its process id) and the test fails.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::panic;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{EXPECTED, TIMEOUT, panic_message};

/// The OS thread id of the calling thread (`gettid(2)`): unlike `std::thread::ThreadId`, it says
/// which kernel thread really runs the code, which is what thread affinity is about.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Data for a task to hold across a switch: `len` words derived from `seed`.
pub fn make_data(seed: u64, len: usize) -> Vec<u64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// An order-sensitive checksum, so that a corrupted or reordered word changes it.
pub fn checksum(data: &[u64]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |acc, &word| {
        (acc ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(5)
    })
}

/// A multi-thread runtime with `workers` workers and a coroutine stack of `stack_size` bytes.
pub fn multi_with_stack(workers: usize, stack_size: usize) -> maniac::runtime::Runtime {
    maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .coroutine_stack_size(stack_size)
        .build()
        .expect("cannot build a multi-thread runtime")
}

/// The start of the library's panic message when `sync_await` is called where it may not be.
pub const SYNC_AWAIT_REFUSAL: &str = "maniac::coroutine::sync_await called outside";

/// The library's refusals that tests trigger on purpose (and the quiet hook hides).
const REFUSALS: [&str; 3] = [
    SYNC_AWAIT_REFUSAL,
    "maniac::coroutine::pin_stack() called outside a task",
    "maniac::coroutine::spawn_pinned: there is no maniac runtime",
];

/// Installs (once per test binary) a panic hook that hides the panics tests trigger on purpose:
/// those whose message contains [`EXPECTED`], and the library refusals above. Every other panic
/// is reported as usual.
pub fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if panic_message(info.payload()).is_some_and(|m| {
                m.contains(EXPECTED) || REFUSALS.iter().any(|refusal| m.contains(refusal))
            }) {
                return;
            }
            default(info);
        }));
    });
}

/// The text of a task's panic, from the `JoinError` its handle returned.
#[track_caller]
pub fn join_panic_text(error: maniac::task::JoinError) -> String {
    assert!(error.is_panic(), "expected a panic, got {error:?}");
    let payload = error.into_panic();
    panic_message(&*payload)
        .unwrap_or("<non-string payload>")
        .to_owned()
}

/// The environment variable that names the test a child process must run for real.
pub const CHILD_ENV: &str = "MANIAC_COROUTINE_TEST_CHILD";

/// Whether this process is the child that must run test `name`'s body.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|value| value == name)
}

/// What a child process did.
#[derive(Debug)]
pub struct ChildOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutput {
    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// Fails the test unless the child's test passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.status.success() && self.stdout.contains("1 passed"),
            "the child process failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs test `name` of this binary in a child process (its body runs for real there, see
/// [`is_child`]) and returns what it did; kills it and fails after `timeout`.
#[track_caller]
pub fn run_child(name: &str, timeout: Duration) -> ChildOutput {
    let mut child = Command::new(std::env::current_exe().expect("no test binary path"))
        // `--include-ignored`: the parent may be running an ignored test on purpose.
        .args([
            name,
            "--exact",
            "--test-threads=1",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_ENV, name)
        // Keep the child's stderr to what the test looks for.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the child process");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let reader = thread::spawn(move || {
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let _ = stdout.read_to_string(&mut out);
        let err = reader.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((status, out, err));
    });
    match rx.recv_timeout(timeout) {
        Ok((status, stdout, stderr)) => ChildOutput {
            status: status.expect("cannot wait for the child process"),
            stdout,
            stderr,
        },
        Err(_) => {
            // SAFETY: kill(2) on the id of the child we started (and have not reaped: its waiter
            // thread is still blocked), with a valid signal number.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("child process for {name} timed out after {timeout:?} and was killed");
        }
    }
}

/// The bound of a child process (debug build, 2 cores, other tests running alongside).
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// For a child that is meant to die by a signal: no core dump.
pub fn disable_core_dumps() {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering our own limit is always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
}

/// Field `index` of `/proc/self/statm` (0: virtual size, 1: resident set), in bytes.
fn statm_bytes(index: usize) -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("cannot read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(index)
        .and_then(|field| field.parse().ok())
        .expect("malformed /proc/self/statm");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("sysconf(_SC_PAGESIZE) failed")
}

/// This process's resident set size in bytes.
pub fn rss_bytes() -> usize {
    statm_bytes(1)
}

/// This process's virtual size in bytes.
pub fn virtual_size() -> usize {
    statm_bytes(0)
}

/// Lowers this process's address-space limit (`RLIMIT_AS`) to `headroom` bytes above its
/// current virtual size, so that any larger mapping fails from now on.
pub fn limit_address_space(headroom: usize) {
    let limit = libc::rlimit {
        rlim_cur: (virtual_size() + headroom) as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering our own soft limit is always allowed.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(result, 0, "setrlimit(RLIMIT_AS) failed");
}

/// Stacks mapped and not yet unmapped by this process.
pub fn live_stacks() -> usize {
    let stats = maniac::coroutine::stack_stats();
    stats.mapped - stats.unmapped
}

/// The two halves of a child-process test named `name` (the `#[test]` function's own name): in
/// the child, runs `body` and returns `None`; in the parent, runs the child and returns what it
/// did, for the caller to check.
#[track_caller]
pub fn in_child(name: &str, body: impl FnOnce()) -> Option<ChildOutput> {
    if is_child(name) {
        body();
        None
    } else {
        Some(run_child(name, CHILD_TIMEOUT))
    }
}

/// Spins (without yielding to the runtime) until `release` is set, false after `TIMEOUT`.
pub fn hold_worker(release: &AtomicBool) -> bool {
    // Inside `no_preempt`: holding the worker is the point, and preemption would free it.
    maniac::preempt::no_preempt(|| {
        let deadline = Instant::now() + TIMEOUT;
        while !release.load(SeqCst) {
            if Instant::now() > deadline {
                return false;
            }
            std::hint::spin_loop();
        }
        true
    })
}
