//! Entry points for fuzzing: one function per decoder of bytes that come
//! from another process. Each takes arbitrary bytes and must return without
//! panicking, hanging, leaking or allocating without bound; any other
//! outcome is a bug. The fuzz targets in `fuzz/` (`cargo fuzz`) call them,
//! and a plain test (`tests/fuzz_corpus.rs`) replays every saved input
//! through them, so CI checks the corpus without a fuzzer.
//!
//! Inputs often begin with a few control bytes (a chunk size, a limit, how
//! many descriptors to provide) so that one target explores the settings
//! too.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::codec::CodecKind;
use crate::frame::{FrameDecoder, FrameReader};
use crate::{ByteBuf, Fd, Kind, Options};

/// The longest payload the codec target decodes: longer inputs only slow
/// the fuzzer down (libFuzzer is run with `-max_len=65536` anyway).
const INPUT_LIMIT: usize = 1 << 20;

fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, data),
    }
}

/// A reader that hands out `data` in chunks of at most `chunk` bytes.
struct Chunks<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The frame decoder (section 2 of the wire format): `data[0]` picks the
/// maximum frame, the read chunk size and whether heartbeats are on; the
/// rest is the stream. Every payload it yields is within the maximum and
/// inside the input.
pub fn frames(data: &[u8]) {
    let (c, stream) = split(data);
    let max = [0usize, 1, 7, 64, 4096, 1 << 20][usize::from(c % 6)];
    let chunk = 1 + usize::from(c / 6 % 8) * 37;
    let mut dec = match FrameDecoder::new(max) {
        Ok(d) if c & 0x80 != 0 => d.with_heartbeats(),
        Ok(d) => d,
        Err(_) => return,
    };
    let mut fed = 0;
    let mut yielded = 0;
    while fed < stream.len() {
        let spare = dec.spare();
        let n = spare.len().min(chunk).min(stream.len() - fed);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        dec.filled(n);
        fed += n;
        loop {
            match dec.next_payload() {
                Ok(Some(p)) => {
                    assert!(p.len() <= max, "a payload over the maximum");
                    yielded += p.len();
                }
                Ok(None) => break,
                Err(_) => {} // too large: reported once, skipped
            }
        }
        assert!(
            dec.buffer_capacity() <= 2 * fed + (16 << 10),
            "the buffer grew past what arrived"
        );
    }
    assert!(yielded <= stream.len());
    // The same bytes through the blocking reader, in small pieces.
    if let Ok(mut r) = FrameReader::with_max_frame(
        Chunks {
            data: stream,
            chunk,
        },
        max,
    ) {
        for _ in 0..=stream.len() {
            match r.recv() {
                Ok(Some(p)) => assert!(p.len() <= max),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// A message type with a bit of everything serde has, nesting included.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Pair(i64, u8),
    Rect { w: u32, h: u32 },
    Group(Vec<Shape>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: u64,
    name: String,
    tags: Vec<String>,
    blob: ByteBuf,
    shape: Shape,
    extra: Option<BTreeMap<String, i32>>,
    nested: Option<Box<Sample>>,
}

impl Sample {
    /// A sample with nothing in it (and nothing nested).
    fn leaf() -> Sample {
        Sample {
            id: 1,
            name: String::new(),
            tags: Vec::new(),
            blob: ByteBuf::new(),
            shape: Shape::Empty,
            extra: None,
            nested: None,
        }
    }
}

/// The codec `c` picks: the same mapping in every build (the saved corpus
/// depends on it), with postcard standing in for a codec not compiled in.
fn codec_of(c: u8) -> CodecKind {
    match c % 4 {
        #[cfg(feature = "msgpack")]
        1 => CodecKind::MsgPack,
        #[cfg(feature = "json")]
        2 => CodecKind::Json,
        3 => CodecKind::Raw,
        _ => CodecKind::Postcard,
    }
}

/// One codec's decoder (`data[0]` picks it: postcard, MessagePack, JSON,
/// raw) on several target types. What decodes must encode again and decode
/// to the same value.
pub fn codec(data: &[u8]) {
    let (c, payload) = split(data);
    let codec = codec_of(c);
    if payload.len() > INPUT_LIMIT {
        return;
    }
    fn again<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        codec: CodecKind,
        v: &T,
    ) {
        let mut out = Vec::new();
        if codec.encode(v, &mut out).is_ok() {
            let back: T = codec.decode(&out).expect("what was encoded decodes");
            // NaN is not equal to itself; compare the encodings then.
            let mut twice = Vec::new();
            codec.encode(&back, &mut twice).expect("encodes again");
            assert_eq!(out, twice, "a value changed across a round trip");
        }
    }
    /// Decoding into `prior` (`recv_into`) accepts what a fresh decode
    /// accepts, and gives the same value.
    fn in_place<T: Serialize + for<'de> Deserialize<'de> + std::fmt::Debug>(
        codec: CodecKind,
        payload: &[u8],
        fresh: &std::result::Result<T, crate::Error>,
        mut prior: T,
    ) {
        let placed = codec.decode_in_place(payload, &mut prior);
        assert_eq!(
            placed.is_ok(),
            fresh.is_ok(),
            "in place: {placed:?}, fresh: {fresh:?}"
        );
        if let Ok(fresh) = fresh {
            // (NaN is not equal to itself: compare the encodings.)
            let (mut a, mut b) = (Vec::new(), Vec::new());
            codec.encode(fresh, &mut a).expect("encodes");
            codec.encode(&prior, &mut b).expect("encodes");
            assert_eq!(a, b, "in place gave {prior:?}, fresh {fresh:?}");
        }
    }
    let sample = codec.decode::<Sample>(payload);
    in_place(codec, payload, &sample, prior_sample());
    if let Ok(v) = &sample {
        again(codec, v);
    }
    let shapes = codec.decode::<Vec<Shape>>(payload);
    let prior = vec![
        Shape::Pair(-1, 2),
        Shape::Group(vec![Shape::Empty]),
        Shape::Circle(0.5),
    ];
    in_place(codec, payload, &shapes, prior);
    if let Ok(v) = &shapes {
        again(codec, v);
    }
    let string = codec.decode::<String>(payload);
    in_place(
        codec,
        payload,
        &string,
        "a prior string, longer than most".repeat(3),
    );
    if let Ok(v) = &string {
        again(codec, v);
    }
    if let Ok(v) = codec.decode::<(u8, i128, bool, char)>(payload) {
        again(codec, &v);
    }
    let bytes = codec.decode::<ByteBuf>(payload);
    in_place(codec, payload, &bytes, ByteBuf::from(vec![9u8; 100]));
    in_place(codec, payload, &bytes, ByteBuf::new());
}

/// A value for [`codec`]'s decodes in place to overwrite.
fn prior_sample() -> Sample {
    Sample {
        id: 7,
        name: "prior".repeat(20),
        tags: vec!["a".into(), "bb".into(), "ccc".into()],
        blob: ByteBuf::from(vec![1u8; 300]),
        shape: Shape::Rect { w: 3, h: 4 },
        extra: Some(BTreeMap::from([("k".to_string(), 1)])),
        nested: Some(Box::new(Sample::leaf())),
    }
}

/// A message that carries descriptors (`Fd` fields), decoded with
/// `data[0] % 4` real descriptors provided, as if they came with it. Every
/// provided descriptor ends up owned by the message or closed.
pub fn fd_message(data: &[u8]) {
    #[derive(Serialize, Deserialize)]
    struct WithFds {
        label: String,
        fds: Vec<Fd>,
        one: Option<Fd>,
    }
    let (c, payload) = split(data);
    let codec = codec_of(c >> 2);
    let mut fds: Vec<OwnedFd> = Vec::new();
    for _ in 0..c % 4 {
        let Ok((r, w)) = crate::sys::pipe() else {
            return;
        };
        fds.push(r);
        drop(w);
    }
    let (decoded, left) = crate::fd::providing(fds, || codec.decode::<WithFds>(payload));
    drop(decoded);
    drop(left);
}

/// A shared-memory ring's header and records, as a hostile peer may write
/// them: `data` is laid over the head and tail positions and the data
/// area, then the reader reads until it reports an error or runs dry. It
/// never reads outside the ring and never yields more than the ring holds.
pub fn shm_ring(data: &[u8]) {
    crate::shm::fuzz_read(data);
}

/// The `tcp://` handshake's parsers (feature `tcp`): `data` as a
/// client's HELLO to a server with a key and without, as a server's REPLY
/// to a real HELLO, and as a CONFIRM after a real REPLY. Nothing forged
/// passes: without the key, no message decrypts.
#[cfg(feature = "tcp")]
pub fn handshake(data: &[u8]) {
    use crate::endpoint::auth::{Client, Server};
    let key = b"the fuzzing key, sixteen+ bytes";
    for k in [Some(&key[..]), None] {
        let s = Server::new(k, 1000);
        let answered = s.answer(data);
        // Only a client that knows the key (or, keyless, anyone) gets a
        // reply; the forged data never confirms.
        if let Ok((_, replied)) = answered {
            assert!(k.is_none() || data.len() > 7, "a stub hello was answered");
            assert!(replied.confirm(data).is_err(), "a forged confirm passed");
        }
        let (c, _) = Client::new(k, 1000);
        let _ = c.finish(data);
        let (c, hello) = Client::new(k, 1000);
        if let Ok((_reply, replied)) = s.answer(&hello) {
            assert!(replied.confirm(data).is_err(), "a forged confirm passed");
        }
        let forged = c.finish(data);
        assert!(forged.is_err() || k.is_none(), "a forged reply passed");
    }
}

/// A whole receiving channel over a real socket pair: `data[0]` picks the
/// transport (stream, seqpacket, datagram) and codec, the rest is what the
/// peer sent (split into datagrams at 0xFF bytes on message sockets).
/// Receiving ends in errors or a clean end, never a hang or a panic.
pub fn channel(data: &[u8]) {
    let (c, bytes) = split(data);
    let kind = [Kind::Stream, Kind::SeqPacket, Kind::Datagram][usize::from(c % 3)];
    let opts = Options::new().codec(codec_of(c / 3)).max_frame(1 << 16);
    let Ok((a, b)) = crate::socket::socket_pair(kind) else {
        return;
    };
    let Ok(rx) = opts.receiver_from::<Sample>(b) else {
        return;
    };
    let mut peer = a;
    if kind == Kind::Stream {
        let _ = peer.write_all(&bytes[..bytes.len().min(100_000)]);
    } else {
        for d in bytes.split(|&b| b == 0xFF).take(64) {
            let _ = peer.send(&d[..d.len().min(60_000)]);
        }
    }
    let _ = peer.shutdown(std::net::Shutdown::Write);
    // Everything is in the socket already: take messages until there is
    // nothing more (a datagram socket has no end) or the stream ended.
    for _ in 0..256 {
        match rx.try_recv() {
            Ok(_) => {}
            Err(e) if e.is_disconnected() || e.kind() == crate::ErrorKind::Empty => break,
            Err(_) => {}
        }
    }
    drop(peer);
}

/// Valid inputs to start each target's corpus from: `(target, bytes)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sample = Sample {
        id: 7,
        name: "Heavy lifting".into(),
        tags: vec!["a".into(), "bb".into()],
        blob: ByteBuf::from(vec![1, 2, 3]),
        shape: Shape::Group(vec![Shape::Rect { w: 2, h: 3 }, Shape::Circle(0.5)]),
        extra: Some(BTreeMap::from([("k".to_string(), -1)])),
        nested: Some(Box::new(Sample::leaf())),
    };
    let mut out = Vec::new();
    for c in 0..4u8 {
        let mut enc = vec![c];
        if codec_of(c).encode(&sample, &mut enc).is_ok() {
            out.push(("codec", enc.clone()));
            out.push(("channel", {
                let mut framed = vec![c * 3];
                framed.extend_from_slice(&((enc.len() - 1) as u32).to_be_bytes());
                framed.extend_from_slice(&enc[1..]);
                framed
            }));
        }
    }
    let mut frames = vec![4u8];
    for p in [&b"hello"[..], b"", &[0xAB; 300]] {
        frames.extend_from_slice(&(p.len() as u32).to_be_bytes());
        frames.extend_from_slice(p);
    }
    out.push(("frames", frames));
    out.push((
        "fd_message",
        vec![2, 0x01, b'x', 0x02, 0x00, 0x01, 0x01, 0x01, 0x01],
    ));
    let mut ring = Vec::new();
    ring.extend_from_slice(&16u64.to_le_bytes());
    ring.extend_from_slice(&0u64.to_le_bytes());
    ring.extend_from_slice(&5u32.to_le_bytes());
    ring.extend_from_slice(&0u32.to_le_bytes());
    ring.extend_from_slice(b"hello\0\0\0");
    out.push(("shm_ring", ring));
    #[cfg(feature = "tcp")]
    {
        use crate::endpoint::auth::{Client, Server};
        let key = Some(&b"the fuzzing key, sixteen+ bytes"[..]);
        let (c, hello) = Client::new(key, 1000);
        out.push(("handshake", hello.clone()));
        if let Ok((reply, _)) = Server::new(key, 1000).answer(&hello) {
            out.push(("handshake", reply.clone()));
            if let Ok((_, confirm)) = c.finish(&reply) {
                out.push(("handshake", confirm));
            }
        }
    }
    out
}

/// A fuzz target's name and entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every entry point by its fuzz target's name.
pub fn targets() -> Vec<Target> {
    vec![
        ("frames", frames),
        ("codec", codec),
        ("fd_message", fd_message),
        ("shm_ring", shm_ring),
        ("channel", channel),
        #[cfg(feature = "tcp")]
        ("handshake", handshake),
    ]
}
