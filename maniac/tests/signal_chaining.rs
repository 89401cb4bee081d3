#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! The preemption signal's handler chains (`signals` module doc, `preempt::signal` rule 2): a
//! signal that is not one of the runtime's requests (nor a worker's own timer) goes to the action
//! installed before ours, the program's own `pthread_kill` to a worker included, and a stray one
//! never disables preemption. One test: signal dispositions are the process's.

mod common;
mod preempt_common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::bounded;
use preempt_common::hog_for;

/// Calls of the handler the test installs before any runtime exists.
static EARLIER_HANDLER_CALLS: AtomicUsize = AtomicUsize::new(0);
/// Those of them for a queued signal (`SI_QUEUE`): the runtime's requests are sent so, and the
/// test sends none.
static EARLIER_HANDLER_QUEUED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn earlier_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    EARLIER_HANDLER_CALLS.fetch_add(1, SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_QUEUE {
        EARLIER_HANDLER_QUEUED.fetch_add(1, SeqCst);
    }
}

fn install_earlier_handler(signal: libc::c_int) {
    // SAFETY: a zeroed sigaction filled in with an SA_SIGINFO handler of the right signature.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = earlier_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Runs a 60 ms hog on a fresh 1-worker runtime preempting with `signal`, beside a task that
/// sleeps; returns the preemptions counted.
fn preempt_a_hog(signal: libc::c_int) -> u64 {
    maniac::preempt::prepare();
    let rt = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .preemption_signal(signal)
        .build()
        .unwrap();
    rt.block_on(async {
        let hog = maniac::spawn(async {
            let start = Instant::now();
            let mut x = 1u64;
            while start.elapsed() < Duration::from_millis(60) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        });
        for _ in 0..5 {
            maniac::time::sleep(Duration::from_millis(2)).await;
        }
        hog.await.unwrap();
    });
    rt.metrics().preemptions()
}

/// Sets whether `signal` is blocked on this thread.
fn block_signal(signal: libc::c_int, block: bool) {
    // SAFETY: a zeroed sigset filled by sigemptyset; the call changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

/// On a fresh 1-worker runtime preempting with `signal`, a hog that computes for 20 ms
/// (preempted meanwhile), blocks the signal for 20 ms of computing (its worker's own timer
/// fires into the block, and the monitor, finding the timer silent, sends a request whose
/// signal merges into that pending one), unblocks it and computes 20 ms more, sleeps (its
/// worker parks, which disarms the timer: the next hog is the monitor's alone, and gets no
/// request if the merged one were still pending) and computes 20 ms more. Returns the
/// preemptions counted before the block, after it, and after the sleep.
fn preempt_a_hog_that_blocks_the_signal(signal: libc::c_int) -> [u64; 3] {
    maniac::preempt::prepare();
    let rt = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .preemption_signal(signal)
        .build()
        .unwrap();
    let preemptions = || maniac::runtime::Handle::current().metrics().preemptions();
    rt.block_on(rt.spawn(async move {
        hog_for(1, Duration::from_millis(20));
        let before = preemptions();
        block_signal(signal, true);
        hog_for(1, Duration::from_millis(20));
        block_signal(signal, false);
        let unblocked = preemptions();
        hog_for(1, Duration::from_millis(20));
        let after = preemptions() - unblocked;
        maniac::time::sleep(Duration::from_millis(5)).await;
        let woken = preemptions();
        hog_for(1, Duration::from_millis(20));
        [before, after, preemptions() - woken]
    }))
    .unwrap()
}

/// On a fresh 1-worker runtime preempting with `signal`, a hog that computes while this thread
/// sends `signal` to the hog's worker thread `count` times, 2 ms apart, as `pthread_kill` does
/// (a `tgkill` from this process). Returns the preemptions counted.
fn preempt_a_hog_while_signalling_its_worker(signal: libc::c_int, count: usize) -> u64 {
    maniac::preempt::prepare();
    let rt = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .preemption_signal(signal)
        .build()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (worker_sender, worker) = std::sync::mpsc::channel();
    let hog = rt.spawn({
        let stop = stop.clone();
        async move {
            // SAFETY: gettid has no preconditions.
            worker_sender.send(unsafe { libc::gettid() }).unwrap();
            let mut x = 1u64;
            while !stop.load(SeqCst) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        }
    });
    let worker = worker.recv().unwrap();
    for _ in 0..count {
        // SAFETY: tgkill only sends a signal, to the runtime's worker thread, alive until the
        // runtime is dropped below; the signal is handled.
        let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), worker, signal) };
        assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, SeqCst);
    rt.block_on(hog).unwrap();
    rt.metrics().preemptions()
}

/// Fires a one-shot POSIX timer of the test's own once at thread `tid` with `signal`, and
/// deletes it after it has fired.
fn fire_timer_at(tid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: a zeroed sigevent filled in for SIGEV_THREAD_ID; the timer is deleted below, after
    // its one expiry (10 ms) has had a second to be delivered.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_notify_thread_id = tid;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
            0
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            },
        };
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
            0
        );
        std::thread::sleep(Duration::from_secs(1));
        libc::timer_delete(timer);
    }
}

/// Waits until the earlier handler has been called `calls` times in all.
fn expect_earlier_calls(calls: usize, what: &str) {
    let start = Instant::now();
    while EARLIER_HANDLER_CALLS.load(SeqCst) < calls {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: the earlier handler saw {} of {calls} signals",
            EARLIER_HANDLER_CALLS.load(SeqCst)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(EARLIER_HANDLER_CALLS.load(SeqCst), calls, "{what}");
}

#[test]
fn signals_that_are_not_requests_reach_the_earlier_handler_and_strays_never_disable_preemption() {
    if !maniac::preempt::is_supported() {
        eprintln!("preemption is not supported here: nothing to test");
        return;
    }
    bounded(|| {
        // A handler of the program's own, on the signal the runtime is told to use.
        install_earlier_handler(libc::SIGUSR2);
        assert!(
            preempt_a_hog(libc::SIGUSR2) > 0,
            "the hog was never preempted"
        );
        // The runtime's requests were all its own: none reached the earlier handler.
        assert_eq!(EARLIER_HANDLER_CALLS.load(SeqCst), 0);
        // Signals from elsewhere: to the process (SI_USER), and to a thread with tgkill from this
        // process while no request is pending (the worker has exited by now, so to this thread).
        // One at a time: standard signals pending together are delivered once.
        for sent in 1..=5 {
            // SAFETY: sending a signal whose handler is installed.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
            expect_earlier_calls(sent, "kill");
        }
        // SAFETY: as above, to this very thread.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::gettid(),
                libc::SIGUSR2,
            );
        }
        expect_earlier_calls(6, "tgkill");
        // A POSIX timer of the program's own on that signal, firing at a worker thread: not the
        // worker's own timer (another value), so it goes to the earlier handler too.
        maniac::preempt::prepare();
        let rt = maniac::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .preemption_signal(libc::SIGUSR2)
            .build()
            .unwrap();
        // SAFETY: gettid has no preconditions.
        let worker = rt.block_on(rt.spawn(async { unsafe { libc::gettid() } }));
        fire_timer_at(worker.unwrap(), libc::SIGUSR2);
        expect_earlier_calls(7, "a foreign timer's signal at a worker");
        drop(rt);
        // A task that blocks the signal for a while: the signals of ours merged meanwhile are
        // still ours when it unblocks, and preemption goes on.
        let [before, after, after_sleep] = preempt_a_hog_that_blocks_the_signal(libc::SIGUSR2);
        assert!(
            before > 0 && after > 0 && after_sleep > 0,
            "preemptions before the block {before}, after it {after}, after a sleep {after_sleep}"
        );
        expect_earlier_calls(7, "signals merged while the worker blocked them");
        // And preemption still works after them.
        assert!(
            preempt_a_hog(libc::SIGUSR2) > 0,
            "no preemption after the foreign SIGUSR2s"
        );
        // The program's own `pthread_kill`s at a worker whose hog is being preempted: every one
        // reaches the earlier handler, none is taken for a request, and no request's signal is
        // passed on in its place. A real-time signal, so that the kernel keeps every instance
        // (of a standard signal sent twice before it is delivered it keeps one, whoever the
        // senders).
        let realtime = libc::SIGRTMIN() + 2;
        install_earlier_handler(realtime);
        assert!(
            preempt_a_hog_while_signalling_its_worker(realtime, 40) > 0,
            "the hog was never preempted beside the foreign signals"
        );
        expect_earlier_calls(47, "pthread_kill to a worker being preempted");
        assert_eq!(
            EARLIER_HANDLER_CALLS.load(SeqCst),
            47,
            "the earlier handler got signals of the runtime's"
        );

        // SIGURG, the default, whose earlier action is the default (ignore): stray ones are
        // ignored, as they would have been, and leave the runtime's handler in place.
        assert!(
            preempt_a_hog(libc::SIGURG) > 0,
            "the hog was never preempted with SIGURG"
        );
        for _ in 0..20 {
            // SAFETY: SIGURG is handled (by the runtime's handler) and ignored by default.
            unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            preempt_a_hog(libc::SIGURG) > 0,
            "stray SIGURGs disabled preemption (the handler was reset to the default)"
        );
        assert_eq!(EARLIER_HANDLER_CALLS.load(SeqCst), 47);
        assert_eq!(
            EARLIER_HANDLER_QUEUED.load(SeqCst),
            0,
            "requests' signals reached the earlier handler"
        );
    });
}
