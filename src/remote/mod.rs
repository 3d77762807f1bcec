//! Across machines, above the endpoints: ZeroMQ sockets (feature `zmq`),
//! and the pool whose workers connect over `tcp://` or ZeroMQ (feature
//! `remote`, which is both). `tcp://` channels themselves are endpoints
//! ([`crate::endpoint`], feature `tcp`).

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub mod pool;
#[cfg(feature = "zmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "zmq")))]
pub mod zmq;
