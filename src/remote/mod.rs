//! Network endpoints (feature `remote`): `tcp://` channels (see
//! [`crate::endpoint`]) and ZeroMQ sockets ([`zmq`]).

pub mod auth;
pub mod pool;
mod tcp;
pub mod zmq;

pub(crate) use tcp::{TcpAcceptor, connect_tcp};
