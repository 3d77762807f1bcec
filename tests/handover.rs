//! The PROCWIRE_FD contract from the Rust child's side.

mod util;

use std::process::Stdio;

use procwire::{CodecKind, ErrorKind, Options, from_env};
use util::{checked, child_command, wait_deadline, wait_std};

#[test]
fn a_spawned_child_finds_its_channel_once() {
    checked(30, || {
        for codec in CodecKind::ALL.iter().copied() {
            let mut cmd = procwire::Command::from(child_command("child", "adopt"));
            let ch = cmd
                .channel_with::<String, String>(&Options::new().codec(codec))
                .unwrap();
            let mut child = cmd.spawn().unwrap();
            ch.send(codec.name().into()).unwrap();
            assert_eq!(ch.recv().unwrap(), format!("{} ok", codec.name()));
            drop(ch);
            assert!(wait_deadline(&mut child, 20).success(), "{codec}");
        }
    });
}

#[test]
fn a_child_refuses_a_bad_environment_without_closing_what_is_not_its_own() {
    checked(30, || {
        let ours = procwire::WIRE_VERSION.to_string();
        for (role, version, fd) in [
            ("refuse_version", "1", "0"),
            ("refuse_fd", ours.as_str(), "0"),
            ("refuse_fd", ours.as_str(), "999"),
        ] {
            let mut child = child_command("child", role)
                .env("PROCWIRE_VERSION", version)
                .env("PROCWIRE_CODEC", "msgpack")
                .env("PROCWIRE_FD", fd)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let status = wait_std(&mut child, 20);
            assert!(status.success(), "{role} {fd}: {status:?}");
        }
    });
}

fn adopt() {
    let ch = from_env::<String, String>().unwrap();
    assert!(
        procwire::is_cloexec(&ch).unwrap(),
        "adopted end is close-on-exec"
    );
    let again = from_env::<String, String>().unwrap_err();
    assert!(again.to_string().contains("already taken"), "{again}");
    let codec = ch.recv().unwrap();
    assert_eq!(ch.receiver().codec().name(), codec);
    ch.send(format!("{codec} ok")).unwrap();
    assert!(ch.recv().unwrap_err().is_disconnected());
}

fn refuse(what: &str) {
    let e = from_env::<String, String>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains(what), "{e}");
    // stdin (a pipe, fd 0) was inspected and refused, not closed.
    assert!(
        std::fs::read_link("/proc/self/fd/0").is_ok(),
        "stdin is still open"
    );
}

/// Entry point for the child processes of this file's tests.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child() {
    match util::role().as_str() {
        "adopt" => adopt(),
        "refuse_version" => refuse(&format!(
            "speaks wire format version {} only",
            procwire::WIRE_VERSION
        )),
        "refuse_fd" => refuse("is not usable"),
        other => panic!("unknown role {other}"),
    }
}
