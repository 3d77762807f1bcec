//! Unit tests of the ring against a hostile or scribbled header.

use super::*;

fn pair(cap: usize) -> (Writer, Reader) {
    let cap = capacity_for(cap);
    let region = Region::create(region_len(cap)).unwrap();
    init(&region, cap);
    let other = Region::open(region.fd().try_clone().unwrap(), region_len(cap)).unwrap();
    assert_eq!(check_header(&other).unwrap(), cap);
    let efds = Efds::new().unwrap();
    (
        Writer::new(region, cap, ShmWait::Adaptive, efds.try_clone().unwrap()),
        Reader::new(other, cap, ShmWait::Adaptive, efds),
    )
}

#[test]
fn messages_of_every_size_wrap_around_intact() {
    let (mut w, mut r) = pair(4096);
    let mut out = Vec::new();
    for round in 0..2000usize {
        let len = (round * 37) % (w.max_message() + 1);
        let msg: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
        assert!(w.try_write(&msg).unwrap(), "round {round}");
        let Some(Record::Inline(n)) = r.try_read(&mut out, false).unwrap() else {
            panic!("expected an inline record");
        };
        assert_eq!(&out[..n], &msg[..]);
    }
    assert_eq!(r.try_read(&mut out, false).unwrap(), None);
}

#[test]
fn a_full_ring_says_so_and_a_too_large_message_is_refused() {
    let (mut w, mut r) = pair(4096);
    let mut sent = 0;
    while w.try_write(&[7; 100]).unwrap() {
        sent += 1;
    }
    assert_eq!(sent, 4096 / 112);
    assert!(matches!(
        w.try_write(&vec![0; 3000]),
        Err(RingError::TooLarge { .. })
    ));
    let mut out = Vec::new();
    for _ in 0..sent {
        assert_eq!(
            r.try_read(&mut out, false).unwrap(),
            Some(Record::Inline(100))
        );
    }
    assert!(w.try_write(&[1; 100]).unwrap());
    r.close();
    assert_eq!(w.try_write(&[1]), Err(RingError::ReaderGone));
}

/// A closed writer's records are refused, inline and out of line: what
/// was published before the close is still read, then the end.
#[test]
fn a_closed_writer_publishes_nothing_more() {
    let (mut w, mut r) = pair(4096);
    assert!(w.try_write(&[1; 10]).unwrap());
    w.close();
    assert_eq!(w.try_write(&[2; 10]), Err(RingError::Closed));
    assert_eq!(
        w.try_write_out_of_line(3000, Outside::Once, None),
        Err(RingError::Closed)
    );
    let mut out = Vec::new();
    assert_eq!(
        r.try_read(&mut out, false).unwrap(),
        Some(Record::Inline(10))
    );
    assert_eq!(r.try_read(&mut out, false).unwrap(), None);
    assert!(r.writer_closed());
}

#[test]
fn a_scribbled_ring_is_an_error_never_a_crash() {
    let (_w, mut r) = pair(4096);
    let mut out = Vec::new();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for _ in 0..1_000_000u32 {
        let head = r.head;
        let tail = match next() % 4 {
            0 => next(),
            1 => head + next() % 8192,
            _ => head + next() % 64,
        };
        let at = (next() % 4096) as usize & !7;
        let bytes = next().to_le_bytes();
        scribble(r.region(), tail, head, at, &bytes);
        match r.try_read(&mut out, false) {
            Ok(_) => {}
            Err(RingError::Corrupt(_)) => errors += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(out.len() <= 4096, "never more than the ring holds");
        // Start each round from a consistent position.
        r.head = r.region().u64_at(OFF_HEAD).load(Ordering::SeqCst).max(head);
    }
    assert!(errors > 1000, "the fuzzer hit the checks {errors} times");
}

#[test]
fn a_spilled_message_is_read_only_from_a_spill_file_that_holds_it() {
    let (mut w, mut r) = pair(4096);
    let mut out = Vec::new();
    // A record that claims the spill file before any came: an error.
    assert!(w.try_write_out_of_line(3000, Outside::Spill, None).unwrap());
    assert_eq!(
        r.try_read(&mut out, false).unwrap(),
        Some(Record::OutOfLine(3000, Outside::Spill))
    );
    assert!(matches!(
        r.read_spill(3000, &mut out, false),
        Err(RingError::Corrupt(_))
    ));
    // A spill file of 4 KiB: a message it holds is read, one it does not
    // (a lying length) is an error, never a read past the mapping.
    let fill = |slot: &mut Slot<'_>| std::io::Write::write_all(slot, &[5; 3000]);
    let (outside, new, (filled, written)) = w.spill_with(3000, fill).unwrap();
    assert_eq!(outside, Outside::NewSpill);
    assert!(filled.is_ok() && written.is_eq());
    let new = new.unwrap();
    r.set_spill(Some(
        Region::open_whole(new.fd().try_clone().unwrap(), SPILL_MAX).unwrap(),
    ));
    assert!(w.try_write_out_of_line(3000, outside, Some(new)).unwrap());
    assert_eq!(
        r.try_read(&mut out, false).unwrap(),
        Some(Record::OutOfLine(3000, Outside::NewSpill))
    );
    assert_eq!(
        r.read_spill(3000, &mut out, false),
        Ok(Record::Inline(3000))
    );
    assert_eq!(&out[..3000], &[5; 3000][..]);
    assert!(matches!(
        r.read_spill(4097, &mut out, false),
        Err(RingError::Corrupt(_))
    ));
    // Not yet read to the end (as far as the writer knows): a new file.
    let fill = |slot: &mut Slot<'_>| std::io::Write::write_all(slot, &[6; 100]);
    assert_eq!(w.spill_with(100, fill).unwrap().0, Outside::NewSpill);
    r.spill_read();
    r.spill_read();
    let fill = |slot: &mut Slot<'_>| std::io::Write::write_all(slot, &[7; 100]);
    assert_eq!(w.spill_with(100, fill).unwrap().0, Outside::Spill);
}

#[test]
fn a_writer_waits_until_the_reader_moves_not_until_the_ring_is_full() {
    // Records of 1,512 bytes: two fill 3,024 of 4,096, and a third does
    // not fit, though the ring is not full. The wait must last until the
    // reader moves: before, it ended at once (the ring was "not full"),
    // and a blocked sender tried, failed and waited again, burning a CPU
    // for as long as its reader was away.
    let (mut w, mut r) = pair(4096);
    let msg = [3u8; 1500];
    assert!(w.try_write(&msg).unwrap());
    assert!(w.try_write(&msg).unwrap());
    assert!(!w.try_write(&msg).unwrap());
    let deadline = Instant::now() + std::time::Duration::from_millis(50);
    assert_eq!(w.wait(Some(deadline), &|| true), Waited::TimedOut);
    assert!(!w.try_write(&msg).unwrap(), "no room came");
    let mut out = Vec::new();
    assert_eq!(
        r.try_read(&mut out, false).unwrap(),
        Some(Record::Inline(1500))
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    assert_eq!(w.wait(Some(deadline), &|| true), Waited::Ready);
    assert!(w.try_write(&msg).unwrap());
}

#[test]
fn an_idle_wait_looks_at_its_peer_less_often_as_it_lasts() {
    // A second of waiting on an empty ring: the peer is looked at 10 ms
    // in, then at doubling intervals up to 100 ms, some 13 times in all.
    // (Every 10 ms, as before, would be some 100 times: an idle end woke
    // a hundred times a second.)
    let (_w, mut r) = pair(4096);
    let looks = std::cell::Cell::new(0u32);
    let alive = || {
        looks.set(looks.get() + 1);
        true
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(1);
    assert_eq!(r.wait(Some(deadline), &alive), Waited::TimedOut);
    assert!(
        (3..=20).contains(&looks.get()),
        "the peer was looked at {} times in 1 s",
        looks.get()
    );
}
