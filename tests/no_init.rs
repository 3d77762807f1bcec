//! Without `procwire::init()`, tasks that need it fail with a clear error.

use procwire::{Duplex, ErrorKind, How, task};

fn nothing(_: (), _: Duplex<(), ()>) {}

#[test]
fn server_and_reexec_say_to_call_init() {
    for how in [How::Server, How::Reexec, How::Auto] {
        let e = task(nothing, ()).via(how).spawn().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{how:?}");
        assert!(e.to_string().contains("procwire::init()"), "{how:?}: {e}");
    }
}
