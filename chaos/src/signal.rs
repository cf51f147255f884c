//! Pausing and resuming a server by PID (SIGSTOP / SIGCONT), to make a replica lag.

use std::io;

/// Stops the process until [`resume`]: it keeps its sockets but runs nothing.
pub fn pause(pid: u32) -> io::Result<()> {
    send(pid, libc::SIGSTOP)
}

/// Lets a process paused by [`pause`] run again.
pub fn resume(pid: u32) -> io::Result<()> {
    send(pid, libc::SIGCONT)
}

fn send(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "PID out of range"))?;
    // SAFETY: kill() takes plain integers and touches no memory of ours; callers pass the PID
    // of a server they started and have not reaped.
    let sent = unsafe { libc::kill(pid, signal) };
    if sent == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
