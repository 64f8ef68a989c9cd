//! A deadline for a connection's request headers, so a client sending them a byte at a time (slowloris)
//! cannot hold a connection: the idle timeout only closes connections that go silent.
//!
//! The acceptor wraps every accepted stream; until the stream has delivered the blank line that ends a
//! request's headers (`\r\n\r\n`), a read after the deadline fails with `TimedOut` and hyper closes the
//! connection. The deadline holds for every request of a kept-alive connection: it is armed when the
//! connection opens, and again by the first byte that arrives after a response was written (the next
//! request's start), so a client that trickles its second request's headers is cut off like the first.
//! Bytes that arrive while no response has gone out (a request body, however slow) and an idle
//! connection (bounded by the idle timeout) arm nothing; an interim `100 Continue` is not a response.

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

/// A stream whose reads fail once its deadline passes before a request's headers have arrived.
pub struct HeaderDeadline<T> {
    inner: T,
    timeout: Duration,
    /// `None` once the headers have arrived.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How many bytes of [`HEADERS_END`] the data so far ends with.
    matched: usize,
    /// A final response was written since the last headers ended: the next byte read starts a request.
    responded: bool,
    /// Bytes read so far (only whether any were).
    started: bool,
    /// The connection speaks HTTP/2 (its preface ends the first "headers"; frames are not re-armed).
    http2: bool,
}

/// How an HTTP/2 connection preface starts (no HTTP/1 method is `PRI`).
const HTTP2_PREFACE: &[u8] = b"PRI ";

/// How an interim (1xx) response starts; it does not end the exchange.
const INTERIM: &[u8] = b"HTTP/1.1 1";

impl<T> HeaderDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        HeaderDeadline {
            inner,
            timeout,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
            responded: false,
            started: false,
            http2: false,
        }
    }

    /// Notes written bytes: a final response (not a 1xx) makes the next read a new request's start.
    fn wrote(&mut self, first: &[u8], n: usize) {
        if n > 0 && self.deadline.is_none() && !first.starts_with(INTERIM) {
            self.responded = true;
        }
    }

    /// Arms the deadline when `data` starts the next request.
    fn arm_for(&mut self, data: &[u8]) {
        if !self.started && !data.is_empty() {
            self.started = true;
            self.http2 = data.starts_with(HTTP2_PREFACE);
        }
        if !self.http2 && self.responded && self.deadline.is_none() && !data.is_empty() {
            self.responded = false;
            self.matched = 0;
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
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
        let new = &buf.filled()[before..];
        self.arm_for(new);
        if self.deadline.is_some() && self.scan(new) {
            self.deadline = None;
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
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.wrote(data, n);
        Poll::Ready(Ok(n))
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
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.wrote(first, n);
        Poll::Ready(Ok(n))
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

    #[tokio::test]
    async fn the_next_request_after_a_response_is_under_a_new_deadline() {
        let mut d = HeaderDeadline::new((), Duration::from_secs(1));
        assert!(d.scan(b"POST / HTTP/1.1\r\n\r\n"));
        d.deadline = None;
        // Body bytes before any response, and an interim 100 Continue, arm nothing.
        d.arm_for(b"body");
        assert!(d.deadline.is_none());
        d.wrote(b"HTTP/1.1 100 Continue\r\n\r\n", 25);
        d.arm_for(b"more body");
        assert!(d.deadline.is_none());
        // After the response, the next byte starts a request.
        d.wrote(b"HTTP/1.1 200 OK\r\n", 17);
        d.arm_for(b"");
        assert!(d.deadline.is_none());
        d.arm_for(b"G");
        assert!(d.deadline.is_some());
        // HTTP/2 frames after the preface never re-arm it.
        let mut h2 = HeaderDeadline::new((), Duration::from_secs(1));
        h2.arm_for(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.deadline = None;
        h2.wrote(b"\0\0\0\x04", 9);
        h2.arm_for(b"\0\0\x04\x08");
        assert!(h2.deadline.is_none());
    }
}
