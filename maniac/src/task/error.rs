//! Why a task produced no value.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Mutex;

use super::Id;

/// The error a [`JoinHandle`](super::JoinHandle) returns when its task did not produce a value:
/// the task was cancelled (aborted, or dropped at runtime shutdown) or it panicked.
pub struct JoinError {
    id: Id,
    /// `None`: cancelled. Boxed, so that the error is two words: it sits in every task's output
    /// slot, and a smaller task allocation is a faster one.
    panic: Option<Box<Panic>>,
}

// A Mutex only to make the error `Sync` (the payload is `Send` but not `Sync`); it is never
// contended: the payload is read once, by `into_panic` or by `Display`.
type Panic = Mutex<Box<dyn Any + Send + 'static>>;

impl JoinError {
    pub(crate) fn cancelled(id: Id) -> JoinError {
        JoinError { id, panic: None }
    }

    pub(crate) fn panic(id: Id, payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            id,
            panic: Some(Box::new(Mutex::new(payload))),
        }
    }

    /// Whether the task was cancelled: aborted, or dropped when its runtime shut down.
    pub fn is_cancelled(&self) -> bool {
        self.panic.is_none()
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// The panic's payload, to resume it with `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicked; use [`JoinError::try_into_panic`] when
    /// either can happen.
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("JoinError::into_panic called on a cancelled task; check is_panic() first")
    }

    /// The panic's payload, or the error itself if the task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.panic {
            Some(payload) => Ok(payload.into_inner().unwrap_or_else(|e| e.into_inner())),
            None => Err(self),
        }
    }

    /// The id of the task that failed.
    pub fn id(&self) -> Id {
        self.id
    }
}

/// The text of a panic payload, when it is one (`panic!` with a message makes a `&str` or a
/// `String`).
fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            None => write!(f, "task {} was cancelled", self.id),
            Some(payload) => {
                let payload = payload.lock().unwrap_or_else(|e| e.into_inner());
                match panic_message(&**payload) {
                    Some(message) => {
                        write!(f, "task {} panicked with message {message:?}", self.id)
                    }
                    None => write!(f, "task {} panicked", self.id),
                }
            }
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            None => write!(f, "JoinError::Cancelled({:?})", self.id),
            Some(_) => write!(f, "JoinError::Panic({:?}, \"{self}\")", self.id),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(error: JoinError) -> io::Error {
        io::Error::other(error.to_string())
    }
}
