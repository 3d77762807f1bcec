//! Network endpoints: `tcp://` channels (feature `tcp`, see
//! [`crate::endpoint`]), ZeroMQ sockets (feature `zmq`), and the pool whose
//! workers connect over either (feature `remote`, which is both).

#[cfg(all(feature = "tcp", feature = "unstable"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tcp", feature = "unstable"))))]
pub mod auth;
#[cfg(all(feature = "tcp", not(feature = "unstable")))]
pub(crate) mod auth;
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub mod pool;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(feature = "zmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "zmq")))]
pub mod zmq;

#[cfg(feature = "tcp")]
pub(crate) use tcp::{TcpAcceptor, connect_tcp};
