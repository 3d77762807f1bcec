//! `procwire doctor`: every check there, each with what was found; exit 0
//! here, and 1 (with the check named) when something procwire cannot work
//! without is missing: a descriptor limit of 100.

use std::process::Command;

fn doctor(prefix: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{prefix} exec \"$0\" doctor --json"))
        .arg(env!("CARGO_BIN_EXE_procwire"))
        .output()
        .unwrap()
}

/// The `RLIMIT_NOFILE` line of `doctor --json`'s output.
fn fd_limit_check(out: &std::process::Output) -> serde_json::Value {
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "RLIMIT_NOFILE")
        .unwrap()
        .clone()
}

#[test]
fn doctor_checks_what_procwire_relies_on_and_fails_without_what_it_needs() {
    let out = doctor("");
    assert!(out.status.success(), "{out:?}");
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = checks.as_array().unwrap();
    for name in [
        "kernel",
        "/proc",
        "RLIMIT_NOFILE",
        "pidfd_open",
        "SO_PEERPIDFD",
        "SO_PASSRIGHTS",
        "memfd with seals",
        "close_range",
        "futex",
        "preadv2 RWF_NOWAIT on pipes",
        "pipe-max-size",
        "socket buffers",
        "network namespaces",
        "fork server",
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check"));
        assert!(!c["found"].as_str().unwrap().is_empty(), "{c}");
        assert!(!c["without"].as_str().unwrap().is_empty(), "{c}");
    }
    // This machine runs the whole test suite: pidfds and the fork server
    // are there.
    for name in ["pidfd_open", "fork server", "/proc"] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["ok"], true, "{c}");
    }

    let out = doctor("ulimit -n 100;");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let limit = fd_limit_check(&out);
    assert_eq!(limit["ok"], false, "{limit}");
    assert_eq!(limit["required"], true, "{limit}");
    assert!(limit["found"].as_str().unwrap().contains("100"), "{limit}");

    // A soft limit below the hard one: what it allows, and that it can go up.
    let out = doctor("ulimit -S -n 1024; ulimit -H -n 4096;");
    let limit = fd_limit_check(&out);
    assert_eq!(limit["ok"], true, "{limit}");
    assert_eq!(
        limit["found"],
        "1024 descriptors: some 496 pool workers, at two each; hard limit 4096 (`ulimit -n` \
         raises it)",
        "{limit}"
    );
}
