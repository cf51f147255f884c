//! One server process (redis-server, valkey-server or a sentinel) in its own temporary folder:
//! spawning it, signalling it by PID, reaping it, and reading its log.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a process gets to exit after SIGTERM before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(20);

/// Lines of log shown when something times out or a test panics.
pub(crate) const LOG_TAIL_LINES: usize = 30;

/// Set this variable (to anything) to keep the temporary folders of a run for inspection.
pub const KEEP_DIRS_ENV: &str = "KESTREL_TESTBED_KEEP";

/// A server process and the folder it lives in. The process is killed and reaped on drop; the
/// folder is removed after that unless [`KEEP_DIRS_ENV`] is set.
pub(crate) struct Daemon {
    dir: Option<TempDir>,
    dir_path: PathBuf,
    port: u16,
    program: PathBuf,
    /// Arguments after the config file, e.g. `--sentinel`.
    trailing_args: Vec<String>,
    config_path: PathBuf,
    log_path: PathBuf,
    /// Where stdout and stderr go: errors from before the log file is opened land here.
    output_path: PathBuf,
    child: Mutex<Option<Child>>,
    label: String,
}

impl Daemon {
    /// Prepares a process in a new temporary folder; nothing runs until [`Daemon::spawn`].
    pub(crate) fn new(kind: &str, program: PathBuf, trailing_args: Vec<String>) -> Daemon {
        let dir = match tempfile::Builder::new()
            .prefix(&format!("kestrel-{kind}-"))
            .tempdir()
        {
            Ok(dir) => dir,
            Err(err) => panic!("kestrel-testbed: cannot create a temporary folder: {err}"),
        };
        let dir_path = dir.path().to_path_buf();
        Daemon {
            config_path: dir_path.join(format!("{kind}.conf")),
            log_path: dir_path.join(format!("{kind}.log")),
            output_path: dir_path.join("output.log"),
            dir: Some(dir),
            dir_path,
            port: 0,
            program,
            trailing_args,
            child: Mutex::new(None),
            label: kind.to_string(),
        }
    }

    pub(crate) fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub(crate) fn program(&self) -> &Path {
        &self.program
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A short name for messages: program and address.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({}) on 127.0.0.1:{} in {}",
            self.label,
            self.program.display(),
            self.port,
            self.dir_path.display()
        )
    }

    /// Writes the config file. The daemon reads it at every (re)start.
    pub(crate) fn write_config(&self, text: &str) {
        if let Err(err) = fs::write(&self.config_path, text) {
            panic!(
                "kestrel-testbed: cannot write {}: {err}",
                self.config_path.display()
            );
        }
    }

    /// Removes the log files, so that a new first start reads only its own messages.
    pub(crate) fn clear_logs(&self) {
        for path in [&self.log_path, &self.output_path] {
            if let Err(err) = fs::remove_file(path) {
                if err.kind() != io::ErrorKind::NotFound {
                    panic!("kestrel-testbed: cannot remove {}: {err}", path.display());
                }
            }
        }
    }

    /// Starts the process. Panics if one is already running.
    pub(crate) fn spawn(&self) {
        let mut child = self.child();
        if let Some(running) = child.as_mut() {
            if matches!(running.try_wait(), Ok(None)) {
                panic!(
                    "kestrel-testbed: {} is already running (pid {}); stop it first",
                    self.describe(),
                    running.id()
                );
            }
        }
        let output = match open_append(&self.output_path) {
            Ok(file) => file,
            Err(err) => panic!(
                "kestrel-testbed: cannot open {}: {err}",
                self.output_path.display()
            ),
        };
        let output_err = match output.try_clone() {
            Ok(file) => file,
            Err(err) => panic!("kestrel-testbed: cannot duplicate a file handle: {err}"),
        };
        let spawned = Command::new(&self.program)
            .arg(&self.config_path)
            .args(&self.trailing_args)
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err)
            .spawn();
        match spawned {
            Ok(process) => *child = Some(process),
            Err(err) => panic!(
                "kestrel-testbed: cannot start {}: {err}. Install it with scripts/deps.sh, or \
                 point KESTREL_SERVER_BIN at a redis-server or valkey-server binary",
                self.program.display()
            ),
        }
    }

    /// The PID of the running process, if one runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        let mut child = self.child();
        let running = child.as_mut()?;
        match running.try_wait() {
            Ok(None) => Some(running.id()),
            _ => None,
        }
    }

    /// Whether the process runs; `Err` holds its exit status when it has exited.
    pub(crate) fn status(&self) -> Result<(), String> {
        let mut child = self.child();
        match child.as_mut() {
            None => Err("it was never started".to_string()),
            Some(running) => match running.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!("it exited with {status}")),
                Err(err) => Err(format!("its status cannot be read: {err}")),
            },
        }
    }

    /// Sends SIGKILL to the process by PID and reaps it. Does nothing if it is not running.
    pub(crate) fn kill(&self) {
        let mut child = self.child();
        if let Some(running) = child.as_mut() {
            // Child::kill sends SIGKILL to this child's PID only; an already exited child is
            // not an error worth reporting here.
            let _ = running.kill();
            let _ = running.wait();
        }
    }

    /// Sends SIGTERM (Redis shuts down cleanly: it writes the RDB when save points are set and
    /// flushes the AOF), waits for the exit and returns its status. Kills the process if it has
    /// not exited after a grace period, then panics.
    pub(crate) fn terminate(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        let running = child.as_mut()?;
        if let Ok(Some(status)) = running.try_wait() {
            return Some(status);
        }
        let Ok(pid) = libc::pid_t::try_from(running.id()) else {
            panic!("kestrel-testbed: PID {} does not fit pid_t", running.id());
        };
        // SAFETY: kill() takes plain integers and touches no memory of ours. The PID is that of
        // our own child, which has not been reaped yet, so it cannot name another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            let err = io::Error::last_os_error();
            panic!(
                "kestrel-testbed: cannot send SIGTERM to {}: {err}",
                self.describe()
            );
        }
        let deadline = Instant::now() + TERMINATE_GRACE;
        loop {
            match running.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = running.kill();
                    let _ = running.wait();
                    drop(child);
                    panic!(
                        "kestrel-testbed: {} did not exit within {TERMINATE_GRACE:?} of SIGTERM; \
                         it was killed.\n{}",
                        self.describe(),
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
        }
    }

    /// The last `lines` lines of the log file and of the captured stdout/stderr, labelled.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let mut text = format!("--- last lines of {} ---\n", self.log_path.display());
        text.push_str(&tail(&self.log_path, lines));
        let output = tail(&self.output_path, lines);
        if !output.trim().is_empty() {
            text.push_str(&format!(
                "--- last lines of {} ---\n",
                self.output_path.display()
            ));
            text.push_str(&output);
        }
        text
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // The guarded value is a process handle; a panic elsewhere cannot leave it inconsistent.
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "kestrel-testbed: {} stopped after a panic\n{}",
                self.describe(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("kestrel-testbed: kept {}", kept.display());
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = all[start..].join("\n");
            out.push('\n');
            out
        }
        Err(err) => format!("(cannot read {}: {err})\n", path.display()),
    }
}
