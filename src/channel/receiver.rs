//! The receiving end of a channel.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::gate::{Gate, Pass, Wait};
use crate::codec::CodecKind;
use crate::codec::split::{self, Pieces};
use crate::error::{Error, ErrorKind, RecvError, RecvTimeoutError, Result, TryRecvError};
use crate::frame::{Frame, FrameDecoder};
use crate::shm::Record as ShmRecord;
use crate::sys::{self, Interest};
use crate::transport::{
    ANNOUNCEMENT_MAX, Conn, INLINE_MAX, OUT_OF_LINE_MARKER, SpillMapping, Transport, Waited,
    receive_out_of_line,
};

mod borrowed;
mod iter;
pub use borrowed::Received;
pub use iter::{IntoIter, Iter, TryIter};

/// The receiving end of a typed channel.
///
/// Messages arrive whole and in order. [`recv`](Receiver::recv) waits for
/// the next one; when the sending side is gone and everything it sent has
/// been delivered, it returns [`ErrorKind::Disconnected`]. A message that
/// cannot be decoded is an [`ErrorKind::Decode`] error and the channel goes
/// on with the next one. A partial frame survives a timeout: the next call
/// continues it.
///
/// # Examples
///
/// ```
/// use procwire::ErrorKind;
/// use std::time::Duration;
///
/// let (tx, rx) = procwire::channel::<u32>()?;
/// assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
/// tx.send(1)?;
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 1);
/// drop(tx);
/// assert!(rx.recv().unwrap_err().is_disconnected());
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Receiver<T> {
    core: Arc<RecvCore>,
    _marker: PhantomData<fn() -> T>,
}

pub(crate) struct RecvCore {
    conn: Arc<Conn>,
    codec: CodecKind,
    max_frame: usize,
    /// The receive buffer of a datagram socket: big enough for any datagram
    /// up to `max_frame` that a peer with the same send buffer can send.
    datagram_buffer: usize,
    incoming: Gate<Incoming>,
    /// What `incoming` said when its gate was last left ([`AHEAD`],
    /// [`DRAINED`]): what [`buffered`](RecvCore::buffered) and
    /// [`drained`](RecvCore::drained) read without taking the gate (an
    /// awaited receive asks before every wait).
    said: AtomicU8,
}

/// A whole frame, or the end, is held in the receiver.
const AHEAD: u8 = 1;
/// The last receive read from its descriptor and left it empty.
const DRAINED: u8 = 2;

/// The pass through a receiver's gate, which on leaving records what
/// `said` says (on unwinding too: a decode that panics leaves a message
/// read ahead behind it).
struct Leaving<'a> {
    pass: Pass<'a, Incoming>,
    said: &'a AtomicU8,
}

impl Drop for Leaving<'_> {
    #[inline]
    fn drop(&mut self) {
        let inc = &*self.pass;
        let ahead = inc.eof || inc.frames.has_frame();
        self.said.store(
            u8::from(ahead) | u8::from(inc.drained) << 1,
            Ordering::Release,
        );
    }
}

/// Descriptors that arrived with the stream bytes `start..end`.
///
/// On a stream socket the kernel hands over the descriptors of a `sendmsg`
/// with the first bytes of it that a `recvmsg` returns, and ends that
/// `recvmsg` there (`unix_stream_read_generic`). The sender attaches them to
/// the first `sendmsg` of their frame, so they belong to the last frame that
/// begins inside `start..end`.
struct FdBatch {
    start: u64,
    end: u64,
    fds: Vec<OwnedFd>,
    /// Some did not arrive (`MSG_CTRUNC`): the owning frame fails.
    lost: bool,
}

struct Incoming {
    frames: FrameDecoder,
    batches: VecDeque<FdBatch>,
    datagram: Vec<u8>,
    eof: bool,
    /// This receive, one that does not block (an awaited one), read from
    /// the descriptor, and the read found it empty before the buffer was
    /// full (a pipe or a stream socket, and no descriptors arrived, at
    /// which the kernel ends a read early).
    drained: bool,
    /// A large frame whose trailing byte string is being read into its own
    /// buffer; the decoder holds the frame's first bytes meanwhile.
    direct: Option<Direct>,
    /// The mapping of the spill file the last large message on a message
    /// socket came in (`transport::large`).
    spill: Option<SpillMapping>,
}

/// A large frame read straight into the buffer of its trailing byte string
/// (see `codec::split`): postcard only, on pipes and stream sockets.
struct Direct {
    /// The frame's payload length.
    len: usize,
    /// Where the string starts (`head`: the decoder holds the payload's
    /// first bytes), and its bytes so far, in an allocation of its final
    /// size, `tail_len`.
    pieces: Pieces,
    tail_len: usize,
    /// Bytes read into the tail (rather than copied from the decoder).
    read: u64,
}

impl Direct {
    /// Reads more of the string; returns what the read did and how much it
    /// asked for.
    #[cold]
    #[inline(never)]
    fn read_from(
        &mut self,
        conn: &Conn,
        fds: &mut Vec<OwnedFd>,
        block: bool,
    ) -> (std::io::Result<sys::Received>, usize) {
        let asked = self.tail_len - self.pieces.tail.len();
        let read = conn.read_spare(&mut self.pieces.tail, asked, fds, block);
        if let Ok(r) = &read {
            self.read += r.len as u64;
        }
        (read, asked)
    }

    /// Starts one if the frame the decoder is assembling is large and ends
    /// with a byte string (by its first bytes: `codec::split::guess`).
    #[cold]
    #[inline(never)]
    fn begin(frames: &FrameDecoder) -> Option<Direct> {
        let (len, got) = frames.partial()?;
        let (claim_at, tail_at) = split::guess(got, len)?;
        let tail_len = len - tail_at;
        let mut tail = Vec::with_capacity(tail_len);
        crate::bytes::extend(&mut tail, &got[tail_at..]);
        Some(Direct {
            len,
            pieces: Pieces {
                head: tail_at,
                claim_at,
                tail,
            },
            tail_len,
            read: 0,
        })
    }
}

/// A large payload in two pieces: its first bytes, up to the trailing byte
/// string's length prefix at `claim_at`, and that string, read into its own
/// buffer (see `codec::split`).
pub(crate) struct Split<'a> {
    head: &'a [u8],
    claim_at: usize,
    tail: Vec<u8>,
}

impl<'a> Split<'a> {
    /// The pieces read into `buf` and their own buffer.
    fn of(buf: &'a [u8], pieces: Pieces) -> Split<'a> {
        Split {
            head: &buf[..pieces.head],
            claim_at: pieces.claim_at,
            tail: pieces.tail,
        }
    }

    /// Hands it to `split`, or put back together to `f`: also when
    /// descriptors came with it, since a guess that proves wrong decodes
    /// the message a second time, and the first decode may have taken
    /// them.
    #[cold]
    fn take<R>(
        self,
        fds: Vec<OwnedFd>,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
        split: Option<impl FnOnce(Split<'_>, Vec<OwnedFd>) -> Result<R>>,
    ) -> Result<R> {
        match split {
            Some(split) if fds.is_empty() => split(self, fds),
            _ => f(&self.whole(), fds),
        }
    }

    /// Decodes it, handing the string its buffer. (Apart from the decode
    /// of every other message, which stays inlined.)
    #[cold]
    #[inline(never)]
    pub(crate) fn decode<T: DeserializeOwned>(self, codec: CodecKind) -> Result<T> {
        match codec {
            CodecKind::Postcard => split::decode(self.head, self.claim_at, self.tail),
            _ => codec.decode(&self.whole()),
        }
    }

    /// Puts it back together, for a receive that lends it in one piece.
    #[cold]
    fn whole(self) -> Vec<u8> {
        split::joined(self.head, &self.tail)
    }
}

/// What takes a [`Split`] payload.
type TakeSplit<R> = fn(Split<'_>, Vec<OwnedFd>) -> Result<R>;

/// For a receive that takes every payload in one piece.
fn one_piece<R>() -> Option<TakeSplit<R>> {
    None
}

impl Incoming {
    /// The large frame read into its string's own buffer, if all of it has
    /// arrived, with its descriptors.
    #[cold]
    #[inline(never)]
    fn direct_done(&mut self) -> Result<Option<(Split<'_>, Vec<OwnedFd>)>> {
        let Some(d) = self.direct.take_if(|d| d.pieces.tail.len() == d.tail_len) else {
            return Ok(None);
        };
        let frame = self.frames.take_partial(d.len);
        let fds = if self.batches.is_empty() {
            Vec::new()
        } else {
            self.fds_for(&frame)?
        };
        Ok(Some((
            Split::of(self.frames.payload(&frame), d.pieces),
            fds,
        )))
    }

    /// The descriptors that belong to `frame`; an error if some were lost.
    fn fds_for(&mut self, frame: &Frame) -> Result<Vec<OwnedFd>> {
        while let Some(b) = self.batches.front() {
            if b.end <= frame.stream_start {
                // Belonged to an earlier frame that was skipped: close them.
                self.batches.pop_front();
                continue;
            }
            if b.start <= frame.stream_start && frame.stream_end >= b.end {
                let batch = self.batches.pop_front().expect("front exists");
                if batch.lost {
                    return Err(fds_lost());
                }
                return Ok(batch.fds);
            }
            break;
        }
        Ok(Vec::new())
    }
}

impl RecvCore {
    pub(crate) fn new(conn: Arc<Conn>, codec: CodecKind, max_frame: usize) -> Result<RecvCore> {
        // A procwire sender puts at most INLINE_MAX bytes in one datagram
        // (larger messages travel out of line); one byte more tells a longer
        // datagram from a foreign peer (by MSG_TRUNC) from a fitting one.
        // Room for the longest announcement too, whatever `max_frame`.
        let datagram_buffer = INLINE_MAX
            .min(max_frame)
            .max(ANNOUNCEMENT_MAX)
            .saturating_add(1);
        Ok(RecvCore {
            codec,
            max_frame,
            datagram_buffer,
            conn: Arc::clone(&conn),
            incoming: Gate::new(Incoming {
                frames: match conn.transport() {
                    Transport::Tcp => FrameDecoder::new(max_frame)?.with_heartbeats(),
                    _ => FrameDecoder::new(max_frame)?,
                },
                batches: VecDeque::new(),
                datagram: Vec::new(),
                eof: false,
                drained: false,
                direct: None,
                spill: None,
            }),
            said: AtomicU8::new(0),
        })
    }

    fn context(&self) -> String {
        format!("receiving on a {}", self.conn.transport().name())
    }

    /// Takes the next message and hands its payload and descriptors to `f`,
    /// or a large one in two pieces to `split` if there is one (which saves
    /// a copy when it decodes an owned value).
    fn recv<R>(
        &self,
        wait: Wait,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
        split: Option<impl FnOnce(Split<'_>, Vec<OwnedFd>) -> Result<R>>,
    ) -> Result<R> {
        let Some(pass) = self.incoming.enter(wait) else {
            if self.incoming.held_here() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a receive on this channel from inside the decoding of a message from the \
                     same channel (a Deserialize impl that receives): it would wait for itself \
                     forever",
                ));
            }
            return Err(nothing_yet(wait));
        };
        let mut leaving = Leaving {
            pass,
            said: &self.said,
        };
        let inc = &mut *leaving.pass;
        inc.drained = false;
        // Large postcard messages may come in two pieces over pipes, stream
        // sockets and shared memory.
        let split = split.filter(|_| self.codec == CodecKind::Postcard);
        match self.conn.transport() {
            Transport::Shm => self.recv_shm(inc, wait, f, split),
            t if t.framed() => {
                // (One call: two would keep it from being inlined.)
                let split = split.filter(|_| matches!(t, Transport::Pipe | Transport::Stream));
                self.recv_frame(inc, wait, f, split)
            }
            _ => self.recv_datagram(inc, wait, f, split),
        }
    }

    fn recv_shm<R>(
        &self,
        inc: &mut Incoming,
        wait: Wait,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
        split: Option<impl FnOnce(Split<'_>, Vec<OwnedFd>) -> Result<R>>,
    ) -> Result<R> {
        let read = |inc: &mut Incoming| {
            self.conn
                .shm_read(&mut inc.datagram, self.max_frame, split.is_some())
                .map_err(|e| Error::io(&self.context(), e))
        };
        let record = loop {
            if let Some(record) = read(inc)? {
                break record;
            }
            // A try_recv that finds nothing is followed by a wait on the
            // readiness descriptor (Select, epoll): arm it, then look once
            // more, since a message may have come before the arming.
            if matches!(wait, Wait::Never)
                && self.conn.arm_read()
                && let Some(record) = read(inc)?
            {
                break record;
            }
            let ended = if self.conn.shm_writer_closed() {
                Error::disconnected("the sender is gone and every message has been received")
            } else if matches!(wait, Wait::Never) && self.conn.shm_peer_gone() {
                // A blocking wait notices a vanished writer as it sleeps; a
                // try_recv must say so too, or an event loop woken by the
                // hang-up would find "empty" for ever.
                self.conn
                    .shm_gone(Duration::ZERO)
                    .unwrap_or_else(|e| Error::io(&self.context(), e))
            } else {
                match self.wait_readable(wait) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == ErrorKind::Timeout || e.kind() == ErrorKind::Empty => {
                        return Err(e);
                    }
                    Err(e) => e,
                }
            };
            // A message published just before the end is still delivered.
            if let Some(record) = read(inc)? {
                break record;
            }
            return Err(self
                .conn
                .add_peer_fate(ended, wait.fate_within(Duration::from_millis(100))));
        };
        match record {
            ShmRecord::Split(pieces) => Split::of(&inc.datagram, pieces).take(Vec::new(), f, split),
            ShmRecord::Inline(len) | ShmRecord::OutOfLine(len, _) => {
                f(&inc.datagram[..len], Vec::new())
            }
        }
    }

    fn recv_frame<R>(
        &self,
        inc: &mut Incoming,
        wait: Wait,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
        split: Option<impl FnOnce(Split<'_>, Vec<OwnedFd>) -> Result<R>>,
    ) -> Result<R> {
        loop {
            if inc.direct.is_some() {
                if let Some((payload, fds)) = inc.direct_done()? {
                    return payload.take(fds, f, split);
                }
            } else if inc.frames.may_have_frame() {
                if let Some(frame) = inc.frames.next_frame()? {
                    let fds = if inc.batches.is_empty() {
                        Vec::new()
                    } else {
                        inc.fds_for(&frame)?
                    };
                    return f(inc.frames.payload(&frame), fds);
                }
                // A large frame that ends with a byte string is read
                // into that string's own buffer from here on.
                if split.is_some() && inc.batches.is_empty() && !inc.eof {
                    inc.direct = Direct::begin(&inc.frames);
                    if inc.direct.is_some() {
                        continue;
                    }
                }
            }
            if inc.eof {
                return Err(self.end_of_stream(inc, wait));
            }
            let mut fds = Vec::new();
            let block = matches!(wait, Wait::Block);
            let (start, read, asked) = match &mut inc.direct {
                Some(d) => {
                    let start = inc.frames.stream_offset() + d.read;
                    let (read, asked) = d.read_from(&self.conn, &mut fds, block);
                    (start, read, asked)
                }
                None => {
                    let start = inc.frames.stream_offset();
                    let spare = inc.frames.spare();
                    let asked = spare.len();
                    let read = self.conn.read(spare, &mut fds, block);
                    if let Ok(r) = &read {
                        inc.frames.filled(r.len);
                    }
                    (start, read, asked)
                }
            };
            match read {
                Ok(r) if r.len == 0 => inc.eof = true,
                Ok(r) => {
                    // (Asked only by an awaited receive, which never blocks.)
                    inc.drained = !block
                        && r.len < asked
                        && fds.is_empty()
                        && !r.fds_lost
                        && matches!(self.conn.transport(), Transport::Pipe | Transport::Stream);
                    if !fds.is_empty() || r.fds_lost {
                        inc.batches.push_back(FdBatch {
                            start,
                            end: start + r.len as u64,
                            fds,
                            lost: r.fds_lost,
                        });
                    }
                }
                Err(e) if sys::would_block(&e) => self.wait_readable(wait)?,
                // A peer that closed with our data unread makes the next
                // read fail with ECONNRESET once the queue is drained: that
                // is its end of stream.
                Err(e) if sys::is_disconnect(&e) => inc.eof = true,
                Err(e) => return Err(Error::io(&self.context(), e)),
            }
        }
    }

    /// Clean end of stream is `Disconnected`; one inside a frame is reported
    /// once as `UnexpectedEof`, and the partial frame dropped.
    fn end_of_stream(&self, inc: &mut Incoming, wait: Wait) -> Error {
        // (A frame read into its string's own buffer keeps its first bytes
        // in the decoder: never at a boundary.)
        let read_elsewhere = inc.direct.take().map_or(0, |d| d.read);
        if inc.frames.at_boundary() {
            let e = Error::disconnected("the sender is gone and every message has been received");
            // A supervised child that closed the stream is usually exiting:
            // give its status a moment to appear.
            return self
                .conn
                .add_peer_fate(e, wait.fate_within(Duration::from_millis(100)));
        }
        let e = inc.frames.eof_error(read_elsewhere);
        inc.frames.reset();
        inc.batches.clear();
        // Death mid-frame: name the cause (the pidfd turns readable just
        // after the dying process's descriptors are closed).
        self.conn
            .add_peer_fate(e, wait.fate_within(Duration::from_secs(1)))
    }

    fn recv_datagram<R>(
        &self,
        inc: &mut Incoming,
        wait: Wait,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
        split: Option<impl FnOnce(Split<'_>, Vec<OwnedFd>) -> Result<R>>,
    ) -> Result<R> {
        // One recvmsg into a buffer that holds any datagram up to the
        // receive limit; MSG_TRUNC reports the real length of a longer one,
        // which is refused, never cut silently. The buffer is zeroed by the
        // allocator lazily: only the pages datagrams touch are resident.
        let want = self.datagram_buffer;
        if inc.datagram.len() < want {
            inc.datagram = vec![0; want];
        }
        let block = matches!(wait, Wait::Block);
        // A SEQPACKET peer that closed with our messages unread makes the
        // kernel report ECONNRESET once, *before* the messages it queued for
        // us (unix_release_sock sets sk_err; __skb_try_recv_datagram checks
        // it first and clears it): read on, and the end comes after them.
        let mut reset_seen = false;
        loop {
            if inc.eof {
                return Err(Error::disconnected(
                    "the sender shut down and every message has been received",
                ));
            }
            let mut fds = Vec::new();
            match self.conn.read(&mut inc.datagram[..want], &mut fds, block) {
                // Only SEQPACKET has an end of file, and a procwire sender
                // never sends an empty datagram (an empty message is an
                // announcement: wire format section 3). On DGRAM an empty
                // datagram (from a foreign peer) is an empty message.
                Ok(r) if r.full_len == 0 && self.conn.transport() == Transport::SeqPacket => {
                    inc.eof = true
                }
                Ok(r) => {
                    if r.fds_lost {
                        return Err(fds_lost());
                    }
                    // An announcement's own length is no message's: the
                    // length it announces is checked against `max_frame`
                    // (an empty message's too, under a `max_frame` shorter
                    // than the announcement).
                    let announced = || {
                        r.full_len <= ANNOUNCEMENT_MAX
                            && inc.datagram[..r.len].starts_with(&OUT_OF_LINE_MARKER)
                    };
                    if r.full_len > self.max_frame && !announced() {
                        return Err(Error::too_large(
                            r.full_len as u64,
                            self.max_frame,
                            "the datagram was discarded; raise the receiver's `max_frame`",
                        ));
                    }
                    if r.full_len > r.len {
                        return Err(Error::new(
                            ErrorKind::Truncated,
                            format!(
                                "a datagram of {} did not fit the {} receive buffer (MSG_TRUNC) and \
                                 was discarded; a peer sends larger messages out of line (wire \
                                 format section 3)",
                                crate::error::human(r.full_len as u64),
                                crate::error::human(r.len as u64)
                            ),
                        ));
                    }
                    let payload = &inc.datagram[..r.len];
                    if payload.starts_with(&OUT_OF_LINE_MARKER) {
                        let mut out = Vec::new();
                        let (pieces, len, fds) = receive_out_of_line(
                            payload,
                            fds,
                            self.max_frame,
                            &mut out,
                            split.is_some(),
                            &mut inc.spill,
                        )?;
                        return match pieces {
                            Some(pieces) => Split::of(&out, pieces).take(fds, f, split),
                            None => f(&out[..len], fds),
                        };
                    }
                    return f(payload, fds);
                }
                Err(e) if sys::would_block(&e) => self.wait_readable(wait)?,
                Err(e) if sys::is_disconnect(&e) && !reset_seen => reset_seen = true,
                Err(e) if sys::is_disconnect(&e) => inc.eof = true,
                Err(e) => return Err(Error::io(&self.context(), e)),
            }
        }
    }

    fn wait_readable(&self, wait: Wait) -> Result<()> {
        if wait.expired() {
            return Err(nothing_yet(wait));
        }
        match self.conn.wait(Interest::Read, wait.deadline()) {
            Ok(Waited::Ready | Waited::TimedOut) => Ok(()),
            Ok(Waited::PeerExited(e)) => Err(e),
            Err(e) => Err(Error::io(&self.context(), e)),
        }
    }

    /// Whether another thread is receiving on this channel right now.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn busy(&self) -> bool {
        self.incoming.busy()
    }

    /// For a task that found another thread receiving: `waker` is woken
    /// when that receive ends; `true` if it has ended already.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn wake_when_free(&self, waker: &std::task::Waker) -> bool {
        self.incoming.wake_when_free(waker)
    }

    /// Whether a message (or an end) can be taken without reading the
    /// descriptor: something poll(2) cannot see.
    pub(crate) fn buffered(&self) -> bool {
        self.said.load(Ordering::Acquire) & AHEAD != 0 || self.conn.session_read_ahead()
    }

    /// Whether the last receive read from the descriptor and found it empty
    /// (see `Incoming::drained`): readiness seen before that read is spent,
    /// so an awaited receive may clear it rather than try a read that would
    /// find nothing (as tokio's own `poll_read` does after a short read).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn drained(&self) -> bool {
        self.said.load(Ordering::Acquire) & DRAINED != 0
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Refuses to let this end's descriptor travel while stream bytes it
    /// read are buffered here: only the descriptor would go, and the new
    /// owner would lose those messages, or read the middle of a frame as a
    /// length prefix.
    pub(crate) fn check_nothing_buffered(&self) -> Result<()> {
        let clean = self
            .incoming
            .peek(|inc| inc.frames.at_boundary() && inc.batches.is_empty() && inc.direct.is_none());
        match clean {
            Some(true) => Ok(()),
            Some(false) => Err(Error::new(
                ErrorKind::InvalidInput,
                "this receiver holds bytes it read ahead (the start of a later message); \
                 sending it would lose them: receive what is buffered (try_recv until \
                 Empty) before sending the end, or send it before reading from it",
            )),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                "this receiver is in use by another thread; it cannot travel now",
            )),
        }
    }
}

impl Drop for RecvCore {
    fn drop(&mut self) {
        // A shared-memory writer has no socket to tell it: say so in the ring.
        self.conn.close_read();
    }
}

fn fds_lost() -> Error {
    Error::new(
        ErrorKind::Truncated,
        "descriptors sent with a message did not all arrive (MSG_CTRUNC: this process \
         reached RLIMIT_NOFILE, or more than 253 were sent), or came to an end built with \
         Options::descriptors(false); the message was discarded and the descriptors that did \
         arrive were closed",
    )
}

fn nothing_yet(wait: Wait) -> Error {
    match wait {
        Wait::Never => Error::fixed(ErrorKind::Empty, "no complete message has arrived yet"),
        Wait::Until(_) | Wait::Block => Error::fixed(
            ErrorKind::Timeout,
            "no complete message arrived before the deadline",
        ),
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    pub(crate) fn from_core(core: Arc<RecvCore>) -> Receiver<T> {
        Receiver {
            core,
            _marker: PhantomData,
        }
    }

    pub(crate) fn recv_with_fds_wait(&self, wait: Wait) -> Result<(T, Vec<OwnedFd>)> {
        let codec = self.core.codec;
        self.core.recv(
            wait,
            |payload, fds| Ok((codec.decode(payload)?, fds)),
            Some(|split: Split<'_>, fds| Ok((split.decode(codec)?, fds))),
        )
    }

    /// Receives with `wait`, reporting the one `Error` (each public method
    /// shapes it into its own error type).
    pub(crate) fn recv_wait(&self, wait: Wait) -> Result<T> {
        let codec = self.core.codec;
        // `Fd`s in the message take theirs; other descriptors sent with it
        // are closed.
        self.core.recv(
            wait,
            |payload, fds| crate::fd::providing(fds, || codec.decode(payload)).0,
            Some(|split: Split<'_>, fds| crate::fd::providing(fds, || split.decode(codec)).0),
        )
    }

    /// Waits for the next message.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::channel::<u32>()?;
    /// tx.send(7)?;
    /// drop(tx);
    /// assert_eq!(rx.recv()?, 7);
    /// assert!(rx.recv().unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_wait(Wait::Block).map_err(RecvError::new)
    }

    /// Takes a message if a complete one is there; [`TryRecvError::Empty`]
    /// otherwise.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_wait(Wait::Never).map_err(TryRecvError::new)
    }

    /// Waits at most `timeout`; [`RecvTimeoutError::Timeout`] if no complete
    /// message arrived. Bytes of a partial frame are kept for the next call.
    /// A timeout past any instant (`Duration::MAX`) waits as long as it
    /// takes, as here and in every procwire call that takes a timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_wait(Wait::within(timeout))
            .map_err(RecvTimeoutError::new)
    }

    /// Like [`recv_timeout`](Receiver::recv_timeout) with an instant.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_wait(Wait::Until(deadline))
            .map_err(RecvTimeoutError::new)
    }

    /// Waits for the next message and the descriptors sent with it (empty if
    /// none were), each already owned and close-on-exec.
    pub fn recv_with_fds(&self) -> Result<(T, Vec<OwnedFd>), RecvError> {
        self.recv_with_fds_wait(Wait::Block).map_err(RecvError::new)
    }

    /// Waits for the next message and decodes it into `*place`, reusing
    /// what `place` holds where its type can: a [`ByteBuf`](crate::ByteBuf),
    /// `String` or `Vec` keeps its allocation and takes the new contents
    /// (serde's `deserialize_in_place`; tuples, arrays and `Option`s of
    /// them too), so a loop that receives into one buffer allocates nothing
    /// once the buffer has grown to the largest message. Types without an
    /// in-place decoding (a struct with `#[derive(Deserialize)]`, numbers)
    /// are replaced whole, as [`recv`](Receiver::recv) would give them.
    ///
    /// A large postcard message ending in a byte string (one that
    /// [`recv`](Receiver::recv) reads straight into a buffer of its own)
    /// replaces `place` with that buffer: at that size a second copy would
    /// cost more than the allocation saves.
    ///
    /// Errors are [`recv`](Receiver::recv)'s. When no message was taken
    /// (disconnected, or an I/O error) `place` is untouched; after a
    /// message that does not decode it holds some valid value, not
    /// necessarily the old one, and the channel goes on with the next
    /// message.
    ///
    /// # Examples
    ///
    /// ```
    /// use procwire::ByteBuf;
    ///
    /// let (tx, rx) = procwire::channel::<ByteBuf>()?;
    /// tx.send(ByteBuf::from(vec![1u8; 1000]))?;
    /// tx.send(ByteBuf::from(vec![2u8; 10]))?;
    /// let mut buf = ByteBuf::default();
    /// rx.recv_into(&mut buf)?;
    /// assert_eq!(buf.len(), 1000);
    /// let allocation = buf.as_ptr();
    /// rx.recv_into(&mut buf)?;
    /// assert_eq!(&buf[..], &[2u8; 10]);
    /// assert_eq!(buf.as_ptr(), allocation); // the same buffer, refilled
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_into(&self, place: &mut T) -> Result<(), RecvError> {
        self.recv_into_wait(Wait::Block, place)
            .map_err(RecvError::new)
    }

    /// [`recv_into`](Receiver::recv_into) if a complete message is there;
    /// [`TryRecvError::Empty`] (and `place` untouched) otherwise.
    pub fn try_recv_into(&self, place: &mut T) -> Result<(), TryRecvError> {
        self.recv_into_wait(Wait::Never, place)
            .map_err(TryRecvError::new)
    }

    /// [`recv_into`](Receiver::recv_into), waiting at most `timeout`
    /// ([`RecvTimeoutError::Timeout`], `place` untouched, if no complete
    /// message came).
    pub fn recv_into_timeout(
        &self,
        place: &mut T,
        timeout: Duration,
    ) -> Result<(), RecvTimeoutError> {
        self.recv_into_wait(Wait::within(timeout), place)
            .map_err(RecvTimeoutError::new)
    }

    pub(crate) fn recv_into_wait(&self, wait: Wait, place: &mut T) -> Result<()> {
        let codec = self.core.codec;
        // One of the two is called: each takes `place` from here.
        let place = std::cell::Cell::new(Some(place));
        let take = || place.take().expect("one receive path decodes the message");
        self.core.recv(
            wait,
            |payload, fds| crate::fd::providing(fds, || codec.decode_in_place(payload, take())).0,
            Some(|split: Split<'_>, fds| {
                crate::fd::providing(fds, || {
                    *take() = split.decode(codec)?;
                    Ok(())
                })
                .0
            }),
        )
    }

    /// The next message's payload bytes, undecoded, passed to `f`.
    pub fn recv_raw<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_raw_wait(Wait::Block, f).map_err(RecvError::new)
    }

    /// [`recv_raw`](Receiver::recv_raw), waiting as `wait` says.
    pub(crate) fn recv_raw_wait<R>(&self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.core
            .recv(wait, |payload, _| Ok(f(payload)), one_piece())
    }

    /// An iterator over messages that ends at a clean end of stream. A decode
    /// failure or a peer that died mid-frame is an `Err` item, not an end.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter::new(self)
    }

    /// The messages there now, taken without waiting; see [`TryIter`].
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter::new(self)
    }
}

impl<T> Receiver<T> {
    /// The codec this receiver decodes with.
    pub fn codec(&self) -> CodecKind {
        self.core.codec
    }

    /// The maximum frame size (payload bytes) this receiver accepts.
    pub fn max_frame(&self) -> usize {
        self.core.max_frame
    }

    pub(crate) fn core(&self) -> &Arc<RecvCore> {
        &self.core
    }

    /// Takes the descriptor out of this receiver without a shutdown; see
    /// [`Sender::into_fd`](crate::Sender::into_fd). Refused while bytes of
    /// the stream are buffered in this end (they would be lost to whoever
    /// reads the descriptor next).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = procwire::channel::<u32>()?;
    /// let rx = procwire::Options::new().receiver_from::<u32>(rx.into_fd()?)?;
    /// tx.send(9)?;
    /// assert_eq!(rx.recv()?, 9);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn into_fd(self) -> Result<OwnedFd> {
        self.core.check_nothing_buffered()?;
        self.core.conn.take_fd()
    }

    /// Waits until the descriptor is readable or writable (or the deadline
    /// passes, or the supervised peer exits): for a [`Duplex`](crate::Duplex)
    /// that writes its own frame while it waits to receive.
    pub(crate) fn wait_either(&self, deadline: Option<Instant>) -> Result<()> {
        match self.core.conn.wait(Interest::Either, deadline) {
            Ok(Waited::Ready | Waited::TimedOut) => Ok(()),
            Ok(Waited::PeerExited(e)) => Err(e),
            Err(e) => Err(Error::io(&self.core.context(), e)),
        }
    }

    /// Watches `child`: from now on a wait on this receiver also ends when
    /// the child exits, with an [`ErrorKind::PeerExited`] error that carries
    /// its exit status, and end-of-stream errors say how it ended. Channels
    /// made by [`Command::channel`](crate::Command::channel) watch their
    /// child already.
    pub fn supervise(&self, child: &crate::Child) {
        self.core.conn.supervise(Arc::clone(child.state()) as _);
    }
}

/// The descriptor that turns readable when a message (or the end of the
/// stream) may be there, for poll(2), epoll or an async runtime. Readable
/// means "try now", not "a whole message is there": follow up with
/// [`try_recv`](Receiver::try_recv) until [`Empty`](TryRecvError::Empty), then
/// wait again. On a pipe or socket this is the descriptor itself; on shared
/// memory, an epoll instance that turns readable when the writer publishes
/// after a `try_recv` found the ring empty (which arms it), when the writer
/// closes, or when the writer's process is gone.
impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.conn.recv_ready_fd()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("transport", &self.core.conn.transport().name())
            .field("codec", &self.core.codec)
            .finish_non_exhaustive()
    }
}
