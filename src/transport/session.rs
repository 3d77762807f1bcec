//! The encrypted session of a `tcp://` connection: every byte after the
//! handshake travels in records, `[length: u16, big-endian][ciphertext]`,
//! each a Noise transport message (ChaCha20-Poly1305, at most 65,535 bytes
//! with its 16-byte tag) under a counter per direction. A record that was
//! changed, dropped, reordered or replayed does not decrypt, and the
//! session is over (wire format section 11).
//!
//! Sealing works on whole frames, in the sender's frame buffer, so that a
//! frame the kernel takes in part is still written whole later; opening
//! sits under [`Conn::read`](super::Conn::read), so that the frame decoder
//! above sees the plain byte stream.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// The largest Noise message; a record's plaintext is 16 bytes less.
const MAX_RECORD: usize = 65_535;
const TAG: usize = 16;
const MAX_PLAIN: usize = MAX_RECORD - TAG;

/// The keys and counters of one connection's session.
pub(crate) struct Session {
    keys: snow::StatelessTransportState,
    /// The next counter of each direction.
    sent: AtomicU64,
    received: AtomicU64,
    opening: Mutex<Opening>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// What was read and not yet handed up: records still sealed (in
/// `sealed[start..end]`, a buffer allocated once), and plain bytes of the
/// last record opened that did not fit the reader's buffer.
#[derive(Default)]
struct Opening {
    sealed: Vec<u8>,
    start: usize,
    end: usize,
    plain: Vec<u8>,
    given: usize,
}

fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a frame failed its integrity check (changed, dropped, reordered or replayed on the \
         way, or sent by someone without the session's keys): the session is over",
    )
}

impl Session {
    /// A session from a finished handshake. The client's confirmation
    /// used its counter 0.
    pub(crate) fn new(keys: snow::StatelessTransportState, client: bool) -> Session {
        Session {
            keys,
            sent: AtomicU64::new(u64::from(client)),
            received: AtomicU64::new(u64::from(!client)),
            opening: Mutex::new(Opening::default()),
        }
    }

    /// Whether bytes wait here that poll(2) cannot see: a plain record
    /// opened and not all handed up, or a whole record not yet opened.
    pub(crate) fn has_read_ahead(&self) -> bool {
        let o = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if o.given < o.plain.len() {
            return true;
        }
        let have = &o.sealed.get(o.start..o.end).unwrap_or(&[]);
        have.len() >= 2 && have.len() >= 2 + usize::from(u16::from_be_bytes([have[0], have[1]]))
    }

    /// Seals `plain` (one or more frames) into records appended to `out`;
    /// returns how many.
    pub(crate) fn seal(&self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<u64> {
        out.reserve(plain.len() + (plain.len() / MAX_PLAIN + 1) * (2 + TAG));
        let mut records = 0;
        for chunk in plain.chunks(MAX_PLAIN) {
            records += 1;
            let n = self.sent.fetch_add(1, Ordering::Relaxed);
            let at = out.len();
            out.resize(at + 2 + chunk.len() + TAG, 0);
            let len = self
                .keys
                .write_message(n, chunk, &mut out[at + 2..])
                .map_err(|e| io::Error::other(format!("sealing a record: {e}")))?;
            out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
            out.truncate(at + 2 + len);
        }
        Ok(records)
    }

    /// Takes back the counters of `records` sealed and never sent (a
    /// `try_send` that found no room): the next record must carry the
    /// counter the peer expects. Only under the sender's lock.
    pub(crate) fn unseal(&self, records: u64) {
        self.sent.fetch_sub(records, Ordering::Relaxed);
    }

    /// Reads plain bytes into `buf`: opens records as they arrive whole.
    /// `Ok(0)` at the end of a stream that ended between records.
    pub(crate) fn read(
        &self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        block: bool,
        heard: &dyn Fn(&io::Result<sys::Received>),
    ) -> io::Result<sys::Received> {
        let mut o = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if o.given < o.plain.len() {
                let n = buf.len().min(o.plain.len() - o.given);
                buf[..n].copy_from_slice(&o.plain[o.given..o.given + n]);
                o.given += n;
                return Ok(sys::Received::plain(n));
            }
            match self.open_one(&mut o, buf)? {
                Opened::Direct(0) | Opened::Parked => continue,
                Opened::Direct(n) => return Ok(sys::Received::plain(n)),
                Opened::NeedMore => {}
            }
            // Not a whole record yet: read more, after what is there.
            if o.sealed.is_empty() {
                o.sealed = vec![0; 2 * (2 + MAX_RECORD)];
            }
            if o.start > 0 {
                let (start, end) = (o.start, o.end);
                o.sealed.copy_within(start..end, 0);
                (o.start, o.end) = (0, end - start);
            }
            let end = o.end;
            let got = sys::recv_bytes(fd, &mut o.sealed[end..], !block);
            heard(&got);
            let r = got?;
            o.end += r.len;
            if r.len == 0 {
                if o.end > o.start {
                    // The stream ended inside a record: it was cut.
                    return Err(broken());
                }
                return Ok(r);
            }
        }
    }

    /// Opens the first record in `o.sealed`, if it is whole: straight into
    /// `buf` when it fits, else into `o.plain`.
    fn open_one(&self, o: &mut Opening, buf: &mut [u8]) -> io::Result<Opened> {
        let have = &o.sealed[o.start..o.end];
        if have.len() < 2 {
            return Ok(Opened::NeedMore);
        }
        let len = usize::from(u16::from_be_bytes([have[0], have[1]]));
        if len < TAG {
            return Err(broken());
        }
        if have.len() < 2 + len {
            return Ok(Opened::NeedMore);
        }
        let n = self.received.fetch_add(1, Ordering::Relaxed);
        let Opening {
            sealed,
            start,
            plain,
            given,
            ..
        } = o;
        let record = &sealed[*start + 2..*start + 2 + len];
        let opened = if buf.len() >= len - TAG {
            let m = self
                .keys
                .read_message(n, record, buf)
                .map_err(|_| broken())?;
            Opened::Direct(m)
        } else {
            plain.resize(len - TAG, 0);
            let m = self
                .keys
                .read_message(n, record, plain)
                .map_err(|_| broken())?;
            plain.truncate(m);
            *given = 0;
            Opened::Parked
        };
        *start += 2 + len;
        Ok(opened)
    }
}

/// What opening the next record gave.
enum Opened {
    /// This many plain bytes, in the caller's buffer.
    Direct(usize),
    /// Plain bytes kept, to hand out in pieces.
    Parked,
    /// The record is not whole yet.
    NeedMore,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::auth::{Client, Server};
    use std::os::fd::AsFd;

    /// The two sessions of one handshake: the client's and the server's.
    fn pair() -> (Session, Session) {
        let key = Some(&b"a key of sixteen bytes or more"[..]);
        let (c, hello) = Client::new(key, 1000);
        let (reply, replied) = Server::new(key, 1000).answer(&hello).unwrap();
        let (ok, confirm) = c.finish(&reply).unwrap();
        let accepted = replied.confirm(&confirm).unwrap();
        (
            Session::new(ok.session.0, true),
            Session::new(accepted.session.0, false),
        )
    }

    fn read_all(s: &Session, fd: BorrowedFd<'_>, want: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1000]; // smaller than a record: parked and handed out in pieces
        while out.len() < want {
            match s.read(fd, &mut buf, false, &|_| {}) {
                Ok(r) if r.len == 0 => break,
                Ok(r) => out.extend_from_slice(&buf[..r.len]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    #[test]
    fn records_arriving_byte_by_byte_open_whole_and_in_order() {
        let (client, server) = pair();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let plain: Vec<u8> = (0..140_000u32).map(|i| (i % 251) as u8).collect();
        let mut sealed = Vec::new();
        assert_eq!(client.seal(&plain, &mut sealed).unwrap(), 3); // 65,519-byte records
        let mut got = Vec::new();
        for byte in &sealed {
            std::io::Write::write_all(&mut &a, std::slice::from_ref(byte)).unwrap();
            // Nothing whole yet is WouldBlock, never a short or wrong read.
            got.extend(read_all(&server, b.as_fd(), plain.len()).unwrap());
        }
        assert!(got == plain, "the stream came out different");
    }

    #[test]
    fn a_changed_dropped_or_replayed_record_ends_the_session() {
        type Tamper = fn(&[u8], &[u8]) -> Vec<u8>;
        let cases: [(&str, Tamper); 3] = [
            ("changed", |one, _| {
                let mut x = one.to_vec();
                x[5] ^= 1;
                x
            }),
            ("dropped", |_, two| two.to_vec()),
            ("replayed", |one, _| [one, one].concat()),
        ];
        for (name, make) in cases {
            let (client, server) = pair();
            let (mut one, mut two) = (Vec::new(), Vec::new());
            client.seal(b"first", &mut one).unwrap();
            client.seal(b"second", &mut two).unwrap();
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            std::io::Write::write_all(&mut &a, &make(&one, &two)).unwrap();
            let e = read_all(&server, b.as_fd(), 100).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}: {e}");
            assert!(e.to_string().contains("integrity"), "{name}: {e}");
        }
    }

    #[test]
    fn records_read_ahead_are_seen_by_has_read_ahead() {
        let (client, server) = pair();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        client.seal(b"first", &mut one).unwrap();
        client.seal(b"second", &mut two).unwrap();
        // Both records arrive in one read: the second waits sealed, where
        // poll(2) cannot see it; Select asks has_read_ahead instead.
        std::io::Write::write_all(&mut &a, &[one, two].concat()).unwrap();
        assert!(!server.has_read_ahead());
        let mut buf = [0u8; 100];
        let n = server
            .read(b.as_fd(), &mut buf, false, &|_| {})
            .unwrap()
            .len;
        assert_eq!(&buf[..n], b"first");
        assert!(server.has_read_ahead(), "the second record was not counted");
        let n = server
            .read(b.as_fd(), &mut buf, false, &|_| {})
            .unwrap()
            .len;
        assert_eq!(&buf[..n], b"second");
        assert!(!server.has_read_ahead());
    }

    #[test]
    fn a_stream_cut_inside_a_record_is_an_error_not_an_end() {
        let (client, server) = pair();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut sealed = Vec::new();
        client.seal(b"a whole message", &mut sealed).unwrap();
        std::io::Write::write_all(&mut &a, &sealed[..sealed.len() - 3]).unwrap();
        drop(a);
        let e = read_all(&server, b.as_fd(), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
