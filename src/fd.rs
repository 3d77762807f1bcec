//! Descriptors inside typed messages.
//!
//! A message may contain [`Fd`]s (any open descriptor: a file, a pipe end, a
//! socket) and procwire's own channel ends ([`Sender`], [`Receiver`],
//! [`Duplex`]). While a message is encoded, each one is duplicated into the
//! list of descriptors that travels with the frame (`SCM_RIGHTS`) and
//! written as its index in that list; the receiver decodes the index back
//! into the descriptor it received. Only Unix sockets carry descriptors:
//! on a pipe such a message is an
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error.
//!
//! Sending a channel end gives the other process a copy: drop yours
//! afterwards, or the peer of a sent [`Sender`] never sees end-of-stream
//! (the forgotten-writer hazard).
//!
//! # Examples
//!
//! ```
//! use procwire::{Fd, Sender};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Job { name: String, reply_to: Sender<String> }
//!
//! let (boss, worker) = procwire::duplex::<Job, ()>()?;
//! let (reply_tx, reply_rx) = procwire::channel::<String>()?;
//! boss.send(Job { name: "Heavy lifting".into(), reply_to: reply_tx })?;
//!
//! let job: Job = worker.recv()?;
//! job.reply_to.send(format!("{} accomplished!", job.name))?;
//! drop(job); // both copies of the pipe's writer are gone now
//! assert_eq!(reply_rx.recv()?, "Heavy lifting accomplished!");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

use crate::codec::CodecKind;
use crate::{Duplex, Options, Receiver, Sender};

/// Descriptors collected while a message is encoded, and the index the
/// first of them will have in the frame's list.
struct Outgoing {
    /// The nesting of the encoding they belong to (see [`Encoding`]).
    depth: usize,
    first: usize,
    fds: Vec<OwnedFd>,
    /// Why an end refused to be serialized: codecs such as postcard keep
    /// only "serialization error", so the reason travels here instead.
    refused: Option<crate::Error>,
}

/// The encoding in progress on this thread: how deeply nested (0: none; a
/// `Serialize` impl may send on another channel) and the index its first
/// descriptor will have. A plain `Cell`, so that a message without
/// descriptors costs two reads and two writes of it, nothing more.
#[derive(Clone, Copy)]
struct Encoding {
    depth: usize,
    first: usize,
    /// Whether it has an entry in `OUTGOING` (so that one without
    /// descriptors never touches it).
    collected: bool,
}

thread_local! {
    static ENCODING: Cell<Encoding> = const {
        Cell::new(Encoding {
            depth: 0,
            first: 0,
            collected: false,
        })
    };
    /// Descriptors collected on this thread, innermost encoding last; only
    /// touched when a message holds an `Fd` or an end refuses to travel.
    static OUTGOING: RefCell<Vec<Outgoing>> = const { RefCell::new(Vec::new()) };
    /// Descriptors received with the message being decoded on this thread.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Ends an encoding on unwind (a panicking `Serialize`): the outer one is
/// current again, and what this one collected is closed. On return,
/// [`collecting`] does the same and forgets the guard.
struct Nested {
    outer: Encoding,
}

impl Nested {
    /// Makes the outer encoding current again; what this one collected, if
    /// anything.
    #[inline]
    fn end(&self) -> Option<Outgoing> {
        let mine = ENCODING.with(|e| e.replace(self.outer));
        if mine.collected {
            return collected(mine.depth);
        }
        None
    }
}

/// The descriptors the encoding at `depth` collected.
#[cold]
fn collected(depth: usize) -> Option<Outgoing> {
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        o.last()
            .is_some_and(|m| m.depth == depth)
            .then(|| o.pop())?
    })
}

impl Drop for Nested {
    fn drop(&mut self) {
        drop(self.end());
    }
}

/// Runs `encode` collecting the descriptors of the [`Fd`]s it serializes,
/// numbered from `first`.
/// An encoding error that an end refusing to travel explains is replaced by
/// that explanation.
#[inline]
pub(crate) fn collecting(
    first: usize,
    encode: impl FnOnce() -> crate::Result<()>,
) -> (crate::Result<()>, Vec<OwnedFd>) {
    let outer = ENCODING.with(|e| {
        let outer = e.get();
        e.set(Encoding {
            depth: outer.depth + 1,
            first,
            collected: false,
        });
        outer
    });
    let nested = Nested { outer };
    let r = encode();
    let mine = nested.end();
    std::mem::forget(nested);
    match mine {
        Some(Outgoing {
            refused: Some(why), ..
        }) if r.is_err() => (Err(why), Vec::new()),
        Some(m) => (r, m.fds),
        None => (r, Vec::new()),
    }
}

/// The current encoding's collection, made on first use; `None` outside
/// any encoding.
fn with_outgoing<R>(f: impl FnOnce(&mut Outgoing) -> R) -> Option<R> {
    let enc = ENCODING.with(Cell::get);
    let Encoding { depth, first, .. } = enc;
    if depth == 0 {
        return None;
    }
    ENCODING.with(|e| {
        e.set(Encoding {
            collected: true,
            ..enc
        })
    });
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        if o.last().is_none_or(|m| m.depth != depth) {
            o.push(Outgoing {
                depth,
                first,
                fds: Vec::new(),
                refused: None,
            });
        }
        Some(f(o.last_mut().expect("pushed above")))
    })
}

/// An end cannot travel (`why`): remembered for [`collecting`], and turned
/// into the serializer's error.
fn refuse<E: ser::Error>(why: crate::Error) -> E {
    let e = E::custom(&why);
    with_outgoing(|o| {
        o.refused.get_or_insert(why);
    });
    e
}

/// Runs `decode` with `fds` available to the [`Fd`]s it deserializes;
/// returns the descriptors it did not take (in order, closed ones removed).
#[inline]
pub(crate) fn providing<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    if fds.is_empty() {
        return (decode(), fds);
    }
    providing_some(fds, decode)
}

fn providing_some<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let slots = fds.into_iter().map(Some).collect();
    let outer = INCOMING.with(|i| i.borrow_mut().replace(slots));
    let r = decode();
    let left = INCOMING.with(|i| std::mem::replace(&mut *i.borrow_mut(), outer));
    (r, left.unwrap_or_default().into_iter().flatten().collect())
}

/// An open descriptor that can travel inside a message. See the module
/// docs.
///
/// # Examples
///
/// ```
/// use procwire::{Fd, Kind, SocketPair};
/// use std::io::{Read, Write};
///
/// let (tx, rx) = SocketPair::new(Kind::Stream).channel::<Fd>()?;
/// let mut file = tempfile::tempfile()?;
/// file.write_all(b"shared")?;
/// tx.send(Fd::from(std::os::fd::OwnedFd::from(file)))?;
/// // The receiver's copy shares the file's offset: go back to the start.
/// let mut got = std::fs::File::from(rx.recv()?.into_inner());
/// std::io::Seek::rewind(&mut got)?;
/// let mut text = String::new();
/// got.read_to_string(&mut text)?;
/// assert_eq!(text, "shared");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fd(OwnedFd);

impl Fd {
    /// The descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0).finish()
    }
}

const FD_NAME: &str = "procwire::Fd";

fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, s: S) -> Result<S::Ok, S::Error> {
    let copy = fd
        .try_clone_to_owned()
        .map_err(|e| ser::Error::custom(format_args!("duplicating a descriptor: {e}")))?;
    let index = with_outgoing(|list| {
        list.fds.push(copy);
        list.first + list.fds.len() - 1
    })
    .ok_or_else(|| ser::Error::custom("a descriptor can only be serialized by a procwire send"))?;
    s.serialize_newtype_struct(FD_NAME, &(index as u32))
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "procwire::Fd")]
        struct Index(u32);
        let Index(index) = Index::deserialize(d)?;
        INCOMING.with(|i| {
            let mut i = i.borrow_mut();
            let slot = i
                .as_mut()
                .and_then(|slots| slots.get_mut(index as usize))
                .and_then(Option::take);
            slot.map(Fd).ok_or_else(|| {
                crate::codec::custom_error(format!(
                    "the message refers to descriptor #{index}, which did not arrive with it \
                     (or was taken twice)"
                ))
            })
        })
    }
}

/// How a channel end travels: its descriptor and how to speak on it.
#[derive(Serialize, Deserialize)]
#[serde(rename = "procwire::End")]
struct EndRepr {
    fd: Fd,
    codec: String,
    max_frame: u64,
    /// A shared-memory end: its rings' memfds and capacity.
    rings: Option<RingsRepr>,
}

#[derive(Serialize, Deserialize)]
struct RingsRepr {
    tx: Option<RingRepr>,
    rx: Option<RingRepr>,
    capacity: u64,
}

/// One ring: its memfd, its two readiness eventfds, and the spill file
/// of the end, if it has one (`shm`: large messages).
#[derive(Serialize, Deserialize)]
struct RingRepr {
    memfd: Fd,
    data: Fd,
    space: Fd,
    spill: Option<Fd>,
}

impl RingRepr {
    fn into_parts(self) -> crate::transport::RingParts {
        crate::transport::RingParts {
            memfd: self.memfd.0,
            data: self.data.0,
            space: self.space.0,
            spill: self.spill.map(|f| f.0),
        }
    }

    fn from_parts(p: crate::transport::RingParts) -> RingRepr {
        RingRepr {
            memfd: Fd(p.memfd),
            data: Fd(p.data),
            space: Fd(p.space),
            spill: p.spill.map(Fd),
        }
    }
}

/// What a received end is built on.
enum Received {
    /// A plain descriptor, classified like any other.
    Fd(Options, OwnedFd),
    /// A shared-memory end, already mapped.
    Shm(Options, std::sync::Arc<crate::transport::Conn>),
}

fn received<E: de::Error>(r: EndRepr) -> Result<Received, E> {
    let options = options_of(&r.codec, r.max_frame)?;
    let Some(rings) = r.rings else {
        return Ok(Received::Fd(options, r.fd.0));
    };
    let cap = usize::try_from(rings.capacity).map_err(E::custom)?;
    let conn = crate::transport::Conn::from_shm_parts(
        r.fd.0,
        rings.tx.map(RingRepr::into_parts),
        rings.rx.map(RingRepr::into_parts),
        cap,
    )
    .map_err(|e| E::custom(format_args!("the shared-memory end cannot be mapped: {e}")))?;
    Ok(Received::Shm(options, std::sync::Arc::new(conn)))
}

fn options_of<E: de::Error>(codec: &str, max_frame: u64) -> Result<Options, E> {
    let codec: CodecKind = codec.parse().map_err(E::custom)?;
    let max = usize::try_from(max_frame).map_err(E::custom)?;
    Ok(Options::new().codec(codec).max_frame(max))
}

fn serialize_end<S: Serializer>(
    conn: &crate::transport::Conn,
    codec: CodecKind,
    max_frame: usize,
    s: S,
) -> Result<S::Ok, S::Error> {
    use ser::SerializeStruct;
    if conn.transport() == crate::transport::Transport::Tcp {
        return Err(ser::Error::custom(
            "a tcp:// end cannot travel inside a message: its session's keys stay in this \
             process; connect from the other process instead",
        ));
    }
    // Our end stops shutting the socket down on drop once the frame that
    // carries this copy is accepted (see `crate::ends`), not here: the send
    // may still fail, or this may not be a procwire send at all.
    let fd = conn.as_fd();
    let rings = conn
        .shm_parts()
        .map_err(|e| ser::Error::custom(format_args!("duplicating a ring's memfd: {e}")))?
        .map(|(tx, rx, capacity)| RingsRepr {
            tx: tx.map(RingRepr::from_parts),
            rx: rx.map(RingRepr::from_parts),
            capacity: capacity as u64,
        });
    let mut st = s.serialize_struct("procwire::End", 4)?;
    st.serialize_field("fd", &BorrowedAsFd(fd))?;
    st.serialize_field("codec", codec.name())?;
    st.serialize_field("max_frame", &(max_frame as u64))?;
    st.serialize_field("rings", &rings)?;
    st.end()
}

/// Serializes a borrowed descriptor like an [`Fd`].
struct BorrowedAsFd<'a>(BorrowedFd<'a>);

impl Serialize for BorrowedAsFd<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0, s)
    }
}

impl<T> Serialize for Sender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_end(self.core().conn(), self.codec(), self.max_frame(), s)
    }
}

impl<'de, T: Serialize> Deserialize<'de> for Sender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sender<T>, D::Error> {
        match received(EndRepr::deserialize(d)?)? {
            Received::Shm(options, conn) => Ok(options.sender_on(conn)),
            Received::Fd(options, fd) => options.sender_from(fd).map_err(de::Error::custom),
        }
    }
}

impl<T> Serialize for Receiver<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.core().check_nothing_buffered().map_err(refuse)?;
        serialize_end(self.core().conn(), self.codec(), self.max_frame(), s)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Receiver<T>, D::Error> {
        match received(EndRepr::deserialize(d)?)? {
            Received::Shm(options, conn) => options.receiver_on(conn).map_err(de::Error::custom),
            Received::Fd(options, fd) => options.receiver_from(fd).map_err(de::Error::custom),
        }
    }
}

impl<A, B> Serialize for Duplex<A, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rx = self.receiver();
        rx.core().check_nothing_buffered().map_err(refuse)?;
        serialize_end(rx.core().conn(), rx.codec(), rx.max_frame(), s)
    }
}

impl<'de, A: Serialize, B: DeserializeOwned> Deserialize<'de> for Duplex<A, B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duplex<A, B>, D::Error> {
        match received(EndRepr::deserialize(d)?)? {
            Received::Shm(options, conn) => options.duplex_on(conn).map_err(de::Error::custom),
            Received::Fd(options, fd) => options.duplex_from(fd).map_err(de::Error::custom),
        }
    }
}
