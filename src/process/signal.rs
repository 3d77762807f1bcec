//! The signals procwire sends to children, by name.

/// A signal to send to a child ([`Child::signal`](crate::Child::signal)).
///
/// # Examples
///
/// ```
/// use procwire::{Command, Signal};
///
/// let mut child = Command::new("sleep").arg("60").spawn()?;
/// child.signal(Signal::Term)?;
/// let status = child.wait()?;
/// use std::os::unix::process::ExitStatusExt;
/// assert_eq!(status.signal(), Some(Signal::Term.as_raw()));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGHUP`: the controlling terminal went away; daemons reload.
    Hup,
    /// `SIGINT`: interrupt, as from Ctrl-C.
    Int,
    /// `SIGQUIT`: quit with a core dump.
    Quit,
    /// `SIGKILL`: ends the process; it cannot be caught.
    Kill,
    /// `SIGUSR1`: meaning defined by the program.
    Usr1,
    /// `SIGUSR2`: meaning defined by the program.
    Usr2,
    /// `SIGTERM`: please exit.
    Term,
    /// `SIGALRM`: a timer expired.
    Alrm,
    /// `SIGSTOP`: freezes the process; it cannot be caught.
    Stop,
    /// `SIGCONT`: resumes a stopped process.
    Cont,
    /// `SIGTSTP`: stop request, as from Ctrl-Z.
    Tstp,
}

impl Signal {
    /// The signal's number on this platform, as `ExitStatus::signal`
    /// reports it.
    pub fn as_raw(self) -> i32 {
        use rustix::process::Signal as S;
        match self {
            Signal::Hup => S::HUP,
            Signal::Int => S::INT,
            Signal::Quit => S::QUIT,
            Signal::Kill => S::KILL,
            Signal::Usr1 => S::USR1,
            Signal::Usr2 => S::USR2,
            Signal::Term => S::TERM,
            Signal::Alrm => S::ALARM,
            Signal::Stop => S::STOP,
            Signal::Cont => S::CONT,
            Signal::Tstp => S::TSTP,
        }
        .as_raw()
    }
}
