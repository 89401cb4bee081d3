#![cfg(not(loom))]
//! `#[maniac::test]`: the runtime it builds, with tokio's arguments.

use std::io;

use maniac::runtime::{Handle, RuntimeFlavor};

#[maniac::test]
async fn the_default_flavour_is_current_thread() {
    let handle = Handle::current();
    assert_eq!(handle.runtime_flavor(), RuntimeFlavor::CurrentThread);
    assert_eq!(handle.metrics().num_workers(), 1);
    // Spawned tasks run on the test's own thread.
    let me = std::thread::current().id();
    assert_eq!(
        maniac::spawn(async move { std::thread::current().id() })
            .await
            .unwrap(),
        me
    );
}

#[maniac::test(flavor = "current_thread")]
async fn flavor_current_thread_is_accepted() {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::CurrentThread
    );
}

#[maniac::test(flavor = "multi_thread")]
async fn flavor_multi_thread_builds_a_multi_thread_runtime() {
    let handle = Handle::current();
    assert_eq!(handle.runtime_flavor(), RuntimeFlavor::MultiThread);
    let in_task = maniac::spawn(async { Handle::current().runtime_flavor() })
        .await
        .unwrap();
    assert_eq!(in_task, RuntimeFlavor::MultiThread);
}

#[maniac::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_sets_the_number_of_workers() {
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    // Both workers take tasks: two tasks that wait for each other at a barrier finish.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            maniac::spawn(async move {
                barrier.wait();
                std::thread::current().id()
            })
        })
        .collect();
    let mut threads = std::collections::HashSet::new();
    for handle in handles {
        threads.insert(handle.await.unwrap());
    }
    assert_eq!(threads.len(), 2);
}

#[maniac::test(flavor = "multi_thread", worker_threads = 3)]
async fn worker_threads_three() {
    assert_eq!(Handle::current().metrics().num_workers(), 3);
}

#[maniac::test]
async fn a_test_may_return_a_result() -> Result<(), io::Error> {
    let value = maniac::spawn(async { 21 }).await?;
    assert_eq!(value * 2, 42);
    Ok(())
}

#[maniac::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_thread_test_may_return_a_result() -> Result<(), Box<dyn std::error::Error>> {
    let value = maniac::task::spawn_blocking(|| 5).await?;
    assert_eq!(value, 5);
    Ok(())
}

#[maniac::test(crate = "maniac")]
async fn the_crate_argument_names_the_runtime_crate() {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::CurrentThread
    );
}

// `#[should_panic]` is kept by the macro and applies to the generated test.
#[maniac::test]
#[should_panic(expected = "inside the macro")]
async fn a_panicking_test_body_fails_the_test() {
    maniac::task::yield_now().await;
    panic!("[expected panic] inside the macro");
}
