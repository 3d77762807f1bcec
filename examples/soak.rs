//! Create, use and drop channels of every local transport many times, for
//! `scripts/soak` to run under `valgrind --track-fds=yes`: every descriptor
//! must be closed at exit.
//!
//! `cargo run --release --example soak -- [CYCLES]`

use procwire::{ByteBuf, Kind, Shm, SocketPair};

fn main() -> procwire::Result<()> {
    let cycles: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let shm = Shm::new().capacity(64 << 10);
    for i in 0..cycles {
        let msg = ByteBuf::from(vec![(i % 251) as u8; (i as usize * 97) % 20_000]);
        let (tx, rx) = procwire::channel::<ByteBuf>()?;
        tx.send_ref(&msg)?;
        assert_eq!(rx.recv()?, msg);
        for kind in [Kind::Stream, Kind::SeqPacket, Kind::Datagram] {
            let (a, b) = SocketPair::new(kind).duplex::<ByteBuf, ByteBuf>()?;
            a.send_ref(&msg)?;
            b.send(b.recv()?).map_err(|e| e.into_error())?;
            assert_eq!(a.recv()?, msg);
        }
        let (a, b) = shm.duplex::<ByteBuf, ByteBuf>()?;
        a.send_ref(&msg)?;
        b.send(b.recv()?).map_err(|e| e.into_error())?;
        assert_eq!(a.recv()?, msg);
        // An end sent inside a message, then dropped on both sides.
        let (c, d) = SocketPair::new(Kind::Stream).duplex::<procwire::Duplex<u8, u8>, ()>()?;
        let (x, y) = SocketPair::new(Kind::SeqPacket).duplex::<u8, u8>()?;
        c.send(x).map_err(|e| e.into_error())?;
        let x = d.recv()?;
        x.send(1).map_err(|e| e.into_error())?;
        assert_eq!(y.recv()?, 1);
    }
    println!("{cycles} cycles");
    Ok(())
}
