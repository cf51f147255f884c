//! Lifecycle events, like the original library's: logged through `tracing` and sent to every
//! subscriber of [`crate::Kestrel::events`].

use std::fmt;

use tokio::sync::broadcast;

/// Something that happened to the client's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection to a node is ready; `module` says which path it uses.
    Connected { address: String, module: bool },
    /// A call failed on a connection, and the client looks for the server(s) again.
    Reconnecting { reason: String },
    /// Sentinel named a new master.
    NewMaster { previous: String, current: String },
    /// The Lua script was loaded on a node (first use, after SCRIPT FLUSH or a failover).
    ScriptLoaded { address: String },
    /// A master joined the cluster plan.
    NodeAdded { address: String },
    /// A master left the cluster plan.
    NodeRemoved { address: String },
    /// A failure the client handled or is about to return.
    Error { message: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected { address, module } => {
                let path = if *module { "module" } else { "script" };
                write!(f, "connected to {address} ({path})")
            }
            Self::Reconnecting { reason } => write!(f, "reconnecting: {reason}"),
            Self::NewMaster { previous, current } => {
                write!(f, "new master {current} (was {previous})")
            }
            Self::ScriptLoaded { address } => write!(f, "script loaded on {address}"),
            Self::NodeAdded { address } => write!(f, "node added: {address}"),
            Self::NodeRemoved { address } => write!(f, "node removed: {address}"),
            Self::Error { message } => write!(f, "error: {message}"),
        }
    }
}

/// Sends events to tracing and to subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    sender: broadcast::Sender<Event>,
}

impl Events {
    pub(crate) fn new() -> Self {
        let (sender, _) = broadcast::channel(256);
        Self { sender }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        match &event {
            Event::Error { .. } | Event::Reconnecting { .. } => tracing::warn!(%event, "kestrel"),
            Event::ScriptLoaded { .. } => tracing::debug!(%event, "kestrel"),
            _ => tracing::info!(%event, "kestrel"),
        }
        // Nobody listening is normal; the event has been logged.
        let _ = self.sender.send(event);
    }
}
