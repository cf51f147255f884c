//! What the topology tests share: a background generator that records every ID and every
//! failed call, and the checks on what it recorded.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use kestrel_client::{Config, ConfigBuilder, Event, Id, Kestrel};

/// The longest any background generation runs, whatever the test does.
pub const MAX_RUN: Duration = Duration::from_secs(120);

/// What a background generator saw.
pub struct Run {
    pub ids: Vec<Id>,
    pub calls: u64,
    pub failures: Vec<String>,
    pub events: Vec<Event>,
}

impl Run {
    /// Every call answered, and no ID twice.
    pub fn assert_clean(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} calls failed, first: {}",
            self.failures.len(),
            self.calls,
            self.failures[0]
        );
        let unique: HashSet<Id> = self.ids.iter().copied().collect();
        assert_eq!(unique.len(), self.ids.len(), "duplicate IDs across the run");
        assert!(self.calls > 0, "no call was made");
    }

    /// The shard ids seen in the IDs.
    pub fn shard_ids(&self) -> HashSet<u16> {
        self.ids.iter().map(|id| id.shard_id()).collect()
    }
}

/// One runtime for every test in a binary, so that connections made in one call live on
/// into the next.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

/// Runs a future to completion on the shared runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// Generates IDs without pause (alternating single IDs and batches of 50) on the shared
/// runtime until stopped.
pub struct Generator {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Run>,
}

impl Generator {
    pub fn start(kestrel: Kestrel) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_test_writer()
            .try_init();
        let stop = Arc::new(AtomicBool::new(false));
        let task = RUNTIME.spawn(generate(kestrel, stop.clone()));
        Self { stop, task }
    }

    /// Lets it run a little longer, then stops it and returns what it saw.
    pub fn finish(self, after: Duration) -> Run {
        std::thread::sleep(after);
        self.stop.store(true, Ordering::Relaxed);
        RUNTIME.block_on(self.task).unwrap()
    }
}

async fn generate(kestrel: Kestrel, stop: Arc<AtomicBool>) -> Run {
    let mut events = kestrel.events();
    let started = Instant::now();
    let mut run = Run {
        ids: Vec::new(),
        calls: 0,
        failures: Vec::new(),
        events: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_RUN {
        let result = if run.calls % 2 == 0 {
            kestrel.get_id().await.map(|id| vec![id])
        } else {
            kestrel.get_ids(50).await
        };
        run.calls += 1;
        match result {
            Ok(ids) => run.ids.extend(ids),
            Err(error) => run.failures.push(error.to_string()),
        }
        while let Ok(event) = events.try_recv() {
            run.events.push(event);
        }
    }
    run
}

/// A builder that ignores the environment, with test-sized timeouts.
pub fn config() -> ConfigBuilder {
    Config::builder()
        .without_env()
        .failover_timeout(Duration::from_secs(45))
}
