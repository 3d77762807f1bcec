//! Children born connected: [`Command`] to start any program with a
//! channel, [`fork`] to run a closure in a child, [`task`] to run a function
//! in a child started by fork, the fork server or re-exec, and [`Child`],
//! which owns the process.
//!
//! Every way of starting a child gives the same guarantees: exactly the
//! descriptors handed to it are inherited, it dies with its parent, it is
//! reaped (no zombies), and a channel connected to it reports its death as
//! an error instead of waiting forever.

mod child;
mod command;
mod entry;
mod fork;
mod server;
mod signal;
mod task;

pub(crate) use child::describe;
pub use child::{Child, Killer};
pub use command::Command;
pub(crate) use entry::{fn_offset, handler_at, init_fn_at};
pub use fork::{Inherit, fork, fork_unchecked};
pub use signal::Signal;
pub use task::{ENV_ENTRY, How, Task, init, task};
