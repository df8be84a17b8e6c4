//! Cutting connections at the deadline, upgraded ones included: hyper hands an upgraded
//! connection (a WebSocket after its `101`) to the application, out of `serve`'s reach, so
//! every connection's I/O carries a switch that `serve` can throw.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One connection's switch.
#[derive(Default)]
struct Switch {
    cut: AtomicBool,
    // One task may read while another writes (a split WebSocket): a waker for each side.
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Switch {
    fn is_cut(&self) -> bool {
        // Acquire: pairs with the Release in `throw`; nothing else is published by it, but a
        // poll that sees the cut must not then see an older waker registration.
        self.cut.load(Ordering::Acquire)
    }

    fn throw(&self) {
        // Release: pairs with the Acquire in `is_cut`.
        self.cut.store(true, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }
}

/// Every live connection's switch, for the deadline to throw.
#[derive(Default)]
pub(crate) struct Switches {
    // Weak: a closed connection's switch goes with it; the list is pruned as it grows.
    live: Mutex<Vec<Weak<Switch>>>,
}

impl Switches {
    /// `io` with a switch in this set.
    pub(crate) fn wrap<I>(&self, io: I) -> Cuttable<I> {
        let switch = Arc::new(Switch::default());
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Amortised: prune when the list has doubled since the last time.
        if live.len() == live.capacity() {
            live.retain(|switch| switch.strong_count() > 0);
        }
        live.push(Arc::downgrade(&switch));
        Cuttable { io, switch }
    }

    /// Cuts every connection still open, upgraded ones included; returns how many there were.
    pub(crate) fn cut_all(&self) -> usize {
        let live = std::mem::take(&mut *self.live.lock().unwrap_or_else(|p| p.into_inner()));
        live.iter()
            .filter_map(Weak::upgrade)
            .map(|switch| switch.throw())
            .count()
    }
}

/// A connection's I/O that fails with `ConnectionAborted` once its switch is thrown.
pub(crate) struct Cuttable<I> {
    io: I,
    switch: Arc<Switch>,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "cut by tower_drain::serve at the end of the grace period",
    )
}

impl<I: AsyncRead + Unpin> AsyncRead for Cuttable<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if poll.is_pending() {
            // Registered only when waiting, then checked again: a cut between the first check
            // and the registration still wakes this task.
            self.switch.reader.register(cx.waker());
            if self.switch.is_cut() {
                return Poll::Ready(Err(aborted()));
            }
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Cuttable<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if poll.is_pending() {
            self.switch.writer.register(cx.waker());
            if self.switch.is_cut() {
                return Poll::Ready(Err(aborted()));
            }
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if poll.is_pending() {
            self.switch.writer.register(cx.waker());
            if self.switch.is_cut() {
                return Poll::Ready(Err(aborted()));
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
