//! What one walk of a read buffer sends on: runs of the buffer as they
//! came, and messages of the proxy's own in their place, written together.
//!
//! A pump that drops or replaces messages would otherwise write each run
//! and each replacement on its own, one `send` per piece. The outbox keeps
//! the pieces in order, by range into the read buffer (nothing is copied)
//! or as owned bytes, and writes them with vectored writes once the walk is
//! done. An outbox holding one run of the buffer is the plain forwarding
//! path: a single write of that slice.

use std::io::{self, IoSlice};
use std::ops::Range;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The own buffer keeps its allocation between walks up to this size.
const MAX_KEPT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes of the read buffer, forwarded as they came.
    Run(Range<usize>),
    /// Bytes of the proxy's own.
    Own(Bytes),
    /// Bytes the proxy wrote into the outbox's own buffer (masked rows):
    /// one buffer for the whole walk, no allocation per message.
    Written(Range<usize>),
}

/// Pieces for the client, in order; reused from walk to walk.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pieces: Vec<Piece>,
    /// What [`Piece::Written`] points into.
    written: Vec<u8>,
}

impl Outbox {
    /// Forwards `range` of the read buffer (merged with the run before it
    /// when they touch).
    pub fn run(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        if let Some(Piece::Run(last)) = self.pieces.last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        self.pieces.push(Piece::Run(range));
    }

    /// Sends `bytes` of the proxy's own next.
    pub fn own(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.pieces.push(Piece::Own(bytes));
        }
    }

    /// The buffer messages of the proxy's own are written into; each
    /// becomes a piece with [`Outbox::own_written`].
    pub fn own_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.written
    }

    /// How much of [`Outbox::own_buffer`] is written.
    pub fn own_len(&self) -> usize {
        self.written.len()
    }

    /// Sends what was written into the own buffer since `from` next.
    pub fn own_written(&mut self, from: usize) {
        let range = from..self.written.len();
        if range.is_empty() {
            return;
        }
        if let Some(Piece::Written(last)) = self.pieces.last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        self.pieces.push(Piece::Written(range));
    }

    /// Writes every piece to `w` in order (`buf` is the read buffer the
    /// runs point into) and empties the outbox. `in_write` is true while a
    /// write is under way, so that a cut-short write can be told from a
    /// finished one.
    pub async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        buf: &[u8],
        in_write: &mut bool,
    ) -> io::Result<()> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let sent = self.write(w, buf, in_write).await;
        // Sent or not, these pieces are done with: after a failed write
        // the stream's position is unknown and nothing more is sent.
        self.pieces.clear();
        self.written.clear();
        if self.written.capacity() > MAX_KEPT {
            self.written = Vec::new();
        }
        sent
    }

    async fn write<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        buf: &[u8],
        in_write: &mut bool,
    ) -> io::Result<()> {
        *in_write = true;
        let own = &self.written[..];
        match self.pieces.as_slice() {
            [one] => w.write_all(one.bytes(buf, own)).await?,
            pieces => {
                let mut slices: Vec<IoSlice<'_>> = pieces
                    .iter()
                    .map(|p| IoSlice::new(p.bytes(buf, own)))
                    .collect();
                write_all_vectored(w, &mut slices).await?;
            }
        }
        w.flush().await?;
        *in_write = false;
        Ok(())
    }
}

impl Piece {
    /// The piece's bytes; runs point into `buf`, the read buffer, and
    /// written pieces into `own`, the outbox's buffer.
    fn bytes<'a>(&'a self, buf: &'a [u8], own: &'a [u8]) -> &'a [u8] {
        match self {
            Piece::Run(r) => &buf[r.clone()],
            Piece::Own(b) => b,
            Piece::Written(r) => &own[r.clone()],
        }
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Accepts at most `max` bytes per write, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        writes: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.max;
            for b in bufs {
                let n = b.len().min(left);
                self.out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            self.writes += 1;
            Poll::Ready(Ok(self.max - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn pieces_arrive_in_order_however_the_writes_are_cut() {
        let buf = b"aaaabbbbccccdddd";
        for max in [1, 3, 5, 64] {
            let mut outbox = Outbox::default();
            outbox.run(0..4);
            outbox.own(Bytes::from_static(b"XY"));
            outbox.run(8..12);
            outbox.run(12..14);
            outbox.own(Bytes::new());
            outbox.own(Bytes::from_static(b"Z"));
            let from = outbox.own_len();
            outbox.own_buffer().extend_from_slice(b"W1");
            outbox.own_written(from);
            let from = outbox.own_len();
            outbox.own_buffer().extend_from_slice(b"W2");
            outbox.own_written(from);
            outbox.run(14..16);
            let mut w = Trickle {
                out: Vec::new(),
                max,
                writes: 0,
            };
            let mut in_write = false;
            outbox.send(&mut w, buf, &mut in_write).await.unwrap();
            assert_eq!(w.out, b"aaaaXYccccddZW1W2dd", "max {max}");
            assert!(!in_write);
            assert!(outbox.pieces.is_empty());
            if max == 64 {
                assert_eq!(w.writes, 1, "one vectored write");
            }
        }
    }

    #[test]
    fn touching_runs_merge() {
        let mut outbox = Outbox::default();
        outbox.run(0..4);
        outbox.run(4..9);
        outbox.run(9..9);
        assert_eq!(outbox.pieces, vec![Piece::Run(0..9)]);
        outbox.run(10..12);
        assert_eq!(outbox.pieces.len(), 2);
    }

    #[tokio::test]
    async fn one_run_is_one_plain_write() {
        let mut outbox = Outbox::default();
        outbox.run(2..6);
        let mut w = Trickle {
            out: Vec::new(),
            max: 64,
            writes: 0,
        };
        let mut in_write = false;
        outbox
            .send(&mut w, b"..abcd..", &mut in_write)
            .await
            .unwrap();
        assert_eq!(w.out, b"abcd");
        assert_eq!(w.writes, 1);
    }
}
