//! Network endpoints (feature `remote`): `tcp://` channels (see
//! [`crate::endpoint`]) and ZeroMQ sockets ([`zmq`]).

#[cfg(feature = "unstable")]
#[cfg_attr(docsrs, doc(cfg(feature = "unstable")))]
pub mod auth;
#[cfg(not(feature = "unstable"))]
pub(crate) mod auth;
pub mod pool;
mod tcp;
pub mod zmq;

pub(crate) use tcp::{TcpAcceptor, connect_tcp};
