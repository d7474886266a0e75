//! A read buffer that grows while a peer streams and stays small while it
//! idles: a thousand idle sessions must not each hold hundreds of kilobytes.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

const START: usize = 8 << 10;
const MAX_CHUNK: usize = 256 << 10;

pub(crate) struct ReadBuffer {
    pub buf: BytesMut,
    chunk: usize,
}

impl ReadBuffer {
    pub fn new(initial: BytesMut) -> Self {
        let mut buf = initial;
        if buf.capacity() < START {
            buf.reserve(START - buf.len());
        }
        ReadBuffer { buf, chunk: START }
    }

    /// Reads at least one byte; returns 0 at end of stream. `want` is the
    /// total length the caller needs buffered (0 when unknown).
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        want: usize,
    ) -> std::io::Result<usize> {
        if self.buf.is_empty() && self.buf.capacity() > 4 * MAX_CHUNK {
            // A one-off large message grew the buffer; give the memory back.
            self.buf = BytesMut::with_capacity(START);
            self.chunk = START;
        }
        let need = want.saturating_sub(self.buf.len()).max(self.chunk);
        let spare = self.buf.capacity() - self.buf.len();
        if spare < need / 2 || spare < 1024 {
            self.buf.reserve(need);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let n = r.read_buf(&mut self.buf).await?;
        if n == spare && self.chunk < MAX_CHUNK {
            self.chunk *= 2;
        }
        Ok(n)
    }
}
