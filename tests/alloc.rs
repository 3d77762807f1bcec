//! Once buffers are warm, sending and receiving allocate nothing: proved with
//! a counting global allocator.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use procwire::{CodecKind, Kind, Options, Receiver, Sender, SocketPair};
use serde::{Deserialize, Serialize};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; counting a
// thread-local integer does not allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
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
