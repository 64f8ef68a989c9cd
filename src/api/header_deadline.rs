//! A deadline for a connection's request headers, so a client sending them a byte at a time (slowloris)
//! cannot hold a connection: the idle timeout only closes connections that go silent.
//!
//! The acceptor wraps every accepted stream; until the stream has delivered the blank line that ends the
//! first request's headers (`\r\n\r\n`), a read after the deadline fails with `TimedOut` and hyper closes
//! the connection. After that the stream passes through untouched (later requests on a kept-alive
//! connection are bounded by the idle timeout).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The end of a request's headers.
const HEADERS_END: &[u8; 4] = b"\r\n\r\n";

/// Wraps an acceptor's streams in [`HeaderDeadline`].
pub struct HeaderDeadlineAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeaderDeadlineAcceptor<A> {
    /// Streams of `inner` must deliver their first request's headers within `timeout` of being accepted.
    pub fn new(inner: A, timeout: Duration) -> Self {
        HeaderDeadlineAcceptor { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeaderDeadlineAcceptor<A> {
    type Io = HeaderDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)>> + Send {
        let timeout = self.timeout;
        let accepted = self.inner.accept();
        async move {
            let (io, local, remote, scheme) = accepted.await?;
            Ok((HeaderDeadline::new(io, timeout), local, remote, scheme))
        }
    }
}

/// A stream whose reads fail once its deadline passes before the first request's headers have arrived.
pub struct HeaderDeadline<T> {
    inner: T,
    /// `None` once the headers have arrived.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How many bytes of [`HEADERS_END`] the data so far ends with.
    matched: usize,
}

impl<T> HeaderDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        HeaderDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
        }
    }

    /// Advances the search for the end of the headers over `data`; true once it is found.
    fn scan(&mut self, data: &[u8]) -> bool {
        for &b in data {
            self.matched = if b == HEADERS_END[self.matched] {
                self.matched + 1
            } else if b == HEADERS_END[0] {
                1
            } else {
                0
            };
            if self.matched == HEADERS_END.len() {
                return true;
            }
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request headers did not arrive in time",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if self.deadline.is_some() {
            let new = buf.filled()[before..].to_vec();
            if self.scan(&new) {
                self.deadline = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_end_of_the_headers_is_found_across_reads() {
        let mut d = HeaderDeadline::new((), Duration::from_secs(1));
        assert!(!d.scan(b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(!d.scan(b"\n\r"));
        assert!(d.scan(b"\nbody"));
        let mut d = HeaderDeadline::new((), Duration::from_secs(1));
        assert!(!d.scan(b"a\r\n\r\r\nb"));
        assert!(d.scan(b"\r\r\n\r\n"));
    }
}
