//! Pipes: the lesson's `IO.pipe`, one-way by type.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// Creates a pipe: bytes written to the [`PipeWriter`] come out of the
/// [`PipeReader`]. Both ends are close-on-exec from birth (`pipe2` with
/// `O_CLOEXEC`), so no program this process starts inherits them by accident.
///
/// The reader sees end-of-file only when **every** copy of the write end is
/// closed: drop the writer (and make sure no child holds a copy) or the reader
/// waits forever. A write after the reader is gone fails with
/// `io::ErrorKind::BrokenPipe`; it never kills the process with `SIGPIPE`,
/// whatever the process's signal disposition.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = procwire::pipe()?;
/// writer.write_all(b"Into the pipe I go...")?;
/// drop(writer); // without this, read_to_string would wait forever
/// let mut text = String::new();
/// reader.read_to_string(&mut text)?;
/// assert_eq!(text, "Into the pipe I go...");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Pipes are one-way: a reader cannot write.
///
/// ```compile_fail
/// use std::io::Write;
/// let (mut reader, _writer) = procwire::pipe().unwrap();
/// reader.write_all(b"Trying to get the reader to write something");
/// ```
///
/// # References
/// - pipe(2), pipe(7)
#[doc(alias = "pipe2")]
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let (r, w) = sys::pipe()?;
    Ok((PipeReader(r), PipeWriter(w)))
}

/// The read end of a pipe: [`Read`] only.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut r, mut w) = procwire::pipe()?;
/// w.write_all(b"through the pipe")?;
/// drop(w); // close the writer, or the read never ends
/// let mut s = String::new();
/// r.read_to_string(&mut s)?;
/// assert_eq!(s, "through the pipe");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PipeReader(OwnedFd);

/// The write end of a pipe: [`Write`] only.
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// let (r, mut w) = procwire::pipe()?;
/// drop(r);
/// // No reader: an error, never SIGPIPE.
/// assert_eq!(w.write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PipeWriter(OwnedFd);

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0.as_fd(), buf)
    }
}

impl Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0.as_fd(), buf)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::pipe_write(self.0.as_fd(), &[IoSlice::new(buf)], false)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::pipe_write(self.0.as_fd(), bufs, false)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::pipe_write(self.0.as_fd(), &[IoSlice::new(buf)], false)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! fd_type {
    ($t:ident, $kind:literal, $reads:literal) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl From<$t> for OwnedFd {
            fn from(end: $t) -> OwnedFd {
                end.0
            }
        }

        impl $t {
            /// Adopts a descriptor as this end of a pipe, checking that it is
            /// one and open in the right direction.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::os::fd::OwnedFd;
            ///
            /// let (r, w) = procwire::pipe()?;
            /// let w = procwire::PipeWriter::from_fd(OwnedFd::from(w))?; // the write end, checked
            /// let e = procwire::PipeWriter::from_fd(OwnedFd::from(r)); // a read end is refused
            /// assert!(e.is_err());
            /// # drop(w);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn from_fd(fd: OwnedFd) -> io::Result<$t> {
                if sys::fd_kind(fd.as_fd())? != sys::FdKind::Pipe {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        concat!("not a pipe; a ", $kind, " needs one"),
                    ));
                }
                let (reads, writes) = sys::access_mode(fd.as_fd())?;
                if (reads, writes) != ($reads, !$reads) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        concat!("the other end of a pipe; a ", $kind, " needs this one"),
                    ));
                }
                if writes {
                    sys::signal::note_sigpipe_disposition();
                }
                Ok($t(fd))
            }

            /// Duplicates this end (close-on-exec). The reader sees
            /// end-of-file only once every copy of the writer is closed.
            pub fn try_clone(&self) -> io::Result<$t> {
                Ok($t(self.0.try_clone()?))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0).finish()
            }
        }
    };
}

fd_type!(PipeReader, "PipeReader", true);
fd_type!(PipeWriter, "PipeWriter", false);
