//! Once buffers are warm, sending and receiving allocate nothing, and a large
//! byte string is received into its own buffer, not copied there from the
//! receive buffer: proved with a counting global allocator.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use procwire::{ByteBuf, CodecKind, Kind, Options, Receiver, Sender, SocketPair};
use serde::{Deserialize, Serialize};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes asked for by this thread's allocations and reallocations.
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; counting a
// thread-local integer does not allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        BYTES.with(|b| b.set(b.get() + layout.size() as u64));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        BYTES.with(|b| b.set(b.get() + new_size as u64));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
}

fn bytes_allocated() -> u64 {
    BYTES.with(|b| b.get())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    values: [u32; 8],
    flag: bool,
}

fn steady_state(tx: &Sender<Tick>, rx: &Receiver<Tick>) -> u64 {
    let tick = |seq| Tick {
        seq,
        values: [seq as u32; 8],
        flag: seq % 2 == 0,
    };
    for seq in 0..100 {
        tx.send(tick(seq)).unwrap();
        assert_eq!(rx.recv().unwrap(), tick(seq));
    }
    let before = allocations();
    for seq in 100..10_100 {
        tx.send(tick(seq)).unwrap();
        let got = rx.recv().unwrap();
        if got.seq != seq {
            panic!("out of order");
        }
    }
    allocations() - before
}

#[test]
fn no_allocation_per_message_once_warm() {
    util::checked(60, || {
        for codec in [CodecKind::Postcard, CodecKind::MsgPack] {
            let opts = Options::new().codec(codec);
            let (tx, rx) = procwire::Pipe::new()
                .options(opts.clone())
                .channel::<Tick>()
                .unwrap();
            assert_eq!(steady_state(&tx, &rx), 0, "pipe, {codec}");
            for kind in Kind::ALL {
                let (tx, rx) = SocketPair::new(kind)
                    .options(opts.clone())
                    .channel::<Tick>()
                    .unwrap();
                assert_eq!(steady_state(&tx, &rx), 0, "{kind:?}, {codec}");
            }
        }
    });
}

#[test]
fn the_counter_sees_allocations() {
    // The control: the allocator above does count.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    drop(v);
    assert_eq!(allocations() - before, 1);
}

/// Receives `n` messages of a `len`-byte string at the end of `make`'s
/// value on a fresh channel, and returns the bytes the receiving thread
/// allocated meanwhile.
fn bytes_to_receive<T>(how: &str, n: usize, make: fn(usize) -> T) -> u64
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = match how {
        "pipe" => procwire::Pipe::new().channel::<T>().unwrap(),
        "stream" => SocketPair::new(Kind::Stream).channel::<T>().unwrap(),
        // Larger than a datagram: out of line, in a memfd.
        "seqpacket" => SocketPair::new(Kind::SeqPacket).channel::<T>().unwrap(),
        // Rings that do not hold a 1 MiB message: out of line, in the
        // writer's spill file.
        "small shm" => procwire::Shm::new()
            .capacity(1 << 20)
            .channel::<T>()
            .unwrap(),
        // Rings that hold a 1 MiB message inline.
        _ => procwire::Shm::new()
            .capacity(4 << 20)
            .channel::<T>()
            .unwrap(),
    };
    // Larger than a pipe or a socket buffer holds: the receive reads the
    // message as it comes.
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(make(i)).unwrap();
        }
    });
    let before = bytes_allocated();
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(rx.recv().unwrap());
    }
    let used = bytes_allocated() - before;
    sender.join().unwrap();
    for (i, g) in got.iter().enumerate() {
        assert!(*g == make(i), "message {i} differs");
    }
    used
}

#[test]
fn a_large_byte_string_is_received_into_its_own_buffer() {
    const LEN: usize = 1 << 20;
    // Without it, the receive buffer grows to hold the message (on a byte
    // stream some 2 MiB of allocations while doubling, out of a ring 1 MiB,
    // out of a memfd 1 MiB each time) and each message is copied out into a
    // buffer of its own: over 4 MiB for three.
    // (A datagram socket's receive buffer, made once, holds any datagram up
    // to 256 KiB.)
    let bound = 3 * LEN as u64 + (320 << 10);
    util::checked(60, move || {
        for how in ["pipe", "stream", "seqpacket", "shm", "small shm"] {
            let used = bytes_to_receive(how, 3, |i| ByteBuf::from(vec![i as u8; LEN]));
            assert!(used <= bound, "{how}: {used} bytes allocated for 3 x 1 MiB");
            let used = bytes_to_receive(how, 3, |i| {
                (
                    i as u32,
                    "a name".to_string(),
                    Some(ByteBuf::from(vec![i as u8; LEN])),
                )
            });
            assert!(
                used <= bound,
                "{how}: {used} bytes allocated for 3 x 1 MiB in a tuple"
            );
            let used = bytes_to_receive(how, 3, |i| "é".repeat(LEN / 2) + &i.to_string());
            assert!(
                used <= bound,
                "{how}: {used} bytes allocated for 3 x 1 MiB of text"
            );
        }
    });
}

/// Receives `msgs` with `recv_into`, all into one value, after a first
/// message that makes it as large as any of them; returns the allocations
/// made meanwhile, having checked every message.
fn allocations_receiving_into<T>(tx: &Sender<T>, rx: &Receiver<T>, msgs: &[T]) -> u64
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Default,
{
    let mut place = T::default();
    tx.send_ref(&msgs[0]).unwrap();
    rx.recv_into(&mut place).unwrap();
    assert_eq!(place, msgs[0]);
    let before = allocations();
    for round in 0..500 {
        for m in msgs {
            tx.send_ref(m).unwrap();
            rx.recv_into(&mut place).unwrap();
            if place != *m {
                panic!("round {round}: {place:?} is not {m:?}");
            }
        }
    }
    allocations() - before
}

#[test]
fn receiving_into_one_buffer_allocates_nothing_once_it_has_grown() {
    // The sizes shrink and grow again: each message replaces the contents,
    // none the allocation. (With `recv`, each would be a new allocation.)
    let sizes = [3000usize, 10, 0, 1000, 2999];
    let bytes: Vec<ByteBuf> = sizes
        .iter()
        .map(|&n| ByteBuf::from(util::pattern(n as u32, n)))
        .collect();
    let texts: Vec<(u32, String)> = sizes
        .iter()
        .map(|&n| (n as u32, "é".repeat(n / 2)))
        .collect();
    util::checked(120, move || {
        let codecs = [
            CodecKind::Postcard,
            CodecKind::MsgPack,
            CodecKind::Json,
            CodecKind::Raw,
        ];
        for codec in codecs {
            let opts = Options::new().codec(codec);
            let pipe = || procwire::Pipe::new().options(opts.clone());
            let socket = |kind| SocketPair::new(kind).options(opts.clone());
            let shm = || procwire::Shm::new().options(opts.clone());
            let (tx, rx) = pipe().channel().unwrap();
            assert_eq!(
                allocations_receiving_into(&tx, &rx, &bytes),
                0,
                "pipe, {codec}"
            );
            for kind in Kind::ALL {
                let (tx, rx) = socket(kind).channel().unwrap();
                let used = allocations_receiving_into(&tx, &rx, &bytes);
                assert_eq!(used, 0, "{kind:?}, {codec}");
            }
            let (tx, rx) = shm().channel().unwrap();
            assert_eq!(
                allocations_receiving_into(&tx, &rx, &bytes),
                0,
                "shm, {codec}"
            );
            if codec == CodecKind::Raw {
                continue; // (raw carries one string or byte string, no tuple)
            }
            let (tx, rx) = pipe().channel().unwrap();
            let used = allocations_receiving_into(&tx, &rx, &texts);
            assert_eq!(used, 0, "text on a pipe, {codec}");
            let (tx, rx) = shm().channel().unwrap();
            let used = allocations_receiving_into(&tx, &rx, &texts);
            assert_eq!(used, 0, "text over shared memory, {codec}");
        }
    });
}
