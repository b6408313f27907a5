//! A reader that fails once its stream delivered nothing for too long: a
//! connection cut somewhere the network never reports must not hang a
//! transfer (exec output, a port-forward) forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

/// How long a stream may deliver nothing before the backup gives up, unless
/// `--request-timeout` says otherwise: a cut connection that the network
/// never reports must not hang the backup.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(120);

/// A reader that fails once no byte arrived for `limit`.
pub struct StallGuard<R> {
    inner: R,
    limit: Duration,
    what: String,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> StallGuard<R> {
    pub fn new(inner: R, limit: Duration, what: String) -> Self {
        StallGuard {
            inner,
            limit,
            what,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} delivered nothing for {:?}; the connection through the API server is probably cut (raise --request-timeout if the source is just slow)",
                        this.what, this.limit
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
