//! The client's one error type, its classification, and the one place that decides retry.

use std::fmt;
use std::time::Duration;

use kestrel_core::ShardId;

use crate::config::Address;

/// What kind of failure an [`Error`] is. Match on this rather than on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is incomplete or contradictory (bad URL, bad shard id, ...).
    Config,
    /// A host name did not resolve.
    UnknownHost,
    /// Nothing listens at the address.
    ConnectionRefused,
    /// The server refused the username or password, or requires one.
    Auth,
    /// The user may not run a command it needs (ACL).
    Permission,
    /// The connection broke, timed out or could not be made for another reason.
    Connection,
    /// The topology moved under the call: MOVED, ASK, READONLY, CLUSTERDOWN, TRYAGAIN, ...
    Topology,
    /// The generator is running ahead of the clock; the same call fits after a short wait.
    Lead,
    /// A shard id is missing, out of range, differs from the configured one, or is claimed
    /// by two generators.
    Shard,
    /// The server answered with an error not covered above.
    Server,
    /// The server answered with something this client does not understand.
    Protocol,
    /// The call asked for something impossible (no IDs, a text that is not an ID, ...).
    Input,
    /// Retries went on for longer than the configured wait.
    Timeout,
}

/// How a failed call goes on. Decided by [`Error::retry`] and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Give up: retrying cannot help.
    Never,
    /// Same connection, after this long.
    After(Duration),
    /// Find the server(s) again (reconnect, ask the sentinels, re-read the cluster).
    Rediscover,
}

/// A failure of the Kestrel client.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The server's error code (first word of its reply) when the server answered.
    code: Option<String>,
    /// For [`ErrorKind::Lead`], how long to wait.
    wait: Option<Duration>,
    /// For MOVED and ASK, the node the server pointed to.
    redirect: Option<Address>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            wait: None,
            redirect: None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }

    /// A server must catch up before the same call fits; retried after `wait`.
    pub(crate) fn lead(wait: Duration) -> Self {
        Self {
            wait: Some(wait),
            ..Self::new(ErrorKind::Lead, format!("retry in {} ms", wait.as_millis()))
        }
    }

    pub(crate) fn shard_mismatch(generator: &str, stored: ShardId, configured: ShardId) -> Self {
        Self::new(
            ErrorKind::Shard,
            format!(
                "generator {generator} already has shard id {stored} but this client is \
                 configured with {configured}; two settings would share or swap shard ids, so \
                 fix KESTREL_SHARD_ID or the key {{{generator}}}-shard-id"
            ),
        )
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's error code, such as `KESTREL_LEAD` or `READONLY`, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// For MOVED and ASK, the node the server pointed to.
    pub(crate) fn redirect(&self) -> Option<&Address> {
        self.redirect.as_ref()
    }

    /// Whether the client itself would retry this failure.
    pub fn is_retryable(&self) -> bool {
        self.retry() != Retry::Never
    }

    /// The one place that decides whether and how a failed call is tried again.
    pub(crate) fn retry(&self) -> Retry {
        match self.kind {
            ErrorKind::Lead => Retry::After(self.wait.unwrap_or(Duration::from_millis(1))),
            ErrorKind::Connection | ErrorKind::ConnectionRefused | ErrorKind::Topology => {
                Retry::Rediscover
            }
            ErrorKind::Server if self.code.as_deref() == Some("LOADING") => {
                Retry::After(Duration::from_millis(100))
            }
            ErrorKind::Config
            | ErrorKind::UnknownHost
            | ErrorKind::Auth
            | ErrorKind::Permission
            | ErrorKind::Shard
            | ErrorKind::Server
            | ErrorKind::Protocol
            | ErrorKind::Input
            | ErrorKind::Timeout => Retry::Never,
        }
    }

    /// Classifies an error from the `redis` crate, met while talking to `addr`.
    pub(crate) fn from_redis(addr: &str, error: &redis::RedisError) -> Self {
        // A failed command inside a pipeline (ASKING + command) carries its own code.
        let failed_in_pipeline = error
            .clone()
            .into_server_errors()
            .and_then(|items| items.first().map(|(_, item)| item.clone()));
        let code = match &failed_in_pipeline {
            Some(item) => Some(item.code().to_owned()),
            None => error.code().map(str::to_owned),
        };
        let detail = match &failed_in_pipeline {
            Some(item) => item.details().unwrap_or_default(),
            None => error.detail().unwrap_or_default(),
        };
        let text = match &code {
            Some(code) => format!("{code} {detail}"),
            None => error.to_string(),
        };
        let kind = match code.as_deref() {
            Some("KESTREL_LEAD") => ErrorKind::Lead,
            Some("KESTREL_NOSHARD") | Some("KESTREL_BADSHARD") => ErrorKind::Shard,
            Some(_) if text.contains("Logical shard ID out of range") => ErrorKind::Shard,
            // The module went away under a connection (a restart without it): find again.
            Some("ERR") if is_unknown_kestrel_command(detail) => ErrorKind::Topology,
            Some("WRONGPASS") | Some("NOAUTH") => ErrorKind::Auth,
            Some("NOPERM") => ErrorKind::Permission,
            Some("MOVED") | Some("ASK") | Some("READONLY") | Some("CLUSTERDOWN")
            | Some("TRYAGAIN") | Some("MASTERDOWN") => ErrorKind::Topology,
            Some(_) => ErrorKind::Server,
            None if error.kind() == redis::ErrorKind::AuthenticationFailed => ErrorKind::Auth,
            None if error.is_connection_refusal() => ErrorKind::ConnectionRefused,
            None if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() => {
                ErrorKind::Connection
            }
            None if matches!(
                error.kind(),
                redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
            ) =>
            {
                ErrorKind::Protocol
            }
            None => ErrorKind::Connection,
        };
        let wait = (kind == ErrorKind::Lead).then(|| lead_wait(detail));
        let message = match kind {
            ErrorKind::ConnectionRefused => format!("connection refused by {addr}: is Redis up?"),
            ErrorKind::Auth => {
                format!("{addr} refused the credentials ({text}); check the username and password")
            }
            _ => format!("{addr}: {text}"),
        };
        // "MOVED 3999 127.0.0.1:6381": the slot, then the node.
        let redirect = match code.as_deref() {
            Some("MOVED") | Some("ASK") => detail
                .split_whitespace()
                .nth(1)
                .and_then(|address| Address::parse(address).ok()),
            _ => None,
        };
        Self {
            kind,
            message,
            code,
            wait,
            redirect,
        }
    }

    /// A generator asks for a longer wait than the failover timeout has left: giving up at
    /// once rather than retrying until the timeout runs out.
    pub(crate) fn lead_too_long(
        waited: Duration,
        pause: Duration,
        timeout: Duration,
        last: &Error,
    ) -> Self {
        Self {
            code: last.code.clone(),
            ..Self::new(
                ErrorKind::Timeout,
                format!(
                    "gave up at once: the generator runs so far ahead of the server's clock that \
                     the next IDs need a wait of {} ms, more than the {} ms left of the {} ms \
                     failover timeout (was the server's clock set back?); last error: {last}",
                    pause.as_millis(),
                    timeout.saturating_sub(waited).as_millis(),
                    timeout.as_millis()
                ),
            )
        }
    }

    pub(crate) fn timeout(waited: Duration, last: &Error) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!(
                "gave up after {} ms; last error: {last}",
                waited.as_millis()
            ),
        )
    }
}

fn is_unknown_kestrel_command(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    detail.contains("unknown command") && detail.contains("kestrel.")
}

/// Reads the milliseconds to wait out of a `KESTREL_LEAD` message ("... retry in 12 ms").
fn lead_wait(detail: &str) -> Duration {
    let millis = detail
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[1].starts_with("ms"))
        .filter_map(|pair| pair[0].parse::<u64>().ok())
        .next_back()
        .unwrap_or(1);
    // No ceiling: a wait longer than the failover timeout is the caller's cue to give up.
    Duration::from_millis(millis.max(1))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> redis::RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn server_codes_are_classified() {
        let cases = [
            (
                "KESTREL_LEAD",
                "wait please; retry in 12 ms",
                ErrorKind::Lead,
            ),
            ("KESTREL_NOSHARD", "no shard", ErrorKind::Shard),
            ("ERR", "Logical shard ID out of range: x", ErrorKind::Shard),
            (
                "WRONGPASS",
                "invalid username-password pair",
                ErrorKind::Auth,
            ),
            ("NOPERM", "no permission", ErrorKind::Permission),
            ("MOVED", "12 127.0.0.1:7000", ErrorKind::Topology),
            (
                "READONLY",
                "You can't write against a read only replica.",
                ErrorKind::Topology,
            ),
            ("KESTREL_SYNTAX", "bad", ErrorKind::Server),
            (
                "ERR",
                "unknown command 'KESTREL.ID', with args",
                ErrorKind::Topology,
            ),
            ("ERR", "unknown command 'FOO', with args", ErrorKind::Server),
        ];
        for (code, detail, kind) in cases {
            let error = Error::from_redis("127.0.0.1:1", &server_error(code, detail));

            assert_eq!(error.kind(), kind, "{code}");
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let lead = Error::from_redis("a", &server_error("KESTREL_LEAD", "retry in 12 ms"));
        let moved = Error::from_redis("a", &server_error("MOVED", "1 b:1"));
        let auth = Error::from_redis("a", &server_error("WRONGPASS", "no"));

        assert_eq!(lead.retry(), Retry::After(Duration::from_millis(12)));
        assert_eq!(moved.retry(), Retry::Rediscover);
        assert_eq!(moved.redirect(), Some(&Address::new("b", 1)));
        assert_eq!(auth.retry(), Retry::Never);
        assert!(!Error::input("zero").is_retryable());
    }

    #[test]
    fn lead_wait_reads_the_last_number_before_ms() {
        assert_eq!(
            lead_wait("ahead by 5012 ms; retry in 12 ms"),
            Duration::from_millis(12)
        );
        assert_eq!(lead_wait("no number"), Duration::from_millis(1));
        assert_eq!(lead_wait("retry in 0 ms"), Duration::from_millis(1));
        assert_eq!(
            lead_wait("retry in 3598945 ms"),
            Duration::from_millis(3_598_945)
        );
    }
}
