//! Issue 18, the Ruby peer (`peers/ruby/procwire.rb`, written from the
//! wire format alone, on Debian's ruby and ruby-msgpack, which scripts/test
//! installs): the lesson's examples with one side Rust and the other Ruby,
//! run both ways (a Rust parent with a Ruby child, a Ruby parent with a
//! Rust child: `examples/ruby_lesson.rs`), the hello, and the json codec.
//! Ruby missing is a failure, never a skip.

mod util;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use procwire::{CodecKind, ErrorKind, Options};
use util::{checked, wait_deadline};

procwire::init_before_main!();

/// `ruby`, which must be there.
fn ruby() -> Command {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .any(|d| d.join("ruby").is_file());
    assert!(
        found,
        "ruby is missing: run scripts/test (it installs Debian's ruby and ruby-msgpack)"
    );
    Command::new("ruby")
}

/// The Rust side of the examples (`examples/ruby_lesson.rs`), built now
/// (cargo does not build examples for a test run; a fresh one is a no-op).
fn lesson_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "--locked", "--example", "ruby_lesson"])
                .status()
                .unwrap();
            assert!(status.success(), "building examples/ruby_lesson.rs failed");
            let exe = std::env::current_exe().unwrap();
            let bin = exe
                .parent()
                .and_then(|deps| deps.parent())
                .map(|dir| dir.join("examples/ruby_lesson"))
                .unwrap();
            assert!(bin.exists(), "{} is missing after the build", bin.display());
            bin
        })
        .clone()
}

fn script(name: &str) -> String {
    format!("{}/examples/ruby/{name}.rb", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` under a deadline: its status and stdout.
fn run(mut cmd: Command) -> (bool, String) {
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What each scenario's parent prints, whichever side it is.
fn expected(scenario: &str) -> Vec<String> {
    match scenario {
        "first_pipe" => vec!["Into the pipe I go...".to_string()],
        "sharing_pipe" => vec!["Another one bites the dust".to_string(); 10],
        "heavy_lifting" => vec![
            "Heavy lifting accomplished!".to_string(),
            "Heavy lifting accomplished!".to_string(),
            "Feather lifting accomplished!".to_string(),
            "Feather lifting accomplished!".to_string(),
        ],
        _ => vec!["squares [1, 4, 9, 16, 25]".to_string()],
    }
}

/// Each example both ways: a Rust parent with a Ruby child, and a Ruby
/// parent with a Rust child; each parent checks what it got (its exit
/// status) and prints it (checked here too).
#[test]
fn the_lessons_examples_run_with_a_ruby_side_both_ways() {
    checked(120, || {
        for scenario in ["first_pipe", "sharing_pipe", "heavy_lifting", "rpc"] {
            let mut rust_parent = Command::new(lesson_bin());
            rust_parent.args([scenario, "parent"]);
            let mut ruby_parent = ruby();
            ruby_parent
                .arg(script(scenario))
                .arg("parent")
                .arg(lesson_bin());
            for (who, cmd) in [("Rust parent", rust_parent), ("Ruby parent", ruby_parent)] {
                let (ok, out) = run(cmd);
                assert!(ok, "{scenario}, {who}: failed; it printed:\n{out}");
                let lines: Vec<String> = out.lines().map(str::to_string).collect();
                let want = expected(scenario);
                assert_eq!(lines[..want.len()], want[..], "{scenario}, {who}");
                if scenario == "rpc" {
                    assert!(
                        lines[1].contains("no square of a negative number"),
                        "{who}: {out}"
                    );
                }
            }
        }
    });
}

/// A Ruby child on `script` (inline), with a channel in `codec`.
fn ruby_child(
    script_text: &str,
    opts: &Options,
) -> (procwire::Child, procwire::Duplex<u32, String>) {
    let mut cmd = procwire::Command::from({
        let mut c = ruby();
        c.arg("-e").arg(format!(
            "require_relative '{}/peers/ruby/procwire'\n{script_text}",
            env!("CARGO_MANIFEST_DIR")
        ));
        c
    });
    let ch = cmd.channel_with::<u32, String>(opts).unwrap();
    (cmd.spawn().unwrap(), ch)
}

/// The hello (wire format section 7) between Rust and Ruby: matching wire
/// names, and a mismatch refused on both sides with the names in the
/// error; then the conversation goes on in JSON.
#[test]
fn the_hello_and_the_json_codec_agree_with_rust() {
    checked(60, || {
        let json = Options::new().codec(CodecKind::Json);
        let (mut child, ch) = ruby_child(
            "ch = Procwire::Channel.from_env\n\
             ch.hello('string', 'u32')\n\
             ch.each { |n| ch.send_msg(\"#{n} squared is #{n * n}\") }",
            &json,
        );
        ch.hello().unwrap();
        ch.send(12).unwrap();
        assert_eq!(
            ch.recv_timeout(Duration::from_secs(20)).unwrap(),
            "12 squared is 144"
        );
        drop(ch);
        assert!(wait_deadline(&mut child, 20).success());

        let (mut child, ch) = ruby_child(
            "ch = Procwire::Channel.from_env\n\
             begin\n  ch.hello('lesson.Job', 'u32')\nrescue Procwire::Error => e\n  warn e.message\n  exit 3\nend",
            &Options::new().codec(CodecKind::MsgPack),
        );
        let e = ch.hello().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("lesson.Job"), "{e}");
        drop(ch);
        assert_eq!(wait_deadline(&mut child, 20).code(), Some(3));
    });
}

/// A frame over the Ruby peer's maximum is refused before anything is
/// allocated for it, and a stream cut inside a frame is an error, not a
/// clean end.
#[test]
fn the_ruby_peer_refuses_a_4_gib_prefix_and_a_torn_frame() {
    checked(60, || {
        let dir = tempfile::tempdir().unwrap();
        let said = dir.path().join("said");
        let probe = |bytes: &[u8]| {
            let (a, b) = procwire::socket_pair(procwire::Kind::Stream).unwrap();
            let mut cmd = procwire::Command::from({
                let mut c = ruby();
                c.arg("-e").arg(format!(
                    "require_relative '{}/peers/ruby/procwire'\n\
                     ch = Procwire::Channel.new(Socket.for_fd(Integer(ARGV[0])), codec: 'raw')\n\
                     said = begin\n  ch.recv.inspect\nrescue Procwire::Error => e\n  e.class.to_s\nend\n\
                     File.write(ARGV[1], said)",
                    env!("CARGO_MANIFEST_DIR")
                ));
                c
            });
            let fd = cmd.inherit(b);
            cmd.arg(fd.to_string()).arg(&said);
            let mut child = cmd.spawn().unwrap();
            drop(cmd);
            use std::io::Write;
            let mut a = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(a));
            a.write_all(bytes).unwrap();
            drop(a);
            assert!(wait_deadline(&mut child, 20).success());
            std::fs::read_to_string(&said).unwrap()
        };
        assert_eq!(
            probe(&0xFFFF_FFF0u32.to_be_bytes()),
            "Procwire::FrameTooLarge"
        );
        assert_eq!(probe(&[0, 0, 0, 9, b'h', b'i']), "Procwire::UnexpectedEof");
        assert_eq!(probe(&[]), "Procwire::Disconnected");
        assert_eq!(probe(&[0, 0, 0, 2, b'h', b'i']), "\"hi\"");
    });
}
