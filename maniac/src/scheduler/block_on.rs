//! `block_on`: running a future to completion on the calling thread.
//!
//! - Multi-thread flavour: the calling thread only polls the future; the workers run the tasks.
//!   Between polls it sleeps on a parker of its own, which the future's waker unparks.
//! - Current-thread flavour: the calling thread takes the runtime's one core and runs the tasks
//!   too (`worker::block_on_core`). If another thread's `block_on` holds the core, this one polls
//!   its own future meanwhile and asks to be woken when the core comes back.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::park::Parker;
use super::{Flavor, Shared, worker};

pub(crate) fn block_on<F: Future>(shared: &Arc<Shared>, future: F) -> F::Output {
    let future = pin!(future);
    match shared.flavor {
        Flavor::MultiThread => block_on_thread(future),
        Flavor::CurrentThread => block_on_current_thread(shared, future),
    }
}

/// The parker of a thread that is in `block_on`, as a waker.
struct ThreadNotify {
    parker: Parker,
}

impl Wake for ThreadNotify {
    fn wake(self: Arc<Self>) {
        self.parker.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.parker.unpark();
    }
}

thread_local! {
    static THREAD_NOTIFY: Arc<ThreadNotify> = Arc::new(ThreadNotify { parker: Parker::new() });
}

fn thread_notify() -> Arc<ThreadNotify> {
    THREAD_NOTIFY.with(Arc::clone)
}

fn block_on_thread<F: Future>(mut future: Pin<&mut F>) -> F::Output {
    let notify = thread_notify();
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        notify.parker.park();
    }
}

fn block_on_current_thread<F: Future>(shared: &Arc<Shared>, mut future: Pin<&mut F>) -> F::Output {
    let notify = thread_notify();
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Some(core) = shared.take_core() {
            return worker::block_on_core(shared, core, future);
        }
        shared.core_waiters.lock().unwrap().push(waker.clone());
        // The core may have come back between the failed take and the registration.
        if let Some(core) = shared.take_core() {
            return worker::block_on_core(shared, core, future);
        }
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        notify.parker.park();
    }
}
