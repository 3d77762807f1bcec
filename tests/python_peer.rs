//! The Python reference peer (peers/python/procwire.py) against the Rust
//! side: a real `python3` child with its channel inherited as PROCWIRE_FD.
//!
//! Needs the project's venv (`scripts/test` makes it); without it these
//! tests fail, they do not skip.

mod util;

use procwire::{ByteBuf, CodecKind, Options};
use serde::{Deserialize, Serialize};
use util::{checked, python, wait_deadline};

fn peer(mode: &str) -> procwire::Command {
    let mut cmd = procwire::Command::new(python());
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/peer.py"))
        .arg(mode);
    cmd
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    data: ByteBuf,
    tags: Vec<u32>,
    shape: Shape,
    note: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
enum FromPython {
    Hello { pid: u32, codec: String },
    Done(Job),
}

#[test]
fn msgpack_both_ways_with_the_python_peer() {
    checked(60, || {
        let mut cmd = peer("msgpack");
        let ch = cmd
            .channel_with::<Job, FromPython>(&Options::new().codec(CodecKind::MsgPack))
            .unwrap();
        let mut child = cmd.spawn().unwrap();
        assert_eq!(
            ch.recv().unwrap(),
            FromPython::Hello {
                pid: child.id(),
                codec: "msgpack".into()
            }
        );
        for i in 0..40u64 {
            let len = [0, 1, 100, 70_000, 1 << 20][i as usize % 5];
            let job = Job {
                id: i * 1000,
                name: format!("heavy lifting {i}"),
                data: ByteBuf::from(util::pattern(i as u32, len)),
                tags: (0..(i as u32 % 4)).collect(),
                shape: match i % 3 {
                    0 => Shape::Empty,
                    1 => Shape::Circle(i as f64 / 4.0),
                    _ => Shape::Rect { w: 2, h: i as u32 },
                },
                note: (i % 2 == 0).then(|| "n".to_string()),
            };
            let FromPython::Done(reply) = ch.request(job.clone()).unwrap() else {
                panic!("expected Done");
            };
            let mut data = job.data.into_vec();
            data.reverse();
            let mut tags = job.tags.clone();
            tags.push(tags.len() as u32);
            let shape = match job.shape {
                Shape::Rect { w, h } => Shape::Rect { w: h, h: w },
                s => s,
            };
            assert_eq!(
                reply,
                Job {
                    id: job.id + 1,
                    name: job.name.to_uppercase(),
                    data: ByteBuf::from(data),
                    tags,
                    shape,
                    note: if job.note.is_some() {
                        None
                    } else {
                        Some("was None".into())
                    },
                }
            );
        }
        drop(ch); // the peer's loop ends at end-of-stream
        let status = wait_deadline(&mut child, 20);
        assert!(status.success(), "{status:?}");
    });
}

#[test]
fn raw_both_ways_with_the_python_peer() {
    checked(60, || {
        let mut cmd = peer("raw");
        let ch = cmd
            .channel_with::<ByteBuf, ByteBuf>(&Options::new().codec(CodecKind::Raw))
            .unwrap();
        let mut child = cmd.spawn().unwrap();
        for (i, len) in [0usize, 1, 5, 4096, 100_000, 3 << 20]
            .into_iter()
            .enumerate()
        {
            let data = util::pattern(i as u32, len);
            let mut expect = data.clone();
            expect.reverse();
            expect.push(b'!');
            assert_eq!(ch.request(ByteBuf::from(data)).unwrap().into_vec(), expect);
        }
        drop(ch);
        let status = wait_deadline(&mut child, 20);
        assert!(status.success(), "{status:?}");
    });
}

#[test]
fn the_python_peer_refuses_another_version() {
    checked(30, || {
        let out = peer("version")
            .env("PROCWIRE_VERSION", "1")
            .env("PROCWIRE_CODEC", "msgpack")
            .env("PROCWIRE_FD", "0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("speaks version {} only", procwire::WIRE_VERSION)),
            "{text}"
        );
    });
}

#[test]
fn the_python_peer_says_hello() {
    checked(60, || {
        for (sends, receives, ok) in [
            // The names of docs/wire-format.md §7, as a Python program
            // writes them.
            ("string", "u32", true),
            ("string", "u64", false),
        ] {
            let mut cmd = peer("hello");
            cmd.args([sends, receives]);
            let ch = cmd
                .channel_with::<u32, String>(&Options::new().codec(CodecKind::MsgPack))
                .unwrap();
            let mut child = cmd.spawn().unwrap();
            match ch.hello() {
                Ok(()) => {
                    assert!(ok, "a mismatched peer was accepted");
                    assert_eq!(ch.request(5).unwrap(), "5");
                    drop(ch);
                    assert!(wait_deadline(&mut child, 20).success());
                }
                Err(e) => {
                    assert!(!ok, "{e}");
                    assert!(e.to_string().contains("u64"), "{e}");
                    drop(ch);
                    assert_eq!(wait_deadline(&mut child, 20).code(), Some(4));
                }
            }
        }
    });
}

#[test]
fn python_workers_in_a_pool() {
    checked(60, || {
        let pool = procwire::Pool::<u64, u64>::command(|| peer("rpc"))
            .workers(2)
            .options(Options::new().codec(CodecKind::MsgPack))
            .build()
            .unwrap();
        for (n, r) in (0..40u64).zip(pool.map(0..40)) {
            match r {
                Ok(sq) => assert_eq!(sq, n * n),
                Err(e) => {
                    assert_eq!(n, 13);
                    assert_eq!(e.kind(), procwire::ErrorKind::Remote);
                    assert!(e.to_string().contains("ZeroDivisionError"), "{e}");
                }
            }
        }
        pool.shutdown().unwrap();
    });
}

#[test]
fn the_python_peer_calls_a_rust_server() {
    checked(60, || {
        let mut cmd = peer("caller");
        cmd.stdout(std::process::Stdio::piped());
        let end = cmd
            .channel_with::<procwire::rpc::Reply<u64>, procwire::rpc::Call<i64>>(
                &Options::new().codec(CodecKind::MsgPack),
            )
            .unwrap();
        let mut child = cmd.spawn().unwrap();
        procwire::rpc::serve(end, |n: i64| {
            u64::try_from(n)
                .map(|n| n * n)
                .map_err(|_| format!("{n} is negative"))
        })
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(wait_deadline(&mut child, 20).success());
        assert_eq!(
            out.trim(),
            "[9, 16, 169, 'the handler failed: -1 is negative']"
        );
    });
}
