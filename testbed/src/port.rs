//! Free loopback ports that no other test is using.
//!
//! A port handed out here is free on 127.0.0.1 when it is handed out, and stays reserved for
//! the rest of the process, so two tests in one binary never get the same port, not even after
//! one of them stopped its server. Across test binaries running at the same time (cargo nextest
//! runs them side by side) a port is reserved with an advisory lock on a file in
//! `$TMPDIR/kestrel-testbed-ports/`, held until the process exits.
//!
//! Ports come from below the kernel's ephemeral range (`ip_local_port_range`), so the outgoing
//! connections that tests open never land on a port that a server is about to bind. For a
//! cluster node the bus port (port + 10000) is checked and reserved as well.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Distance between a cluster node's client port and its cluster bus port.
pub const CLUSTER_BUS_OFFSET: u16 = 10000;

/// Lowest port handed out; below it live many well-known services.
const LOWEST_PORT: u16 = 10000;

/// Ports reserved by this process, and the lock files that reserve them for other processes.
struct Reservations {
    ports: HashSet<u16>,
    locks: Vec<File>,
}

static RESERVATIONS: Mutex<Option<Reservations>> = Mutex::new(None);

/// Returns a loopback port that is free now and reserved for the caller from now on.
///
/// # Panics
///
/// When no port in the range below the ephemeral range is free.
pub fn free_port() -> u16 {
    reserve(false)
}

/// Returns a port for a cluster node: the port and its bus port (port + 10000) are both free
/// now and both reserved for the caller from now on.
///
/// # Panics
///
/// When no such pair is free.
pub fn free_cluster_port() -> u16 {
    reserve(true)
}

fn reserve(with_bus: bool) -> u16 {
    let (low, high) = candidate_range(with_bus);
    let span = u32::from(high - low);
    let start = seed() % span;
    let mut guard = reservations();
    let reservations = guard.get_or_insert_with(|| Reservations {
        ports: HashSet::new(),
        locks: Vec::new(),
    });

    for step in 0..span {
        let Ok(port) = u16::try_from(u32::from(low) + (start + step) % span) else {
            continue;
        };
        let mut wanted = vec![port];
        if with_bus {
            wanted.push(port + CLUSTER_BUS_OFFSET);
        }
        if wanted.iter().any(|p| reservations.ports.contains(p)) {
            continue;
        }
        let Some(locks) = lock_all(&wanted) else {
            continue;
        };
        if !wanted.iter().all(|&p| bindable(p)) {
            // Keep the locks anyway: whoever holds the port may be a server of ours from an
            // earlier attempt, and trying it again would only fail again.
            reservations.ports.extend(&wanted);
            reservations.locks.extend(locks);
            continue;
        }
        reservations.ports.extend(&wanted);
        reservations.locks.extend(locks);
        return port;
    }
    panic!(
        "kestrel-testbed: no free loopback port in {low}..{high}{}; stop leftover redis-server \
         processes from earlier runs (check `ss -ltnp`) or widen the range below \
         /proc/sys/net/ipv4/ip_local_port_range",
        if with_bus {
            " (with a free bus port at +10000)"
        } else {
            ""
        }
    );
}

/// The half-open range of candidate client ports: above [`LOWEST_PORT`], and below the
/// ephemeral range for the port (and for its bus port, when one is needed).
fn candidate_range(with_bus: bool) -> (u16, u16) {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let bus = if with_bus { CLUSTER_BUS_OFFSET } else { 0 };
    let high = ephemeral_low.saturating_sub(bus);
    if high > LOWEST_PORT + 1000 {
        (LOWEST_PORT, high)
    } else {
        // An unusual ephemeral range leaves no room below it: fall back to the whole range and
        // rely on the bind check and the start-up retry in `ServerBuilder::start`.
        (LOWEST_PORT, u16::MAX - bus)
    }
}

/// Where to start scanning, so that processes starting at the same time spread out.
fn seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().wrapping_mul(2_654_435_761)
}

fn reservations() -> MutexGuard<'static, Option<Reservations>> {
    // A test that panicked while holding the lock cannot have left the set half-updated in a
    // way that matters: at worst a port stays reserved.
    RESERVATIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes the cross-process lock of every port, or of none.
fn lock_all(ports: &[u16]) -> Option<Vec<File>> {
    let dir = lock_dir();
    if let Err(err) = fs::create_dir_all(&dir) {
        panic!("kestrel-testbed: cannot create the port lock folder {dir:?}: {err}");
    }
    let mut locks = Vec::new();
    for port in ports {
        let path = dir.join(format!("{port}.lock"));
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(err) => panic!("kestrel-testbed: cannot open the port lock file {path:?}: {err}"),
        };
        // SAFETY: flock only reads the descriptor number, which belongs to `file` and stays open
        // for the whole call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            return None;
        }
        locks.push(file);
    }
    Some(locks)
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("kestrel-testbed-ports")
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        for port in ports {
            assert!(port >= LOWEST_PORT);
            let listener = TcpListener::bind(("127.0.0.1", port));
            assert!(
                listener.is_ok(),
                "port {port} was handed out but cannot be bound"
            );
        }
    }

    #[test]
    fn cluster_ports_reserve_their_bus_port() {
        let port = free_cluster_port();
        let bus = port + CLUSTER_BUS_OFFSET;
        assert!(bindable(bus), "bus port {bus} of {port} is not free");
        let later: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(!later.contains(&port) && !later.contains(&bus));
    }

    #[test]
    fn ports_in_use_are_skipped() {
        let port = free_port();
        let _held = TcpListener::bind(("127.0.0.1", port)).expect("bind a reserved port");
        for _ in 0..20 {
            assert_ne!(free_port(), port);
        }
    }
}
