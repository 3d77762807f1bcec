//! `procwire bench`: the table and the JSON contract.

use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `procwire ARGS` under a deadline.
fn procwire(args: &[&str]) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_procwire"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("procwire {args:?} ran past 120 s"))
}

fn bench(args: &[&str]) -> std::process::Output {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    procwire(&all)
}

/// Runs `procwire bench ARGS`, which must succeed: what it printed.
fn table(args: &[&str]) -> String {
    let out = bench(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `procwire bench ARGS --json`, which must succeed: its rows.
fn json_rows(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let rows: serde_json::Value = serde_json::from_str(&table(&all)).unwrap();
    rows.as_array().expect("an array").clone()
}

/// The row of `transport`, which must be there.
fn row<'a>(rows: &'a [serde_json::Value], transport: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["transport"] == transport)
        .unwrap_or_else(|| panic!("no {transport} row in {rows:?}"))
}

#[test]
fn json_is_one_array_with_every_field_and_a_baseline_per_row() {
    let out = bench(&["--quick", "--json", "--sizes", "64,4096"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    let rows = rows.as_array().expect("an array");
    // Blocking transports on one CPU (4 × 2 sizes); shm adaptive on one and
    // two CPUs (2 × 2) plus a raw ring at the largest size; the fixed
    // strategies at the smallest size: spin on two CPUs, yield on one,
    // futex on both.
    assert_eq!(rows.len(), 8 + 5 + 4, "{rows:?}");
    for r in rows {
        let pin = r["pin"].as_str().unwrap();
        assert!(pin == "same" || pin == "split", "{r}");
        assert!(r["transport"].is_string());
        assert!(r["size"].as_u64().is_some_and(|s| s == 64 || s == 4096));
        let median = r["median_ns"].as_u64().unwrap();
        let p99 = r["p99_ns"].as_u64().unwrap();
        let base = r["baseline_median_ns"].as_u64().unwrap();
        assert!(median > 0 && p99 >= median && base > 0, "{r}");
        assert!(r["baseline"].as_str().unwrap().starts_with("raw "));
        let ratio = r["ratio"].as_f64().unwrap();
        assert!((ratio - median as f64 / base as f64).abs() < 1e-6, "{r}");
    }
    let transports: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    for t in [
        "pipe",
        "stream",
        "seqpacket",
        "dgram",
        "shm",
        "shm-spin",
        "shm-yield",
        "shm-futex",
    ] {
        assert!(transports.contains(&t), "{t} missing");
    }
    // Each fixed strategy is compared with a raw ring waiting the same way.
    for r in rows.iter().filter(|r| r["transport"] == "shm-spin") {
        assert_eq!(r["baseline"], "raw ring spin");
        assert_eq!(r["pin"], "split");
        assert_eq!(r["size"], 64);
    }
}

#[test]
fn the_adaptive_waiter_is_compared_with_the_best_fixed_strategy() {
    let text = table(&[
        "--quick",
        "--transports",
        "shm,shm-yield,shm-futex",
        "--sizes",
        "64",
        "--pin",
        "same",
    ]);
    let line = text
        .lines()
        .find(|l| l.starts_with("adaptive shm, 64 B, cpus same"))
        .unwrap_or_else(|| panic!("no summary line in\n{text}"));
    assert!(
        line.contains("(shm-yield)") || line.contains("(shm-futex)"),
        "{line}"
    );
}

#[test]
fn the_table_has_a_row_per_case_and_large_datagrams_are_left_out() {
    let text = table(&[
        "--quick",
        "--transports",
        "seqpacket,stream",
        "--sizes",
        "64,1048576",
    ]);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("seqpacket ") || l.starts_with("stream "))
        .collect();
    // seqpacket cannot carry 1 MiB in one datagram: 3 rows, not 4.
    assert_eq!(rows.len(), 3, "{text}");
    assert!(text.contains("1 MiB"), "{text}");
}

#[test]
fn remote_adds_tcp_and_zeromq_rows_against_their_raw_baselines() {
    let out = bench(&[
        "--quick",
        "--json",
        "--remote",
        "--transports",
        "tcp,zmq",
        "--sizes",
        "64",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (r, base) in rows.iter().zip(["raw tcp", "raw zeromq"]) {
        assert_eq!(r["baseline"], base, "{r}");
        assert!(r["median_ns"].as_u64().unwrap() > 0);
        assert!(r["baseline_median_ns"].as_u64().unwrap() > 0);
    }
}

/// Issue 11, item 15: a pin that cannot be had is an error, never a row
/// labelled with a placement it did not get.
#[test]
fn a_failed_pin_is_an_error_not_a_mislabelled_row() {
    let child = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_procwire"), "bench"])
        .args([
            "--quick",
            "--json",
            "--pin",
            "split",
            "--transports",
            "pipe",
            "--sizes",
            "64",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskset (util-linux) runs the bench on CPU 0 only");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot pin to CPU 1"), "{err}");
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("split"));
}

/// `--async` adds an `async-<transport>` row per transport and size, with
/// the same fields, against raw tokio I/O on the same kind of descriptor
/// (a stream socket for shared memory), beside the blocking rows.
#[test]
fn async_rows_stand_beside_the_blocking_ones_against_raw_tokio() {
    let rows = json_rows(&[
        "--quick",
        "--async",
        "--transports",
        "pipe,dgram,shm",
        "--sizes",
        "64",
    ]);
    let find = |t: &str| row(&rows, t);
    for (t, base) in [
        ("async-pipe", "raw tokio pipe"),
        ("async-dgram", "raw tokio dgram"),
        ("async-shm", "raw tokio stream"),
    ] {
        let r = find(t);
        assert_eq!(r["baseline"], base, "{r}");
        assert_eq!(r["pin"], "same", "{r}");
        let (m, b) = (
            r["median_ns"].as_u64().unwrap(),
            r["baseline_median_ns"].as_u64().unwrap(),
        );
        assert!(m > 0 && b > 0, "{r}");
        let ratio = r["ratio"].as_f64().unwrap();
        assert!((ratio - m as f64 / b as f64).abs() < 1e-6, "{r}");
    }
    // The blocking rows are there too, from the same run.
    for t in ["pipe", "dgram", "shm"] {
        find(t);
    }
}

/// With `--remote`, ZeroMQ's async row: procwire's awaited socket against
/// the zeromq crate's socket driven directly, beside the bridged blocking
/// row, from one run.
#[test]
fn the_async_zeromq_row_stands_against_the_zeromq_crate() {
    let rows = json_rows(&[
        "--quick",
        "--async",
        "--remote",
        "--transports",
        "zmq",
        "--sizes",
        "64",
    ]);
    for t in ["zmq", "async-zmq"] {
        let r = row(&rows, t);
        assert_eq!(r["baseline"], "raw zeromq", "{r}");
        assert!(r["median_ns"].as_u64().unwrap() > 0, "{r}");
    }
}

/// With `--remote`, the NATS rows: procwire's RPC over NATS against raw
/// async-nats request/reply through the same server, which the run starts
/// (from the project's venv) and stops.
#[test]
fn the_nats_rows_stand_against_raw_async_nats() {
    let rows = json_rows(&[
        "--quick",
        "--remote",
        "--transports",
        "nats",
        "--sizes",
        "64",
    ]);
    let r = row(&rows, "nats");
    assert_eq!(r["baseline"], "raw async-nats", "{r}");
    assert!(r["median_ns"].as_u64().unwrap() > 0, "{r}");
    assert!(r["baseline_median_ns"].as_u64().unwrap() > 0, "{r}");
}

/// The numbers in a line after `label`: each `N µs` and the `(Rx)` ratio.
fn figures_after<'a>(text: &'a str, label: &str) -> (&'a str, Vec<f64>) {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in\n{text}"));
    let numbers = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| w.contains('.'))
        .map(|w| w.parse().unwrap())
        .collect();
    (line, numbers)
}

#[test]
fn the_pipe_pages_and_floor_lines_time_their_baselines_under_the_table() {
    let text = table(&[
        "--quick",
        "--transports",
        "pipe,shm-spin",
        "--sizes",
        "64,4096",
    ]);
    // A page, and a page and the 6 bytes of a framed 4 KiB ByteBuf.
    let (line, n) = figures_after(&text, "pipe pages:");
    assert!(line.contains("4096 B") && line.contains("4102 B"), "{line}");
    assert_eq!(n.len(), 3, "{line}");
    assert!(n.iter().all(|&x| x > 0.0), "{line}");
    // The one-slot ping-pong, the raw ring between the same threads and
    // their ratio, then the ring between processes: the shm-spin row's
    // baseline, as the table printed it; then the ring of one record and
    // its ratio to the slot.
    let (line, n) = figures_after(&text, "floor:");
    assert!(line.contains("between the same threads"), "{line}");
    assert!(line.contains("the raw ring of one record"), "{line}");
    assert_eq!(n.len(), 6, "{line}");
    assert!(n.iter().all(|&x| x > 0.0), "{line}");
    let spin = text
        .lines()
        .find(|l| l.starts_with("shm-spin "))
        .unwrap_or_else(|| panic!("no shm-spin row in\n{text}"));
    let baseline = spin.split("raw ring spin").nth(1).unwrap();
    let its_median: f64 = baseline.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(its_median, n[3], "{spin}\n{line}");
    // The minimal typed channel against raw at each of the pipe rows'
    // sizes, received as the rows receive (owned); none for shared memory.
    let (line, n) = figures_after(&text, "typed floor:");
    assert!(line.contains("received owned"), "{line}");
    assert!(
        line.contains("pipe 64 B ") && line.contains("pipe 4 KiB "),
        "{line}"
    );
    assert!(!line.contains("shm"), "{line}");
    assert_eq!(n.len(), 2, "{line}");
    assert!(n.iter().all(|&x| x > 0.0), "{line}");
}

/// The `typed floor:` line receives as the rows do, blocking and awaited:
/// owned by default, borrowed under `--borrow`; and there is none under
/// `--into` (the minimal channel has no receive into a kept buffer), nor
/// where no pipe or stream row is up to a page.
#[test]
fn the_typed_floor_receives_as_the_rows_do() {
    let quick = |more: &[&str]| {
        let mut args = vec!["--quick", "--transports", "stream", "--pin", "same"];
        args.extend_from_slice(more);
        table(&args)
    };
    for (more, received, rows) in [
        (
            &["--sizes", "64", "--async"][..],
            "received owned",
            &["stream 64 B ", "async-stream 64 B "][..],
        ),
        (
            &["--sizes", "64", "--async", "--borrow"],
            "received borrowed",
            &["stream 64 B ", "async-stream 64 B "],
        ),
    ] {
        let text = quick(more);
        let (line, n) = figures_after(&text, "typed floor:");
        assert!(line.contains(received), "{more:?}: {line}");
        let turn = line.split("rounds in turn: ").nth(1).unwrap();
        let named: Vec<&str> = turn.split(", ").collect();
        assert_eq!(named.len(), rows.len(), "{more:?}: {line}");
        for (got, row) in named.iter().zip(rows) {
            assert!(got.starts_with(row), "{more:?}: {line}");
        }
        assert_eq!(n.len(), rows.len(), "{more:?}: {line}");
        assert!(n.iter().all(|&x| x > 0.0), "{more:?}: {line}");
    }
    for more in [
        &["--sizes", "64", "--into"][..],
        &["--sizes", "64", "--async", "--into"],
        &["--sizes", "65536"],
    ] {
        let text = quick(more);
        assert!(text.contains("\nstream "), "{more:?}: no row in\n{text}");
        assert!(!text.contains("typed floor:"), "{more:?}:\n{text}");
    }
}

/// Each `procwire __roundtrips` of `runs` (its words split at spaces)
/// succeeds, and each of `refused` fails with its reason on stderr.
fn roundtrips_run_or_refuse(runs: &[&str], refused: &[(&str, &str)]) {
    let roundtrips = |args: &str| {
        let mut all = vec!["__roundtrips"];
        all.extend(args.split(' '));
        procwire(&all)
    };
    for args in runs {
        let out = roundtrips(args);
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (args, why) in refused {
        let out = roundtrips(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{args}: {err}");
    }
}

/// The minimal channel that `scripts/instructions` counts as the floor
/// (`__roundtrips lean`), and the same awaited on tokio (`asynclean`, the
/// bench's `typed floor:` for the async rows), carry messages whole on a
/// pipe and a stream socket, owned and borrowed, small and large (a frame
/// longer than its first buffer, frames queued one way), forked or in a
/// thread; they refuse what they do not do.
#[test]
fn the_minimal_channel_round_trips_on_byte_streams_and_refuses_the_rest() {
    roundtrips_run_or_refuse(
        &[
            "lean pipe 64 2000",
            "lean pipe 64 2000 borrow thread",
            "lean stream 4096 500",
            "lean stream 65536 100 borrow",
            "lean pipe 1048576 20",
            "lean pipe 4096 5000 oneway",
            "asynclean pipe 64 2000",
            "asynclean stream 4096 500 thread",
            "asynclean stream 65536 100",
            "asynclean pipe 1048576 20",
            "asynclean pipe 4096 5000 oneway",
            "asynclean stream 4096 500 borrow",
        ],
        &[
            ("lean pipe 64 10 into", "receives owned or borrowed"),
            ("asynclean pipe 64 10 into", "receives owned or borrowed"),
            ("lean seqpacket 64 10", "on a pipe or a stream socket"),
            ("asynclean seqpacket 64 10", "on a pipe or a stream socket"),
        ],
    );
}

/// procwire's awaited ends as the bench's `async-*` rows drive them
/// (`__roundtrips async`) carry every message whole, each of the three
/// ways the rows receive (owned, `borrow`: `recv_with`, `into`:
/// `recv_into` into one kept `ByteBuf`), on every transport the rows run
/// on, a large frame included: each message's size is checked.
#[test]
fn awaited_rows_carry_messages_whole_each_way_of_receiving() {
    let mut runs = Vec::new();
    for t in ["pipe", "stream", "seqpacket", "dgram", "shm"] {
        for how in ["", " borrow", " into"] {
            runs.push(format!("async {t} 4096 300{how}"));
        }
    }
    runs.push("async pipe 65536 50 borrow thread".into());
    runs.push("async stream 65536 50 into".into());
    let runs: Vec<&str> = runs.iter().map(String::as_str).collect();
    roundtrips_run_or_refuse(&runs, &[]);
}

/// `__roundtrips ... queued`, what `scripts/instructions` counts as
/// `shm-queued`: one thread sends messages down a shared-memory ring and
/// takes them out again, procwire's ring (each way of receiving) or the raw
/// one, more messages than one batch holds; and nothing but shared memory,
/// with no peer.
#[test]
fn queued_messages_go_down_one_ring_and_come_out_whole() {
    roundtrips_run_or_refuse(
        &[
            "wire shm-spin 64 1234 queued",
            "wire shm-spin 64 1234 queued borrow",
            "wire shm-spin 4096 700 queued into",
            "raw shm-spin 64 1234 queued",
            "wire shm-futex 64 600 queued",
            "raw shm-yield 4096 600 queued",
        ],
        &[
            ("wire pipe 64 10 queued", "for shared memory"),
            ("lean stream 64 10 queued", "for shared memory"),
            ("wire shm-spin 64 10 queued thread", "__roundtrips"),
            ("raw shm-spin 64 10 queued oneway", "__roundtrips"),
        ],
    );
}
