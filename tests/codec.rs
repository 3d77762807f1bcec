//! Codecs: round trips, and the shapes other languages see on the wire.

use std::collections::BTreeMap;

use procwire::{ByteBuf, CodecKind, ErrorKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Pair(i8, i8),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    id: u64,
    neg: i32,
    ok: bool,
    name: String,
    data: ByteBuf,
    list: Vec<u16>,
    maybe: Option<String>,
    shapes: Vec<Shape>,
    map: BTreeMap<String, u8>,
    unit: (),
}

fn sample() -> Everything {
    Everything {
        id: u64::MAX,
        neg: -5,
        ok: true,
        name: "Heavy lifting".into(),
        data: ByteBuf::from(vec![0, 1, 2, 255]),
        list: vec![1, 300, 65535],
        maybe: None,
        shapes: vec![
            Shape::Empty,
            Shape::Circle(1.5),
            Shape::Rect { w: 2, h: 3 },
            Shape::Pair(-1, 1),
        ],
        map: [("a".to_string(), 1u8)].into_iter().collect(),
        unit: (),
    }
}

#[test]
fn every_structured_codec_round_trips_everything() {
    for codec in [CodecKind::Postcard, CodecKind::MsgPack, CodecKind::Json] {
        let mut buf = Vec::new();
        codec.encode(&sample(), &mut buf).unwrap();
        let back: Everything = codec.decode(&buf).unwrap();
        assert_eq!(back, sample(), "{codec}");
    }
}

#[test]
fn raw_carries_bytes_and_text_verbatim() {
    let mut buf = Vec::new();
    CodecKind::Raw
        .encode(&ByteBuf::from(b"\x00bin".to_vec()), &mut buf)
        .unwrap();
    CodecKind::Raw.encode("text", &mut buf).unwrap();
    CodecKind::Raw.encode(&vec![1u8, 2], &mut buf).unwrap();
    assert_eq!(buf, b"\x00bintext\x01\x02");
    assert_eq!(
        CodecKind::Raw.decode::<ByteBuf>(b"abc").unwrap().into_vec(),
        b"abc"
    );
    assert_eq!(CodecKind::Raw.decode::<Vec<u8>>(b"abc").unwrap(), b"abc");
    assert_eq!(CodecKind::Raw.decode::<String>(b"abc").unwrap(), "abc");
    CodecKind::Raw.decode::<()>(b"").unwrap();
    // Not bytes: clear errors both ways.
    let e = CodecKind::Raw.encode(&5u32, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode);
    assert!(e.to_string().contains("bytes or text only"), "{e}");
    assert_eq!(
        CodecKind::Raw.decode::<u32>(b"abc").unwrap_err().kind(),
        ErrorKind::Decode
    );
    assert_eq!(
        CodecKind::Raw.decode::<String>(b"\xff").unwrap_err().kind(),
        ErrorKind::Decode
    );
}

fn msgpack(v: &impl Serialize) -> Vec<u8> {
    let mut buf = Vec::new();
    CodecKind::MsgPack.encode(v, &mut buf).unwrap();
    buf
}

fn json(v: &impl Serialize) -> String {
    let mut buf = Vec::new();
    CodecKind::Json.encode(v, &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

/// The table in docs/wire-format.md, checked byte for byte.
#[test]
fn msgpack_and_json_shapes_match_the_wire_format_document() {
    #[derive(Serialize)]
    struct P {
        x: u8,
        y: bool,
    }
    // Structs are maps keyed by field name.
    assert_eq!(msgpack(&P { x: 1, y: true }), b"\x82\xa1x\x01\xa1y\xc3");
    assert_eq!(json(&P { x: 1, y: true }), r#"{"x":1,"y":true}"#);
    // Byte buffers are bin; a plain Vec<u8> is an array of integers.
    assert_eq!(msgpack(&ByteBuf::from(vec![1, 2])), b"\xc4\x02\x01\x02");
    assert_eq!(msgpack(&vec![1u8, 2]), b"\x92\x01\x02");
    assert_eq!(json(&ByteBuf::from(vec![1, 2])), "[1,2]");
    // Strings, options, unit, tuples.
    assert_eq!(msgpack(&"hi"), b"\xa2hi");
    assert_eq!(msgpack(&None::<u8>), b"\xc0");
    assert_eq!(msgpack(&Some(3u8)), b"\x03");
    assert_eq!(msgpack(&()), b"\xc0");
    assert_eq!(msgpack(&(1u8, "a")), b"\x92\x01\xa1a");
    assert_eq!(json(&(1u8, "a")), r#"[1,"a"]"#);
    // Enums are externally tagged: a unit variant is its name, the others a
    // one-entry map from the name to the content.
    assert_eq!(msgpack(&Shape::Empty), b"\xa5Empty");
    assert_eq!(json(&Shape::Empty), r#""Empty""#);
    assert_eq!(
        msgpack(&Shape::Circle(0.5)),
        b"\x81\xa6Circle\xcb\x3f\xe0\0\0\0\0\0\0"
    );
    assert_eq!(json(&Shape::Circle(0.5)), r#"{"Circle":0.5}"#);
    assert_eq!(
        msgpack(&Shape::Rect { w: 2, h: 3 }),
        b"\x81\xa4Rect\x82\xa1w\x02\xa1h\x03"
    );
    assert_eq!(
        json(&Shape::Rect { w: 2, h: 3 }),
        r#"{"Rect":{"w":2,"h":3}}"#
    );
    assert_eq!(msgpack(&Shape::Pair(-1, 1)), b"\x81\xa4Pair\x92\xff\x01");
    assert_eq!(json(&Shape::Pair(-1, 1)), r#"{"Pair":[-1,1]}"#);
    // Integers use the smallest encoding; floats are float 64 (f32 is float 32).
    assert_eq!(msgpack(&300u16), b"\xcd\x01\x2c");
    assert_eq!(msgpack(&-5i32), b"\xfb");
    assert_eq!(msgpack(&1.5f32), b"\xca\x3f\xc0\0\0");
}

#[test]
fn codec_names_parse_and_unknown_names_are_refused() {
    for c in CodecKind::ALL {
        assert_eq!(c.name().parse::<CodecKind>().unwrap(), *c);
    }
    let e = "yaml".parse::<CodecKind>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("postcard, msgpack, json, raw"),
        "{e}"
    );
}

/// Issue 12, item 4: procwire's own `ByteBuf` and `procwire::bytes` write
/// exactly the byte strings the `serde_bytes` crate wrote before them
/// (MessagePack `bin`, postcard length + bytes, JSON an array), and read
/// them back, so no peer sees a difference.
#[test]
fn byte_payloads_are_byte_strings_on_every_codec() {
    use procwire::ByteBuf;
    use procwire::codec::{Codec, Json, MsgPack, Postcard};

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Field {
        #[serde(with = "procwire::bytes")]
        data: Vec<u8>,
    }

    let b = ByteBuf::from(vec![1u8, 2, 3]);
    let mut out = Vec::new();
    MsgPack::encode(&b, &mut out).unwrap();
    assert_eq!(out, [0xc4, 3, 1, 2, 3], "bin 8");
    assert_eq!(MsgPack::decode::<ByteBuf>(&out).unwrap(), b);
    out.clear();
    Postcard::encode(&b, &mut out).unwrap();
    assert_eq!(out, [3, 1, 2, 3]);
    assert_eq!(Postcard::decode::<ByteBuf>(&out).unwrap(), b);
    out.clear();
    Json::encode(&b, &mut out).unwrap();
    assert_eq!(out, b"[1,2,3]");
    assert_eq!(Json::decode::<ByteBuf>(&out).unwrap(), b);

    let f = Field { data: vec![7; 300] };
    out.clear();
    MsgPack::encode(&f, &mut out).unwrap();
    // A map with one key, then bin 16 (0xc5) of 300 bytes.
    assert_eq!(&out[..7], [0x81, 0xa4, b'd', b'a', b't', b'a', 0xc5]);
    assert_eq!(MsgPack::decode::<Field>(&out).unwrap(), f);
}

/// JSON has no NaN or infinity: serde_json writes them as `null`, which
/// came back as `None` from `Some(NaN)`. procwire's JSON refuses them at the
/// send, wherever they sit in the value, and the channel goes on.
#[test]
fn json_refuses_nan_and_infinity_where_it_would_write_null() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Reading {
        name: String,
        at: Option<f64>,
        samples: Vec<f32>,
        by_key: BTreeMap<String, (f64, Shape)>,
    }
    let fine = || Reading {
        name: "probe".into(),
        at: Some(1.5),
        samples: vec![0.25, -2.0],
        by_key: BTreeMap::from([("a".into(), (1e300, Shape::Circle(0.5)))]),
    };
    let bad = [
        Reading {
            at: Some(f64::NAN),
            ..fine()
        },
        Reading {
            samples: vec![0.5, f32::INFINITY],
            ..fine()
        },
        Reading {
            by_key: BTreeMap::from([("b".into(), (1.0, Shape::Circle(f64::NEG_INFINITY)))]),
            ..fine()
        },
    ];
    let (tx, rx) = procwire::Pipe::new()
        .codec(CodecKind::Json)
        .channel::<Reading>()
        .unwrap();
    for reading in bad {
        let e = tx.send(reading).unwrap_err().into_error();
        assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
        assert!(e.to_string().contains("JSON has no NaN or infinity"), "{e}");
    }
    // Nothing of the refused ones went out; finite values go as before.
    tx.send(fine()).unwrap();
    assert_eq!(rx.recv().unwrap(), fine());
    // The other structured codecs carry them exactly.
    for codec in [CodecKind::MsgPack, CodecKind::Postcard] {
        let mut out = Vec::new();
        codec.encode(&Some(f64::NAN), &mut out).unwrap();
        let back: Option<f64> = codec.decode(&out).unwrap();
        assert!(back.unwrap().is_nan(), "{codec:?}");
    }
}
