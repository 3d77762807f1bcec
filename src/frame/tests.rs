//! Unit tests of the framing.

use std::io::{self, Read, Write};

use super::decoder::{INITIAL_BUFFER, READ_AHEAD};
use super::*;
use crate::error::ErrorKind;

/// A writer that accepts at most `chunk` bytes per call and counts calls.
struct Chunky {
    data: Vec<u8>,
    chunk: usize,
    calls: usize,
}

impl Write for Chunky {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = b.len().min(self.chunk);
        self.data.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hands out at most `chunk` bytes per call.
struct Dribble<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = b.len().min(self.chunk).min(self.data.len());
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn one_write_call_per_frame() {
    let mut w = FrameWriter::new(Chunky {
        data: Vec::new(),
        chunk: usize::MAX,
        calls: 0,
    });
    for i in 0..100u32 {
        w.send(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(w.get_ref().calls, 100);
}

#[test]
fn short_writes_and_one_byte_reads_keep_frames_whole() {
    let msgs: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i * 37]).collect();
    let mut w = FrameWriter::new(Chunky {
        data: Vec::new(),
        chunk: 3,
        calls: 0,
    });
    for m in &msgs {
        w.send(m).unwrap();
    }
    let wire = w.into_inner().data;
    let mut r = FrameReader::new(Dribble {
        data: &wire,
        chunk: 1,
    });
    for m in &msgs {
        assert_eq!(r.recv().unwrap().unwrap(), &m[..]);
    }
    assert!(r.recv().unwrap().is_none());
}

#[test]
fn a_4_gib_length_prefix_is_refused_before_allocating() {
    let wire = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let mut r = FrameReader::new(&wire[..]);
    let e = r.recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
    assert!(
        e.to_string().contains("4.0 GiB exceeds the 64 MiB limit"),
        "{e}"
    );
    assert!(r.decoder().buffer_capacity() <= INITIAL_BUFFER);
}

#[test]
fn a_lying_length_costs_only_what_arrives() {
    // Claims 60 MiB, delivers 1 KiB, then the stream ends.
    let mut wire = (60u32 << 20).to_be_bytes().to_vec();
    wire.extend(std::iter::repeat_n(7u8, 1024));
    let mut r = FrameReader::new(Dribble {
        data: &wire,
        chunk: 100,
    });
    let e = r.recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    assert!(r.decoder().buffer_capacity() <= 2 * INITIAL_BUFFER);
}

#[test]
fn an_oversized_frame_is_skipped_and_the_next_one_decodes() {
    let mut wire = Vec::new();
    let mut w = FrameWriter::new(&mut wire);
    w.send(&[1; 100]).unwrap();
    w.send(b"ok").unwrap();
    let mut r = FrameReader::with_max_frame(&wire[..], 10).unwrap();
    assert_eq!(r.recv().unwrap_err().kind(), ErrorKind::FrameTooLarge);
    assert_eq!(r.recv().unwrap(), Some(&b"ok"[..]));
    assert_eq!(r.recv().unwrap(), None);
}

#[test]
fn a_frame_cut_at_every_offset_is_unexpected_eof() {
    let mut wire = Vec::new();
    FrameWriter::new(&mut wire).send(b"hello, world").unwrap();
    for cut in 1..wire.len() {
        let mut r = FrameReader::new(&wire[..cut]);
        let e = r.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "cut at {cut}");
    }
}

#[test]
fn a_codec_that_panics_leaves_nothing_to_send() {
    let mut out = Outgoing::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = out.encode(true, 100, |b| {
            b.extend_from_slice(b"half");
            panic!("a Serialize impl panicked");
        });
    }));
    assert!(r.is_err());
    assert!(!out.is_pending());
    let mut wire = Vec::new();
    out.write_to(&mut wire).unwrap();
    assert!(wire.is_empty());
}

#[test]
fn the_sender_refuses_frames_over_its_maximum() {
    let mut w = FrameWriter::with_max_frame(Vec::new(), 4).unwrap();
    assert_eq!(
        w.send(b"12345").unwrap_err().kind(),
        ErrorKind::FrameTooLarge
    );
    w.send(b"1234").unwrap();
    assert_eq!(w.get_ref().len(), 8);
    assert!(FrameWriter::with_max_frame(Vec::new(), usize::MAX).is_err());
}

/// `n` frames of 100-byte payloads, each filled with its number.
fn hundreds(n: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut w = FrameWriter::new(&mut wire);
    for i in 0..n {
        w.send(&[i as u8; 100]).unwrap();
    }
    wire
}

/// Feeds `wire` to `d` as a reader would, each read taking what
/// `chunk(spare)` says of the room offered; returns the payloads taken.
fn feed(d: &mut FrameDecoder, mut wire: &[u8], chunk: impl Fn(usize) -> usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while !wire.is_empty() {
        let spare = d.spare();
        let n = chunk(spare.len()).min(wire.len());
        spare[..n].copy_from_slice(&wire[..n]);
        wire = &wire[n..];
        d.filled(n);
        while let Some(p) = d.next_payload().unwrap() {
            got.push(p.to_vec());
        }
    }
    got
}

/// A reader that falls behind (every read fills the room offered, whole
/// frames and more) reads ahead in a buffer grown to a pipe's capacity;
/// one that keeps up (reads never fill it) stays at the first size.
#[test]
fn reads_that_fill_the_buffer_with_frames_grow_it_to_the_read_ahead() {
    let wire = hundreds(3000);
    let mut behind = FrameDecoder::new(1 << 20).unwrap();
    let got = feed(&mut behind, &wire, |room| room);
    assert_eq!(got.len(), 3000);
    assert!(got.iter().enumerate().all(|(i, p)| p == &[i as u8; 100]));
    assert_eq!(behind.buffer_capacity(), READ_AHEAD);

    let mut keeping_up = FrameDecoder::new(1 << 20).unwrap();
    assert_eq!(feed(&mut keeping_up, &wire, |room| room - 1), got);
    assert_eq!(keeping_up.buffer_capacity(), INITIAL_BUFFER);
}
