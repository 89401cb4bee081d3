#![cfg(not(loom))]
//! The runtime API: Builder validation and options, the runtime context (`Handle::current`,
//! `enter`, `block_on` rules), flavours, metrics and thread callbacks.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use common::{Counter, TIMEOUT, bounded, current, multi, panic_text};
use maniac::runtime::{Builder, Handle, Runtime, RuntimeFlavor};

#[test]
fn zero_worker_threads_is_an_invalid_input_error() {
    let error = Builder::new_multi_thread()
        .worker_threads(0)
        .build()
        .expect_err("a runtime with no workers was built");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("worker_threads"), "{error}");
}

#[test]
fn too_many_worker_threads_is_an_invalid_input_error() {
    let error = Builder::new_multi_thread()
        .worker_threads(1 << 20)
        .build()
        .expect_err("a runtime with a million workers was built");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
}

#[test]
fn zero_max_blocking_threads_is_an_invalid_input_error() {
    for mut builder in [Builder::new_multi_thread(), Builder::new_current_thread()] {
        let error = builder
            .worker_threads(1)
            .max_blocking_threads(0)
            .build()
            .expect_err("a runtime with no blocking threads was built");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(
            error.to_string().contains("max_blocking_threads"),
            "{error}"
        );
    }
}

#[test]
fn preemption_quanta_outside_100_us_to_100_ms_are_invalid_input_errors() {
    for quantum in [
        Duration::ZERO,
        Duration::from_micros(99),
        Duration::from_millis(101),
        Duration::MAX,
    ] {
        let error = Builder::new_multi_thread()
            .worker_threads(1)
            .preemption_quantum(quantum)
            .build()
            .expect_err("an out-of-range quantum was accepted");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("preemption_quantum"), "{error}");
    }
    for quantum in [maniac::preempt::MIN_QUANTUM, maniac::preempt::MAX_QUANTUM] {
        Builder::new_multi_thread()
            .worker_threads(1)
            .preemption_quantum(quantum)
            .build()
            .expect("a quantum at the edge of the range was refused");
    }
}

#[test]
fn reserved_or_impossible_preemption_signals_are_invalid_input_errors() {
    for signal in [
        0,
        -1,
        65,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGABRT,
    ] {
        let error = Builder::new_multi_thread()
            .worker_threads(1)
            .preemption_signal(signal)
            .build()
            .expect_err("a reserved signal was accepted");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("preemption_signal"), "{error}");
    }
}

#[test]
fn preemption_is_on_by_default_for_multi_thread_runtimes_only() {
    let multi_default = multi(1);
    assert_eq!(
        multi_default.metrics().preemption_enabled(),
        maniac::preempt::is_supported()
    );
    assert_eq!(
        multi_default.metrics().worker_preemption(0).is_some(),
        maniac::preempt::is_supported()
    );
    assert!(multi_default.metrics().worker_preemption(1).is_none());
    let off = Builder::new_multi_thread()
        .worker_threads(1)
        .preemption(false)
        .build()
        .unwrap();
    assert!(!off.metrics().preemption_enabled());
    assert!(off.metrics().worker_preemption(0).is_none());
    assert_eq!(off.metrics().preemptions(), 0);
    // A current-thread runtime's next block_on may run on another thread: never preempted.
    assert!(!current().metrics().preemption_enabled());
}

/// Whether this process may give a thread the lowest real-time priority (tried on a scratch
/// thread).
fn realtime_permitted() -> bool {
    thread::spawn(|| {
        let lowest = libc::sched_param { sched_priority: 1 };
        // SAFETY: changes only the scheduling of this scratch thread, which then exits.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &lowest) == 0 }
    })
    .join()
    .unwrap()
}

#[test]
fn the_preemption_monitor_may_go_realtime_by_default_where_permitted() {
    if !maniac::preempt::is_supported() {
        return;
    }
    let permitted = realtime_permitted();
    assert_eq!(
        multi(1).metrics().preemption_monitor_realtime(),
        permitted,
        "the default monitor's priority (real-time permitted here: {permitted})"
    );
    let normal = Builder::new_multi_thread()
        .worker_threads(1)
        .preemption_realtime_monitor(false)
        .build()
        .unwrap();
    assert!(!normal.metrics().preemption_monitor_realtime());
    let off = Builder::new_multi_thread()
        .worker_threads(1)
        .preemption(false)
        .build()
        .unwrap();
    assert!(!off.metrics().preemption_monitor_realtime());
}

#[test]
fn zero_global_queue_interval_is_an_invalid_input_error() {
    let error = Builder::new_multi_thread()
        .worker_threads(1)
        .global_queue_interval(0)
        .build()
        .expect_err("a zero global queue interval was accepted");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
}

#[test]
fn global_queue_interval_of_one_still_runs_everything() {
    bounded(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .global_queue_interval(1)
            .build()
            .unwrap();
        let sum = rt.block_on(async {
            let handles: Vec<_> = (0..2_000u64)
                .map(|i| {
                    maniac::spawn(async move {
                        let inner = maniac::spawn(async move { i });
                        maniac::task::yield_now().await;
                        inner.await.unwrap()
                    })
                })
                .collect();
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 2_000 * 1_999 / 2);
    });
}

#[test]
fn current_thread_ignores_worker_threads() {
    let rt = Builder::new_current_thread()
        .worker_threads(8)
        .build()
        .unwrap();
    assert_eq!(rt.metrics().num_workers(), 1);
}

#[test]
fn spawn_outside_a_runtime_panics_naming_the_maniac_runtime() {
    let message = panic_text(|| maniac::spawn(async {}));
    assert!(message.contains("maniac runtime"), "{message}");
    let message = panic_text(|| maniac::task::spawn_blocking(|| {}));
    assert!(message.contains("maniac runtime"), "{message}");
    let message = panic_text(Handle::current);
    assert!(message.contains("maniac runtime"), "{message}");
    let message = panic_text(|| {
        let mut set = maniac::task::JoinSet::new();
        set.spawn(async {});
    });
    assert!(message.contains("maniac runtime"), "{message}");
}

#[test]
fn block_on_inside_a_task_panics_and_fails_only_that_task() {
    bounded(|| {
        let rt = Arc::new(multi(2));
        let other = Arc::new(current());
        let results = rt.block_on(async {
            let same = {
                let rt = rt.clone();
                maniac::spawn(async move { rt.block_on(async { 1 }) })
            };
            let via_handle = maniac::spawn(async { Handle::current().block_on(async { 2 }) });
            let other_runtime = {
                let other = other.clone();
                maniac::spawn(async move { other.block_on(async { 3 }) })
            };
            let bystander = maniac::spawn(async { 4 });
            (
                same.await,
                via_handle.await,
                other_runtime.await,
                bystander.await,
            )
        });
        for (what, result) in [
            ("Runtime::block_on", results.0),
            ("Handle::block_on", results.1),
            ("another runtime's block_on", results.2),
        ] {
            let error = result.expect_err(what);
            assert!(error.is_panic(), "{what}: {error:?}");
            let payload = error.into_panic();
            let message = common::panic_message(&*payload).unwrap_or("");
            assert!(message.contains("block_on"), "{what}: {message}");
        }
        assert_eq!(results.3.unwrap(), 4);
        // The workers that refused still run tasks, and block_on from a plain thread works.
        let sum = rt.block_on(async {
            let handles: Vec<_> = (0..100).map(|i| maniac::spawn(async move { i })).collect();
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 4950);
        assert_eq!(other.block_on(async { 5 }), 5);
    });
}

#[test]
fn block_on_inside_a_current_thread_task_panics_and_fails_only_that_task() {
    bounded(|| {
        let rt = current();
        let (failed, ok) = rt.block_on(async {
            let failed = maniac::spawn(async { Handle::current().block_on(async { 1 }) });
            let ok = maniac::spawn(async { 2 });
            (failed.await, ok.await)
        });
        let error = failed.expect_err("block_on inside a task");
        assert!(error.is_panic());
        assert!(error.to_string().contains("block_on"), "{error}");
        assert_eq!(ok.unwrap(), 2);
        assert_eq!(
            rt.block_on(async { maniac::spawn(async { 3 }).await.unwrap() }),
            3
        );
    });
}

#[test]
fn nested_block_on_panics_and_the_thread_recovers() {
    for (name, make) in common::flavours() {
        bounded(move || {
            let rt = make();
            let message = panic_text(|| rt.block_on(async { rt.block_on(async { 1 }) }));
            assert!(message.contains("block_on"), "{name}: {message}");
            // The unwinding restored the thread's state: block_on works again, tasks run.
            let value = rt.block_on(async { maniac::spawn(async { 41 }).await.unwrap() + 1 });
            assert_eq!(value, 42, "{name}");
            assert!(Handle::try_current().is_err(), "{name}: the context leaked");
        });
    }
}

#[test]
fn handle_block_on_works_inside_spawn_blocking() {
    for (name, make) in common::flavours() {
        bounded(move || {
            let rt = make();
            let value = rt.block_on(async {
                maniac::task::spawn_blocking(|| {
                    Handle::current().block_on(async {
                        let a = maniac::spawn(async { 20 }).await.unwrap();
                        maniac::task::yield_now().await;
                        a + 1
                    })
                })
                .await
                .unwrap()
            });
            assert_eq!(value, 21, "{name}");
        });
    }
}

#[test]
fn handle_current_and_try_current_follow_the_context() {
    bounded(|| {
        let error = Handle::try_current().expect_err("a plain thread has no runtime");
        assert!(error.is_missing_context());
        assert!(!error.is_thread_local_destroyed());
        assert!(error.to_string().contains("maniac runtime"), "{error}");

        let rt = multi(3);
        let seen = rt.block_on(async {
            let in_block_on = Handle::current().metrics().num_workers();
            let in_task = maniac::spawn(async { Handle::current().metrics().num_workers() })
                .await
                .unwrap();
            let in_blocking = maniac::task::spawn_blocking(|| {
                Handle::try_current().map(|h| h.metrics().num_workers())
            })
            .await
            .unwrap()
            .unwrap();
            (in_block_on, in_task, in_blocking)
        });
        assert_eq!(seen, (3, 3, 3));
        assert!(
            Handle::try_current().is_err(),
            "block_on left its context behind"
        );
    });
}

#[test]
fn enter_makes_spawn_work_outside_block_on_and_restores_the_previous_context() {
    bounded(|| {
        let a = multi(2);
        let b = multi(3);
        let handle = {
            let _a = a.enter();
            assert_eq!(Handle::current().metrics().num_workers(), 2);
            {
                let _b = b.enter();
                assert_eq!(Handle::current().metrics().num_workers(), 3);
            }
            assert_eq!(
                Handle::current().metrics().num_workers(),
                2,
                "dropping the inner guard did not restore the outer runtime"
            );
            maniac::spawn(async { Handle::current().metrics().num_workers() })
        };
        assert!(
            Handle::try_current().is_err(),
            "the guard left its context behind"
        );
        assert!(panic_text(|| maniac::spawn(async {})).contains("maniac runtime"));
        assert_eq!(futures::executor::block_on(handle).unwrap(), 2);
    });
}

#[test]
fn thread_name_is_applied_to_workers_and_blocking_threads() {
    bounded(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("custom-worker")
            .build()
            .unwrap();
        let (task_name, blocking_name) = rt.block_on(async {
            let task = maniac::spawn(async { thread::current().name().map(str::to_owned) });
            let blocking =
                maniac::task::spawn_blocking(|| thread::current().name().map(str::to_owned));
            (task.await.unwrap(), blocking.await.unwrap())
        });
        assert_eq!(task_name.as_deref(), Some("custom-worker"));
        assert_eq!(blocking_name.as_deref(), Some("custom-worker"));

        let default = multi(1);
        let name = default.block_on(async {
            maniac::spawn(async { thread::current().name().map(str::to_owned) })
                .await
                .unwrap()
        });
        assert_eq!(name.as_deref(), Some("maniac-runtime-worker"));
    });
}

#[test]
fn thread_name_fn_is_called_for_each_thread() {
    bounded(|| {
        let calls = Arc::new(AtomicUsize::new(0));
        let rt = {
            let calls = calls.clone();
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name_fn(move || format!("named-{}", calls.fetch_add(1, SeqCst)))
                .build()
                .unwrap()
        };
        assert_eq!(calls.load(SeqCst), 2, "one name per worker");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let names: HashSet<String> = rt.block_on(async {
            // Two tasks that meet at a barrier run on both workers.
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let barrier = barrier.clone();
                    maniac::spawn(async move {
                        barrier.wait();
                        thread::current().name().unwrap().to_owned()
                    })
                })
                .collect();
            let mut names = HashSet::new();
            for handle in handles {
                names.insert(handle.await.unwrap());
            }
            names
        });
        let expected: HashSet<String> = ["named-0".to_owned(), "named-1".to_owned()].into();
        assert_eq!(names, expected);
        let blocking =
            rt.block_on(rt.spawn_blocking(|| thread::current().name().unwrap().to_owned()));
        assert_eq!(blocking.unwrap(), "named-2");
        assert_eq!(calls.load(SeqCst), 3);
    });
}

#[test]
fn thread_start_and_stop_callbacks_run_once_per_thread_and_balance() {
    bounded(|| {
        let starts = Counter::new();
        let stops = Counter::new();
        let start_threads = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let rt = {
            let (starts, stops, start_threads) =
                (starts.clone(), stops.clone(), start_threads.clone());
            Builder::new_multi_thread()
                .worker_threads(3)
                .on_thread_start(move || {
                    start_threads.lock().unwrap().insert(thread::current().id());
                    starts.inc();
                })
                .on_thread_stop(move || stops.inc())
                .build()
                .unwrap()
        };
        starts.expect(3, TIMEOUT, "three worker starts");
        rt.block_on(async { maniac::task::spawn_blocking(|| {}).await.unwrap() });
        starts.expect(4, TIMEOUT, "three workers and one blocking thread");
        assert_eq!(stops.get(), 0, "a thread stopped while the runtime runs");
        drop(rt);
        assert_eq!(starts.get(), 4, "a start callback ran twice");
        assert_eq!(
            stops.get(),
            4,
            "stop callbacks do not balance the starts after drop"
        );
        assert_eq!(
            start_threads.lock().unwrap().len(),
            4,
            "a thread started twice"
        );
    });
}

#[test]
fn thread_callbacks_run_inside_the_runtime_context() {
    bounded(|| {
        let in_context = Counter::new();
        let calls = Counter::new();
        let rt = {
            let (start_ok, start_calls) = (in_context.clone(), calls.clone());
            let (stop_ok, stop_calls) = (in_context.clone(), calls.clone());
            Builder::new_multi_thread()
                .worker_threads(2)
                .on_thread_start(move || {
                    start_calls.inc();
                    if Handle::try_current().is_ok() {
                        start_ok.inc();
                    }
                })
                .on_thread_stop(move || {
                    stop_calls.inc();
                    if Handle::try_current().is_ok() {
                        stop_ok.inc();
                    }
                })
                .build()
                .unwrap()
        };
        rt.block_on(async { maniac::task::spawn_blocking(|| {}).await.unwrap() });
        drop(rt);
        assert_eq!(calls.get(), 6, "3 threads, 2 callbacks each");
        assert_eq!(
            in_context.get(),
            6,
            "callbacks that saw the runtime's Handle"
        );
    });
}

#[test]
fn runtime_flavor_and_num_workers_describe_the_runtime() {
    bounded(|| {
        let rt = multi(3);
        assert_eq!(rt.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(rt.metrics().num_workers(), 3);
        assert_eq!(
            rt.block_on(async { Handle::current().runtime_flavor() }),
            RuntimeFlavor::MultiThread
        );
        let rt = current();
        assert_eq!(rt.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        assert_eq!(rt.metrics().num_workers(), 1);
        assert_eq!(
            rt.block_on(async {
                maniac::spawn(async { Handle::current().runtime_flavor() })
                    .await
                    .unwrap()
            }),
            RuntimeFlavor::CurrentThread
        );
        let rt = Runtime::new().unwrap();
        assert_eq!(rt.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert!(rt.metrics().num_workers() >= 1);
    });
}

#[test]
fn num_alive_tasks_counts_unfinished_tasks() {
    for (name, make) in common::flavours() {
        bounded(move || {
            let rt = make();
            assert_eq!(rt.metrics().num_alive_tasks(), 0, "{name}");
            let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
            let handles: Vec<_> = (0..5)
                .map(|_| {
                    let mut rx = tx.subscribe();
                    rt.spawn(async move {
                        let _ = rx.recv().await;
                    })
                })
                .collect();
            assert_eq!(rt.metrics().num_alive_tasks(), 5, "{name}");
            tx.send(()).unwrap();
            rt.block_on(async {
                for handle in handles {
                    handle.await.unwrap();
                }
            });
            assert_eq!(rt.metrics().num_alive_tasks(), 0, "{name}");
        });
    }
}

#[test]
fn current_thread_does_not_run_spawned_tasks_outside_block_on() {
    bounded(|| {
        let rt = current();
        let ran_on = Arc::new(std::sync::Mutex::new(None));
        let flag = Arc::new(AtomicBool::new(false));
        let handle = {
            let (ran_on, flag) = (ran_on.clone(), flag.clone());
            rt.spawn(async move {
                *ran_on.lock().unwrap() = Some(thread::current().id());
                flag.store(true, SeqCst);
            })
        };
        // Give a (wrongly) running background thread every chance to run it.
        for _ in 0..100 {
            thread::yield_now();
        }
        assert!(
            !flag.load(SeqCst),
            "a current-thread task ran outside block_on"
        );
        assert!(!handle.is_finished());
        rt.block_on(handle).unwrap();
        assert!(flag.load(SeqCst));
        assert_eq!(
            *ran_on.lock().unwrap(),
            Some(thread::current().id()),
            "the task ran on another thread than block_on's"
        );
    });
}

#[test]
fn block_on_yield_now_lets_queued_current_thread_tasks_run() {
    bounded(|| {
        let rt = current();
        let flag = Arc::new(AtomicBool::new(false));
        {
            let flag = flag.clone();
            rt.spawn(async move { flag.store(true, SeqCst) });
        }
        assert!(
            !flag.load(SeqCst),
            "a current-thread task ran outside block_on"
        );
        rt.block_on(maniac::task::yield_now());
        assert!(
            flag.load(SeqCst),
            "block_on(yield_now()) did not let the queued task run"
        );
    });
}

#[test]
fn a_yielding_block_on_future_does_not_starve_current_thread_tasks() {
    bounded(|| {
        let rt = current();
        let flag = Arc::new(AtomicBool::new(false));
        let yields = rt.block_on({
            let flag = flag.clone();
            async move {
                let task_flag = flag.clone();
                maniac::spawn(async move { task_flag.store(true, SeqCst) });
                let mut yields = 0u32;
                while !flag.load(SeqCst) && yields < 10_000 {
                    maniac::task::yield_now().await;
                    yields += 1;
                }
                yields
            }
        });
        assert!(
            flag.load(SeqCst),
            "the spawned task never ran while block_on's future yielded {yields} times"
        );
    });
}

#[test]
fn a_block_on_future_that_keeps_spawning_does_not_starve_queued_tasks() {
    bounded(|| {
        let mut seen = Vec::new();
        for queued_from in ["outside (injector)", "inside block_on (local queue)"] {
            let rt = current();
            let ran = Arc::new(AtomicUsize::new(0));
            let spawn_eight =
                |spawn: &dyn Fn(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>)| {
                    for _ in 0..8 {
                        let ran = ran.clone();
                        spawn(Box::pin(async move {
                            ran.fetch_add(1, SeqCst);
                        }));
                    }
                };
            if queued_from.starts_with("outside") {
                spawn_eight(&|f| drop(rt.spawn(f)));
            }
            let iterations = rt.block_on(async {
                if queued_from.starts_with("inside") {
                    spawn_eight(&|f| drop(maniac::spawn(f)));
                }
                let mut iterations = 0u32;
                while ran.load(SeqCst) < 8 && iterations < 100_000 {
                    maniac::spawn(async {}).await.unwrap();
                    iterations += 1;
                }
                iterations
            });
            seen.push(format!(
                "queued {queued_from}: {} of 8 ran in {iterations} iterations",
                ran.load(SeqCst)
            ));
        }
        assert!(
            seen.iter().all(|s| s.contains(": 8 of 8")),
            "queued tasks starved: {seen:?}"
        );
    });
}

#[test]
fn block_on_of_the_same_current_thread_runtime_from_two_threads() {
    // The second caller waits for the core or completes on its own; both finish, and tasks the
    // second one spawns run.
    bounded(|| {
        let rt = Arc::new(current());
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let (holding_tx, holding_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.block_on(async move {
                    holding_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    1
                })
            })
        };
        holding_rx.recv_timeout(TIMEOUT).unwrap();
        let second = rt.block_on(async move {
            let value = maniac::spawn(async { 2 }).await.unwrap();
            release_tx.send(()).unwrap();
            value
        });
        assert_eq!(second, 2);
        assert_eq!(first.join().unwrap(), 1);
    });
}

/// The part of `worker_threads_env_var_sets_the_default` that runs in a child process (so that
/// the environment is never changed under the other tests); does nothing in a normal run.
#[test]
fn worker_threads_env_var_child() {
    let Ok(expect) = std::env::var("MANIAC_TEST_ENV_EXPECT") else {
        return;
    };
    let built = Builder::new_multi_thread().build();
    match expect.as_str() {
        "invalid" => {
            let error = built.expect_err("an unparsable MANIAC_WORKER_THREADS was accepted");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(
                error
                    .to_string()
                    .contains(maniac::runtime::WORKER_THREADS_ENV)
            );
        }
        count => {
            assert_eq!(
                built.unwrap().metrics().num_workers(),
                count.parse().unwrap()
            );
        }
    }
    // An explicit count overrides the variable.
    let explicit = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    assert_eq!(explicit.metrics().num_workers(), 1);
}

#[test]
fn worker_threads_env_var_sets_the_default() {
    for (value, expect) in [("3", "3"), (" 5 ", "5"), ("many", "invalid")] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "worker_threads_env_var_child",
                "--exact",
                "--test-threads=1",
            ])
            .env(maniac::runtime::WORKER_THREADS_ENV, value)
            .env("MANIAC_TEST_ENV_EXPECT", expect)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "MANIAC_WORKER_THREADS={value:?}: child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Recursion that needs about `frames * 16 KiB` of stack.
fn deep(frames: u32) -> u64 {
    let buffer = std::hint::black_box([frames as u8; 16 * 1024]);
    if frames == 0 {
        return buffer[0] as u64;
    }
    deep(frames - 1) + buffer[buffer.len() - 1] as u64
}

/// The part of `thread_stack_size_is_applied` that runs in a child process: if the stack size
/// were ignored, the recursion would overflow the default 2 MiB stack and kill the process.
#[test]
fn thread_stack_size_child() {
    if std::env::var("MANIAC_TEST_STACK_CHILD").is_err() {
        return;
    }
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(64 << 20)
        .build()
        .unwrap();
    let expected: u64 = (0..=512u64).map(|f| f % 256).sum();
    let (in_task, in_blocking) = rt.block_on(async {
        let task = maniac::spawn(async { deep(512) }).await.unwrap();
        let blocking = maniac::task::spawn_blocking(|| deep(512)).await.unwrap();
        (task, blocking)
    });
    assert_eq!((in_task, in_blocking), (expected, expected));
}

#[test]
fn thread_stack_size_is_applied() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["thread_stack_size_child", "--exact", "--test-threads=1"])
        .env("MANIAC_TEST_STACK_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed ({}): 8 MiB of recursion on a 64 MiB thread_stack_size\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
