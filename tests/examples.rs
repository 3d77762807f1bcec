//! The examples the README and the crate docs point to run, each under a
//! deadline, and print what the lesson says they print: a program a new
//! user starts from must not have rotted while the library moved on. (The
//! Ruby ones: `tests/ruby_peer.rs`; `shm_large`, `soak` and `fuzz_corpus`
//! are tools of scripts, not lessons.)

mod util;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use util::wait_std;

/// The lesson's examples, built now (cargo builds no examples for a test
/// run; a fresh build is a no-op).
fn built() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "--locked"]);
            for name in EXAMPLES {
                build.args(["--example", name]);
            }
            assert!(
                build.status().unwrap().success(),
                "building the examples failed"
            );
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(|dir| dir.join("examples"))
                .unwrap()
        })
        .clone()
}

const EXAMPLES: [&str; 5] = [
    "first_pipe",
    "sharing_pipe",
    "heavy_lifting",
    "async_heavy_lifting",
    "async_streams",
];

/// Runs an example with `args` (60 s at most) and returns what it printed;
/// it must exit 0.
fn run(name: &str, args: &[&str]) -> String {
    let mut child = Command::new(built().join(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // (Small outputs: they fit the pipes while the example runs.)
    let status = wait_std(&mut child, 60);
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "{name} {args:?}: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Lines of `out` equal to `line`.
fn count(out: &str, line: &str) -> usize {
    out.lines().filter(|l| *l == line).count()
}

#[test]
fn the_first_pipe_reads_its_message_and_waits_for_the_writer_to_close() {
    let out = run("first_pipe", &[]);
    assert_eq!(count(&out, "Into the pipe I go..."), 1, "{out}");
    assert!(out.contains("no EOF while the writer is open"), "{out}");
    assert!(out.contains("after the writer closed"), "{out}");
}

#[test]
fn a_pipe_shared_with_a_child_carries_its_ten_lines_to_the_end() {
    let out = run("sharing_pipe", &[]);
    assert_eq!(count(&out, "Another one bites the dust"), 10, "{out}");
}

#[test]
fn heavy_lifting_is_answered_on_every_socket_kind_blocking_and_awaited() {
    let runs = [
        ("heavy_lifting", &["dgram"][..]),
        ("heavy_lifting", &["seqpacket"]),
        ("heavy_lifting", &["stream"]),
        ("async_heavy_lifting", &[]),
        ("async_streams", &[]),
    ];
    for (name, args) in runs {
        let out = run(name, args);
        for job in ["Heavy lifting", "Feather lifting"] {
            assert_eq!(
                count(&out, &format!("{job} accomplished!")),
                2,
                "{name} {args:?}:\n{out}"
            );
        }
    }
}
