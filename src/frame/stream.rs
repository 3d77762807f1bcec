//! Frames over any `Read` and `Write`.

use std::io::{self, Read, Write};

use super::{DEFAULT_MAX_FRAME, FrameDecoder, Outgoing, check_max};
use crate::error::{Error, Result};

/// Writes frames to any [`Write`]: one `write` call per frame when the writer
/// takes it whole.
///
/// # Examples
///
/// ```
/// use procwire::frame::FrameWriter;
///
/// let mut w = FrameWriter::new(Vec::new());
/// w.send(b"a")?;
/// assert_eq!(w.get_ref(), b"\0\0\0\x01a");
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    out: Outgoing,
    max: usize,
}

impl<W: Write> FrameWriter<W> {
    /// A writer with the default 64 MiB maximum.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::frame::{FrameReader, FrameWriter};
    ///
    /// let mut w = FrameWriter::new(Vec::new());
    /// w.send(b"one")?;
    /// let bytes = w.into_inner();
    /// assert_eq!(bytes, [0, 0, 0, 3, b'o', b'n', b'e']);
    /// let mut r = FrameReader::new(&bytes[..]);
    /// assert_eq!(r.recv()?.as_deref(), Some(&b"one"[..]));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter {
            inner,
            out: Outgoing::default(),
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// A writer with another maximum payload length.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::frame::FrameWriter;
    ///
    /// let mut w = FrameWriter::with_max_frame(Vec::new(), 4)?;
    /// assert_eq!(w.send(b"too long").unwrap_err().kind(), procwire::ErrorKind::FrameTooLarge);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn with_max_frame(inner: W, max_frame: usize) -> Result<FrameWriter<W>> {
        Ok(FrameWriter {
            max: check_max(max_frame)?,
            ..FrameWriter::new(inner)
        })
    }

    /// Writes one frame carrying `payload`.
    ///
    /// If the writer fails part-way the error comes back and the rest of the
    /// frame is kept: the next `send` or [`flush`](FrameWriter::flush)
    /// finishes it first, so frames never interleave or tear.
    pub fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.flush_pending()?;
        self.out.encode(true, self.max, |b| {
            b.extend_from_slice(payload);
            Ok(())
        })?;
        self.flush_pending()
    }

    fn flush_pending(&mut self) -> Result<()> {
        self.out
            .write_to(&mut self.inner)
            .map_err(|e| Error::io("writing a frame", e))
    }

    /// Finishes a frame left pending by an error, then flushes the writer.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_pending()?;
        self.inner
            .flush()
            .map_err(|e| Error::io("flushing the frame writer", e))
    }

    /// The writer underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The writer underneath, mutably (writing to it directly breaks framing).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads frames from any [`Read`].
///
/// # Examples
///
/// ```
/// use procwire::frame::FrameReader;
///
/// let mut r = FrameReader::new(&b"\0\0\0\x01a"[..]);
/// assert_eq!(r.recv()?, Some(&b"a"[..]));
/// assert_eq!(r.recv()?, None);
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    dec: FrameDecoder,
}

impl<R: Read> FrameReader<R> {
    /// A reader with the default 64 MiB maximum.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::frame::FrameReader;
    ///
    /// let bytes = [0, 0, 0, 1, b'a', 0, 0, 0, 0];
    /// let mut r = FrameReader::new(&bytes[..]);
    /// assert_eq!(r.recv()?.as_deref(), Some(&b"a"[..]));
    /// assert_eq!(r.recv()?.as_deref(), Some(&b""[..])); // an empty message
    /// assert_eq!(r.recv()?, None); // a clean end between frames
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            dec: FrameDecoder::new(DEFAULT_MAX_FRAME).expect("the default maximum is valid"),
        }
    }

    /// A reader with another maximum payload length.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::frame::FrameReader;
    ///
    /// // A 4 GiB length prefix: refused before anything is allocated for it.
    /// let mut r = FrameReader::with_max_frame(&[0xFF, 0xFF, 0xFF, 0xFE][..], 1 << 20)?;
    /// assert_eq!(r.recv().unwrap_err().kind(), procwire::ErrorKind::FrameTooLarge);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn with_max_frame(inner: R, max_frame: usize) -> Result<FrameReader<R>> {
        Ok(FrameReader {
            inner,
            dec: FrameDecoder::new(max_frame)?,
        })
    }

    /// The next frame's payload; `Ok(None)` at a clean end of stream.
    ///
    /// A stream that ends inside a frame is [`ErrorKind::UnexpectedEof`](crate::ErrorKind::UnexpectedEof). If
    /// the reader returns `WouldBlock` or an error, the partial frame is kept
    /// and the next call continues it.
    pub fn recv(&mut self) -> Result<Option<&[u8]>> {
        loop {
            if let Some(f) = self.dec.next_frame()? {
                return Ok(Some(self.dec.payload(&f)));
            }
            let n = match self.inner.read(self.dec.spare()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading a frame", e)),
            };
            if n == 0 {
                if self.dec.at_boundary() {
                    return Ok(None);
                }
                return Err(self.dec.eof_error(0));
            }
            self.dec.filled(n);
        }
    }

    /// The decoder, to inspect its buffer.
    pub fn decoder(&self) -> &FrameDecoder {
        &self.dec
    }

    /// Gives the reader back (buffered input is lost).
    pub fn into_inner(self) -> R {
        self.inner
    }
}
