//! Socket addresses: tokio's `ToSocketAddrs` and `lookup_host`.
//!
//! Addresses that are already numeric resolve at once; host names are resolved by the system's
//! resolver (`getaddrinfo`, which blocks) on the blocking pool, so that a worker never waits for
//! DNS.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;

/// What `bind`, `connect` and `lookup_host` accept, as `tokio::net::ToSocketAddrs`: socket
/// addresses, `(ip, port)` pairs, `"host:port"` strings and `(host, port)` pairs, slices of
/// addresses, and references to any of these.
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use super::*;

    /// The addresses, resolved.
    pub type Resolved = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

    /// How a [`super::ToSocketAddrs`] resolves (hidden: the trait is sealed, as tokio's).
    pub trait Sealed {
        #[doc(hidden)]
        fn resolve(&self) -> Resolved;
    }
}

fn ready(addrs: Vec<SocketAddr>) -> sealed::Resolved {
    Box::pin(std::future::ready(Ok(addrs)))
}

/// Resolves `host:port` text: numeric at once, a host name on the blocking pool.
fn resolve_text(text: String) -> sealed::Resolved {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return ready(vec![addr]);
    }
    Box::pin(async move {
        crate::task::spawn_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&text).map(Iterator::collect)
        })
        .await
        .map_err(io::Error::from)?
    })
}

macro_rules! numeric_addrs {
    ($($ty:ty),* $(,)?) => {$(
        impl ToSocketAddrs for $ty {}
        impl sealed::Sealed for $ty {
            fn resolve(&self) -> sealed::Resolved {
                ready(vec![SocketAddr::from(*self)])
            }
        }
    )*};
}

numeric_addrs!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16),
    ([u8; 4], u16),
    ([u16; 8], u16),
);

impl ToSocketAddrs for str {}
impl sealed::Sealed for str {
    fn resolve(&self) -> sealed::Resolved {
        resolve_text(self.to_owned())
    }
}

impl ToSocketAddrs for String {}
impl sealed::Sealed for String {
    fn resolve(&self) -> sealed::Resolved {
        resolve_text(self.clone())
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl sealed::Sealed for (&str, u16) {
    fn resolve(&self) -> sealed::Resolved {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => ready(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => resolve_text(format!("{}:{}", self.0, self.1)),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl sealed::Sealed for (String, u16) {
    fn resolve(&self) -> sealed::Resolved {
        (self.0.as_str(), self.1).resolve()
    }
}

impl ToSocketAddrs for &[SocketAddr] {}
impl sealed::Sealed for &[SocketAddr] {
    fn resolve(&self) -> sealed::Resolved {
        ready(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {
    fn resolve(&self) -> sealed::Resolved {
        (**self).resolve()
    }
}

/// Resolves `host` (`"name:port"`, `(name, port)`, ...) to socket addresses, as
/// `tokio::net::lookup_host`. Names are resolved on the blocking pool.
///
/// # Panics
/// Outside a runtime context, for a name that needs resolving.
pub async fn lookup_host(host: impl ToSocketAddrs) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(host.resolve().await?.into_iter())
}

/// Runs `attempt` on each address in turn until one succeeds; the last error otherwise.
pub(crate) async fn each_addr<A, T, F, Fut>(addrs: A, mut attempt: F) -> io::Result<T>
where
    A: ToSocketAddrs,
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut last_error = None;
    for addr in addrs.resolve().await? {
        match attempt(addr).await {
            Ok(value) => return Ok(value),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}
