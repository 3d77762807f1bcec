//! `procwire cat` and `procwire call` against procwire ends in this test:
//! messages printed as JSON lines (a byte string as numbers), JSON lines
//! sent as messages in msgpack and json, an RPC call's reply printed and a
//! handler's error as exit status 1.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use procwire::{ByteBuf, CodecKind, Net, rpc};
use serde::{Deserialize, Serialize};

fn procwire_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procwire"))
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    name: String,
    weight: u32,
    tags: Vec<String>,
    blob: ByteBuf,
}

#[test]
fn cat_prints_what_arrives_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:{}", dir.path().join("s").display());
    let net = Net::new().codec(CodecKind::MsgPack);
    let listener = net.listen(&addr).unwrap();
    let cat = procwire_cmd()
        .args(["cat", &addr])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ch: procwire::Duplex<Job, ()> = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    ch.send(Job {
        name: "Heavy lifting".into(),
        weight: 9,
        tags: vec!["lesson".into()],
        blob: ByteBuf::from(vec![1, 2, 255]),
    })
    .unwrap();
    drop(ch);
    let out = cat.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"blob\":[1,2,255],\"name\":\"Heavy lifting\",\"tags\":[\"lesson\"],\"weight\":9}\n"
    );
}

#[test]
fn cat_send_turns_json_lines_into_messages_in_either_codec() {
    for (codec, name) in [(CodecKind::MsgPack, "msgpack"), (CodecKind::Json, "json")] {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix:{}", dir.path().join("s").display());
        let listener = Net::new().codec(codec).listen(&addr).unwrap();
        let mut cat = procwire_cmd()
            .args(["cat", "--send", "--codec", name, &addr])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let ch: procwire::Duplex<(), Job> =
            listener.accept_timeout(Duration::from_secs(10)).unwrap();
        cat.stdin
            .take()
            .unwrap()
            .write_all(b"{\"name\":\"Feather lifting\",\"weight\":1,\"tags\":[],\"blob\":[7]}\n\n{\"name\":\"x\",\"weight\":2,\"tags\":[\"a\",\"b\"],\"blob\":[]}\n")
            .unwrap();
        assert_eq!(
            ch.recv().unwrap(),
            Job {
                name: "Feather lifting".into(),
                weight: 1,
                tags: vec![],
                blob: ByteBuf::from(vec![7]),
            }
        );
        assert_eq!(ch.recv().unwrap().tags, ["a", "b"]);
        assert!(ch.recv().unwrap_err().is_disconnected());
        assert!(cat.wait().unwrap().success());
    }
}

#[test]
fn call_prints_the_reply_and_fails_with_the_handlers_error() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:{}", dir.path().join("s").display());
    let listener = Net::new().codec(CodecKind::MsgPack).listen(&addr).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let end: rpc::ServerEnd<Vec<i64>, i64> = listener.accept().unwrap();
            rpc::serve(end, |xs: Vec<i64>| {
                if xs.is_empty() {
                    Err("nothing to add".to_string())
                } else {
                    Ok(xs.iter().sum())
                }
            })
            .unwrap();
        }
    });
    let out = procwire_cmd()
        .args(["call", &addr, "[1, 2, 39]"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "42\n");
    let out = procwire_cmd().args(["call", &addr, "[]"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to add"),
        "{out:?}"
    );
    // A request that is not JSON is a usage error, before any connection.
    let out = procwire_cmd()
        .args(["call", &addr, "[1,"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not JSON"),
        "{out:?}"
    );
    let out = procwire_cmd()
        .args(["call", &addr, "[5]"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "5\n");
    server.join().unwrap();
}

#[test]
fn cat_reports_a_message_that_does_not_decode_and_prints_the_ones_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:{}", dir.path().join("s").display());
    // A raw channel: the payloads go out as they are, msgpack or not.
    let listener = Net::new().codec(CodecKind::Raw).listen(&addr).unwrap();
    let cat = procwire_cmd()
        .args(["cat", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ch: procwire::Duplex<ByteBuf, ByteBuf> =
        listener.accept_timeout(Duration::from_secs(10)).unwrap();
    // 0xc1 is the one byte msgpack never uses; then [1, 2, 3] and "abc".
    for payload in [&[0xc1][..], &[0x93, 1, 2, 3], &[0xa3, b'a', b'b', b'c']] {
        ch.send(ByteBuf::from(payload.to_vec())).unwrap();
    }
    drop(ch);
    let out = cat.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "[1,2,3]\n\"abc\"\n");
    assert!(
        stderr.contains("message 1 (1 B) does not decode") && stderr.contains("its bytes: c1"),
        "{stderr}"
    );
}

/// `procwire cat --send` to a ZeroMQ address: every line arrives, also the
/// last ones, sent just before the process exits (the connection's drop
/// waits for its thread to get them out).
#[test]
fn cat_send_to_a_zeromq_listener_loses_nothing_at_exit() {
    let net = Net::new().codec(CodecKind::MsgPack);
    let listener = net.listen("zmq+tcp://127.0.0.1:0").unwrap();
    let addr = listener.endpoint().to_string();
    let cat = procwire_cmd()
        .args(["cat", "--send", &addr])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    send_numbers_and_exit(cat);
    let peer = listener
        .accept_timeout::<(), u32>(Duration::from_secs(10))
        .unwrap();
    expect_numbers(&peer);
}

/// How many numbered lines the ZeroMQ `cat` tests send.
const LINES: u32 = 2000;

/// Writes the lines `0` to `LINES - 1` to `cat --send`'s input and waits
/// for it to exit, successfully.
fn send_numbers_and_exit(mut cat: std::process::Child) {
    let lines: String = (0..LINES).map(|i| format!("{i}\n")).collect();
    cat.stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(cat.wait().unwrap().success());
}

/// Receives the numbers `0` to `LINES - 1`, each within 10 s, in order.
fn expect_numbers<Out: serde::Serialize + serde::de::DeserializeOwned>(
    ch: &procwire::Duplex<Out, u32>,
) {
    for i in 0..LINES {
        let got = ch.recv_timeout(Duration::from_secs(10));
        assert_eq!(got.unwrap_or_else(|e| panic!("message {i}: {e}")), i);
    }
}

/// `procwire cat --listen --send` at a ZeroMQ address: the peer it accepts
/// gets every line, also the last ones, written by the ROUTER just before
/// the process exits (the listener is gone by then: the peer's drop waits
/// for the socket's writes).
#[test]
fn cat_listening_at_a_zeromq_address_sends_everything_before_it_exits() {
    use std::io::BufRead;
    let mut cat = procwire_cmd()
        .args(["cat", "--listen", "--send", "zmq+tcp://127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufReader::new(cat.stderr.as_mut().unwrap())
        .read_line(&mut said)
        .unwrap();
    let addr = said
        .trim()
        .strip_prefix("procwire cat: listening at ")
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    let net = Net::new().codec(CodecKind::MsgPack);
    let ch: procwire::Duplex<u32, u32> = net.connect(&addr).unwrap();
    // A ROUTER hears of a peer when it speaks.
    ch.send(0).unwrap();
    send_numbers_and_exit(cat);
    expect_numbers(&ch);
}
