#![cfg(not(loom))]
//! maniac has no channels or locks of its own: `tokio::sync`, `async-channel` and
//! `futures::channel` work on it as they are, across workers and with wakes from plain threads.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{bounded, flavours, multi};
use futures::{SinkExt, StreamExt};

/// Runs `body` as a task on every flavour (2 and 4 workers, current_thread).
fn on_every_flavour<F, Fut>(body: F)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    for (name, make) in flavours() {
        let body = body.clone();
        bounded(move || {
            let rt = make();
            rt.block_on(async move { maniac::spawn(body()).await })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        });
    }
}

/// Spawns two tasks that start on two different workers (each holds its thread at a barrier
/// until the other is in).
fn spawn_pair<A, B>(
    a: A,
    b: B,
) -> (
    maniac::task::JoinHandle<A::Output>,
    maniac::task::JoinHandle<B::Output>,
)
where
    A: Future + Send + 'static,
    A::Output: Send + 'static,
    B: Future + Send + 'static,
    B::Output: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let a = maniac::spawn(async move {
        ba.wait();
        a.await
    });
    let b = maniac::spawn(async move {
        bb.wait();
        b.await
    });
    (a, b)
}

const ROUNDS: u64 = 20_000;

#[test]
fn tokio_mpsc_ping_pong_across_workers() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
            let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
            let (a, b) = spawn_pair(
                async move {
                    let mut threads = std::collections::HashSet::new();
                    for i in 0..ROUNDS {
                        ping_tx.send(i).await.unwrap();
                        assert_eq!(pong_rx.recv().await.unwrap(), i + 1);
                        threads.insert(thread::current().id());
                    }
                    threads.len()
                },
                async move {
                    let mut n = 0;
                    while let Some(i) = ping_rx.recv().await {
                        pong_tx.send(i + 1).await.unwrap();
                        n += 1;
                    }
                    n
                },
            );
            assert!(a.await.unwrap() >= 1);
            assert_eq!(b.await.unwrap(), ROUNDS);
        });
    });
}

#[test]
fn tokio_mpsc_many_producers_one_consumer() {
    on_every_flavour(|| async {
        const PRODUCERS: u64 = 8;
        const EACH: u64 = 1_000;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(4);
        for p in 0..PRODUCERS {
            let tx = tx.clone();
            maniac::spawn(async move {
                for i in 0..EACH {
                    tx.send(p * EACH + i).await.unwrap();
                }
            });
        }
        drop(tx);
        let (mut sum, mut count) = (0, 0);
        while let Some(v) = rx.recv().await {
            sum += v;
            count += 1;
        }
        assert_eq!(count, PRODUCERS * EACH);
        assert_eq!(sum, (0..PRODUCERS * EACH).sum::<u64>());
    });
}

#[test]
fn tokio_mpsc_unbounded_from_foreign_threads() {
    on_every_flavour(|| async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..1_000 {
                        tx.send(t * 1_000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut sum = 0;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sum, (0..4_000u64).sum::<u64>());
    });
}

#[test]
fn tokio_oneshot_across_tasks_and_from_foreign_threads() {
    on_every_flavour(|| async {
        let mut handles = Vec::new();
        let mut senders = Vec::new();
        for i in 0..200u64 {
            let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
            handles.push(maniac::spawn(async move { rx.await.unwrap() }));
            if i % 2 == 0 {
                maniac::spawn(async move { tx.send(i).unwrap() });
            } else {
                senders.push((i, tx));
            }
        }
        let sender = thread::spawn(move || {
            for (i, tx) in senders {
                tx.send(i).unwrap();
            }
        });
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.unwrap();
        }
        sender.join().unwrap();
        assert_eq!(sum, (0..200).sum::<u64>());
    });
}

#[test]
fn tokio_mutex_serialises_tasks_that_yield_while_holding_it() {
    on_every_flavour(|| async {
        let value = Arc::new(tokio::sync::Mutex::new(0u64));
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (value, inside) = (value.clone(), inside.clone());
                maniac::spawn(async move {
                    for _ in 0..200 {
                        let mut guard = value.lock().await;
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two tasks hold the lock");
                        let seen = *guard;
                        maniac::task::yield_now().await;
                        *guard = seen + 1;
                        inside.fetch_sub(1, SeqCst);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(*value.lock().await, 1_600);
    });
}

#[test]
fn tokio_notify_ping_pong_across_workers_and_notify_waiters() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let ping = Arc::new(tokio::sync::Notify::new());
            let pong = Arc::new(tokio::sync::Notify::new());
            let (a, b) = {
                let (ping_a, pong_a) = (ping.clone(), pong.clone());
                let (ping_b, pong_b) = (ping.clone(), pong.clone());
                spawn_pair(
                    async move {
                        for _ in 0..ROUNDS {
                            ping_a.notify_one();
                            pong_a.notified().await;
                        }
                    },
                    async move {
                        for _ in 0..ROUNDS {
                            ping_b.notified().await;
                            pong_b.notify_one();
                        }
                    },
                )
            };
            a.await.unwrap();
            b.await.unwrap();

            // notify_waiters wakes every task waiting at that moment.
            let all = Arc::new(tokio::sync::Notify::new());
            let registered = Arc::new(tokio::sync::Semaphore::new(0));
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let (all, registered) = (all.clone(), registered.clone());
                    maniac::spawn(async move {
                        let notified = all.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        registered.add_permits(1);
                        notified.await;
                    })
                })
                .collect();
            registered.acquire_many(16).await.unwrap().forget();
            all.notify_waiters();
            for handle in handles {
                handle.await.unwrap();
            }
        });
    });
}

#[test]
fn tokio_semaphore_limits_concurrency() {
    on_every_flavour(|| async {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..30)
            .map(|_| {
                let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
                maniac::spawn(async move {
                    let _permit = semaphore.acquire().await.unwrap();
                    let now = inside.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    for _ in 0..3 {
                        maniac::task::yield_now().await;
                    }
                    inside.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let most = most.load(SeqCst);
        assert!(
            (1..=3).contains(&most),
            "{most} tasks held one of 3 permits at once"
        );
        assert_eq!(semaphore.available_permits(), 3);
    });
}

#[test]
fn tokio_watch_delivers_the_latest_value() {
    on_every_flavour(|| async {
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let watcher = maniac::spawn(async move {
            let mut last = 0;
            while rx.changed().await.is_ok() {
                let now = *rx.borrow_and_update();
                assert!(now > last, "watch went backwards: {last} then {now}");
                last = now;
            }
            last
        });
        let sender = thread::spawn(move || {
            for i in 1..=2_000u64 {
                tx.send(i).unwrap();
            }
        });
        sender.join().unwrap();
        assert_eq!(watcher.await.unwrap(), 2_000);
    });
}

#[test]
fn tokio_broadcast_reaches_every_receiver_in_order() {
    on_every_flavour(|| async {
        let (tx, _) = tokio::sync::broadcast::channel::<u64>(256);
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let mut rx = tx.subscribe();
                maniac::spawn(async move {
                    let mut expected = 0;
                    loop {
                        match rx.recv().await {
                            Ok(v) => {
                                assert_eq!(v, expected, "broadcast out of order");
                                expected += 1;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                break expected;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let producer = maniac::spawn(async move {
            for i in 0..200u64 {
                tx.send(i).unwrap();
                if i % 10 == 0 {
                    maniac::task::yield_now().await;
                }
            }
        });
        producer.await.unwrap();
        for receiver in receivers {
            assert_eq!(receiver.await.unwrap(), 200);
        }
    });
}

#[test]
fn async_channel_bounded_and_unbounded_mpmc() {
    on_every_flavour(|| async {
        for capacity in [Some(1), Some(8), None] {
            let (tx, rx) = match capacity {
                Some(n) => async_channel::bounded::<u64>(n),
                None => async_channel::unbounded::<u64>(),
            };
            let producers: Vec<_> = (0..4u64)
                .map(|p| {
                    let tx = tx.clone();
                    maniac::spawn(async move {
                        for i in 0..500 {
                            tx.send(p * 500 + i).await.unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    maniac::spawn(async move {
                        let (mut sum, mut count) = (0u64, 0u64);
                        while let Ok(v) = rx.recv().await {
                            sum += v;
                            count += 1;
                        }
                        (sum, count)
                    })
                })
                .collect();
            for producer in producers {
                producer.await.unwrap();
            }
            let (mut sum, mut count) = (0, 0);
            for consumer in consumers {
                let (s, c) = consumer.await.unwrap();
                sum += s;
                count += c;
            }
            assert_eq!(count, 2_000, "capacity {capacity:?}");
            assert_eq!(sum, (0..2_000u64).sum::<u64>(), "capacity {capacity:?}");
        }
    });
}

#[test]
fn async_channel_ping_pong_across_workers_and_from_a_foreign_thread() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let (ping_tx, ping_rx) = async_channel::bounded::<u64>(1);
            let (pong_tx, pong_rx) = async_channel::bounded::<u64>(1);
            let (a, b) = spawn_pair(
                async move {
                    for i in 0..ROUNDS {
                        ping_tx.send(i).await.unwrap();
                        assert_eq!(pong_rx.recv().await.unwrap(), i * 2);
                    }
                },
                async move {
                    while let Ok(i) = ping_rx.recv().await {
                        pong_tx.send(i * 2).await.unwrap();
                    }
                },
            );
            a.await.unwrap();
            b.await.unwrap();

            let (tx, rx) = async_channel::bounded::<u64>(2);
            let sender = thread::spawn(move || {
                for i in 0..1_000 {
                    tx.send_blocking(i).unwrap();
                }
            });
            let mut sum = 0;
            while let Ok(v) = rx.recv().await {
                sum += v;
            }
            sender.join().unwrap();
            assert_eq!(sum, (0..1_000u64).sum::<u64>());
        });
    });
}

#[test]
fn futures_mpsc_and_oneshot_work() {
    on_every_flavour(|| async {
        // Bounded with no buffer: every send waits for the receiver.
        let (mut tx, mut rx) = futures::channel::mpsc::channel::<u64>(0);
        let producer = maniac::spawn(async move {
            for i in 0..1_000 {
                tx.send(i).await.unwrap();
            }
        });
        let mut sum = 0;
        while let Some(v) = rx.next().await {
            sum += v;
        }
        producer.await.unwrap();
        assert_eq!(sum, (0..1_000u64).sum::<u64>());

        let (tx, mut rx) = futures::channel::mpsc::unbounded::<u64>();
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..500 {
                        tx.unbounded_send(t * 500 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut sum = 0;
        while let Some(v) = rx.next().await {
            sum += v;
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sum, (0..1_500u64).sum::<u64>());

        let mut handles = Vec::new();
        for i in 0..100u64 {
            let (tx, rx) = futures::channel::oneshot::channel::<u64>();
            handles.push(maniac::spawn(async move { rx.await.unwrap() }));
            if i % 2 == 0 {
                thread::spawn(move || tx.send(i).unwrap());
            } else {
                maniac::spawn(async move { tx.send(i).unwrap() });
            }
        }
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.unwrap();
        }
        assert_eq!(sum, (0..100u64).sum::<u64>());
    });
}

#[test]
fn futures_mpsc_ping_pong_across_workers() {
    bounded(|| {
        let rt = multi(4);
        rt.block_on(async {
            let (mut ping_tx, mut ping_rx) = futures::channel::mpsc::channel::<u64>(0);
            let (mut pong_tx, mut pong_rx) = futures::channel::mpsc::channel::<u64>(0);
            let (a, b) = spawn_pair(
                async move {
                    for i in 0..ROUNDS {
                        ping_tx.send(i).await.unwrap();
                        assert_eq!(pong_rx.next().await.unwrap(), i + 7);
                    }
                },
                async move {
                    while let Some(i) = ping_rx.next().await {
                        pong_tx.send(i + 7).await.unwrap();
                    }
                },
            );
            a.await.unwrap();
            b.await.unwrap();
        });
    });
}
