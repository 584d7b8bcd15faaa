//! A connection to Redis over TCP or a Unix socket, on async-io.

use async_io::{Async, Timer};
use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncWrite};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) enum Stream {
    Tcp(Async<TcpStream>),
    Unix(Async<UnixStream>),
}

/// Connects to `host:port` within `limit`.
pub(crate) async fn tcp(host: &str, port: u16, limit: Duration) -> io::Result<Stream> {
    within(limit, async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        for address in (host, port).to_socket_addrs()? {
            match Async::<TcpStream>::connect(address).await {
                Ok(stream) => {
                    stream.get_ref().set_nodelay(true)?;
                    return Ok(Stream::Tcp(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
}

/// Connects to the Unix socket at `path` within `limit`.
pub(crate) async fn unix(path: &Path, limit: Duration) -> io::Result<Stream> {
    within(limit, async {
        Ok(Stream::Unix(Async::<UnixStream>::connect(path).await?))
    })
    .await
}

async fn within(
    limit: Duration,
    connecting: impl std::future::Future<Output = io::Result<Stream>>,
) -> io::Result<Stream> {
    match select(pin!(connecting), pin!(Timer::after(limit))).await {
        Either::Left((outcome, _)) => {
            outcome.map_err(|e| io::Error::new(e.kind(), format!("cannot connect: {e}")))
        }
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "cannot connect: timed out",
        )),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}
