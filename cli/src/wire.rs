//! `procwire cat` and `procwire call`: the socat of procwire, for the
//! msgpack and json codecs. Messages are shown and read as JSON, one per
//! line; a MessagePack byte string is shown as an array of numbers.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use procwire::{CodecKind, Duplex, Net, rpc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Any message, as JSON.
pub struct Any(pub Value);

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Any, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

/// Sent as the JSON value it holds (`connect` and `listen` give duplexes,
/// whose both directions are serializable).
impl serde::Serialize for Any {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any message")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Any, E> {
        Ok(Any(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Any, E> {
        Ok(Any(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Any, E> {
        Ok(Any(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Any, E> {
        Ok(Any(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Any, E> {
        Ok(Any(v.into()))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Any, E> {
        Ok(Any(Value::Array(v.iter().map(|&b| b.into()).collect())))
    }
    fn visit_none<E>(self) -> std::result::Result<Any, E> {
        Ok(Any(Value::Null))
    }
    fn visit_unit<E>(self) -> std::result::Result<Any, E> {
        Ok(Any(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Any, D::Error> {
        Any::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Any, D::Error> {
        Any::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Any, A::Error> {
        let mut out = Vec::new();
        while let Some(Any(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Any(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Any, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Any(k)) = map.next_key()? {
            let Any(v) = map.next_value()?;
            // JSON keys are strings: another key is shown as its JSON.
            let k = match k {
                Value::String(s) => s,
                k => k.to_string(),
            };
            out.insert(k, v);
        }
        Ok(Any(Value::Object(out)))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> std::result::Result<Any, A::Error> {
        Err(de::Error::custom(
            "an enum outside a map (not msgpack or json)",
        ))
    }
}

/// The codec a message is in: msgpack or json.
pub fn codec(name: &str) -> Result<CodecKind> {
    match name {
        "msgpack" => Ok(CodecKind::MsgPack),
        "json" => Ok(CodecKind::Json),
        other => bail!("--codec {other}: cat and call speak msgpack or json"),
    }
}

/// The network settings: the key from the environment, or none on purpose.
fn net(codec: CodecKind, no_key: bool) -> Net {
    let net = Net::new().codec(codec);
    if no_key { net.no_key() } else { net }
}

/// One channel to `endpoint`: connected, or (with `listen`) the first peer
/// that connects.
fn open(endpoint: &str, listen: bool, net: &Net) -> Result<Duplex<Value, Any>> {
    if listen {
        let l = at(net.listen(endpoint), "listening at", endpoint)?;
        eprintln!("procwire cat: listening at {}", l.endpoint());
        return Ok(l.accept()?);
    }
    at(net.connect(endpoint), "connecting to", endpoint)
}

/// `r`, its error saying `doing` `endpoint` unless it names the endpoint
/// already.
pub fn at<T>(r: procwire::Result<T>, doing: &str, endpoint: &str) -> Result<T> {
    r.map_err(|e| {
        if e.to_string().contains(endpoint) {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(e).context(format!("{doing} {endpoint}"))
        }
    })
}

/// `procwire cat`: prints what arrives as JSON lines until the peer closes
/// the channel; with `send`, sends each JSON line of stdin instead.
pub fn cat(
    endpoint: &str,
    listen: bool,
    send: bool,
    codec: CodecKind,
    no_key: bool,
) -> Result<ExitCode> {
    let ch = open(endpoint, listen, &net(codec, no_key))?;
    if send {
        for (n, line) in io::stdin().lock().lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("stdin line {}: not JSON", n + 1))?;
            ch.send(v).map_err(|e| e.into_error())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A message that does not decode is reported with its bytes, and the
    // ones after it are still printed: its frame kept the stream in step.
    let mut out = io::stdout().lock();
    let mut undecoded = 0u64;
    for n in 1u64.. {
        let got = ch.recv_with(|m| {
            m.decode::<Any>()
                .map(|Any(v)| v)
                .map_err(|e| (e, m.payload().len(), crate::tap::hex(m.payload())))
        });
        match got {
            Ok(Ok(v)) => {
                writeln!(out, "{v}")?;
                out.flush()?;
            }
            Ok(Err((e, len, hex))) => {
                eprintln!(
                    "procwire cat: message {n} ({len} B) does not decode: {e}; its bytes: {hex}"
                );
                undecoded += 1;
            }
            Err(e) if e.kind() == procwire::ErrorKind::Disconnected => break,
            Err(e) => return Err(e.into_error().into()),
        }
    }
    if undecoded > 0 {
        eprintln!("procwire cat: {undecoded} message(s) did not decode");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `procwire call`: one RPC call (wire format section 8) with `request`
/// (JSON) as its body; prints the reply's `Ok` as JSON, or the `Err` on
/// stderr with exit status 1.
pub fn call(
    endpoint: &str,
    request: &str,
    timeout: Duration,
    codec: CodecKind,
    no_key: bool,
) -> Result<ExitCode> {
    let body: Value = serde_json::from_str(request).context("the request is not JSON")?;
    let ch: Duplex<rpc::Call<Value>, rpc::Reply<Any>> = at(
        net(codec, no_key).connect(endpoint),
        "connecting to",
        endpoint,
    )?;
    ch.send(rpc::Call { id: 1, body })
        .map_err(|e| e.into_error())?;
    let reply = ch
        .recv_timeout(timeout)
        .with_context(|| format!("waiting for the reply from {endpoint}"))?;
    if reply.id != 1 {
        bail!("a reply to call {}, not to this one", reply.id);
    }
    match reply.body {
        Ok(Any(v)) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("procwire call: the handler failed: {why}");
            Ok(ExitCode::from(1))
        }
    }
}
