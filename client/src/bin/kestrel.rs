//! `kestrel`: get, decode and benchmark Kestrel IDs from the command line.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use kestrel_client::{Address, Config, Id, Kestrel, Path};
use tracing_subscriber::filter::LevelFilter;

#[derive(Parser)]
#[command(
    name = "kestrel",
    version,
    about = "Unique, time-ordered 64-bit IDs from Redis"
)]
struct Cli {
    #[command(flatten)]
    connection: Connection,

    /// More log lines on stderr (-v: connections, -vv: internals).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Connection {
    /// A standalone server: `redis://[user:password@]host:port[/db]`, or rediss:// for TLS.
    /// Without it: REDIS_HOST and REDIS_PORT, then redis://127.0.0.1:6379.
    #[arg(long, env = "REDIS_URL", global = true)]
    url: Option<String>,

    /// Sentinels to find the master through: HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "REDIS_SENTINELS", global = true, requires = "master")]
    sentinel: Option<String>,

    /// The master's name in the sentinels' configuration.
    #[arg(long, env = "REDIS_SENTINEL_NAME", global = true)]
    master: Option<String>,

    /// Cluster seed nodes: HOST:PORT[,HOST:PORT...].
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        global = true,
        conflicts_with = "sentinel"
    )]
    cluster: Option<String>,

    /// ACL username.
    #[arg(long, env = "REDIS_USERNAME", global = true)]
    username: Option<String>,

    /// Password.
    #[arg(long, env = "REDIS_PASSWORD", global = true, hide_env_values = true)]
    password: Option<String>,

    /// For rediss://: a PEM file with the CA certificate to trust instead of the system's.
    #[arg(long, env = "REDIS_TLS_CA_FILE", global = true)]
    tls_ca: Option<std::path::PathBuf>,

    /// The generator name (Cluster: the prefix of the per-master names).
    #[arg(long, env = "KESTREL_GENERATOR", global = true)]
    generator: Option<String>,

    /// The shard id to set up where none is stored (standalone and Sentinel).
    #[arg(long, env = "KESTREL_SHARD_ID", global = true)]
    shard_id: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Print one ID.
    Id,
    /// Print N IDs, one a line.
    Ids {
        /// How many.
        count: usize,
        /// int: one number a line; string: one quoted number a line; json: an array of strings.
        #[arg(long, value_enum, default_value_t = Format::Int)]
        format: Format,
    },
    /// Show what IDs are made of: time, shard id, sequence. Needs no server.
    Decode {
        /// IDs as decimal numbers.
        #[arg(required = true)]
        ids: Vec<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set up shard ids (every master in a cluster) and print the plan.
    Setup,
    /// Print each generator's state: address, role, module or script, shard id, last ms, lead.
    Status,
    /// Measure IDs per second from the module and from the script on the same server(s).
    Bench {
        /// Seconds per pattern.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// IDs per call in the batched pattern.
        #[arg(long, default_value_t = 100)]
        batch: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Int,
    String,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kestrel: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kestrel: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Decode { ids, json } => decode(&ids, json, &mut out),
        Command::Id => {
            let kestrel = connect(&cli.connection, false).await?;
            let id = kestrel.get_id().await.map_err(text)?;
            writeln!(out, "{id}").map_err(text)
        }
        Command::Ids { count, format } => {
            let kestrel = connect(&cli.connection, false).await?;
            let ids = kestrel.get_ids(count).await.map_err(text)?;
            print_ids(&ids, format, &mut out).map_err(text)
        }
        Command::Setup => {
            let kestrel = connect(&cli.connection, false).await?;
            let plan = kestrel.plan().await.map_err(text)?;
            let mut rows = vec![row(["address", "generator", "shard id", "path"])];
            for entry in plan {
                rows.push(row([
                    entry.address.to_string(),
                    entry.generator,
                    entry.shard_id.to_string(),
                    entry.path.name().to_owned(),
                ]));
            }
            print_table(&rows, &mut out).map_err(text)
        }
        Command::Status => {
            let kestrel = connect(&cli.connection, false).await?;
            let statuses = kestrel.status().await.map_err(text)?;
            let mut rows = vec![row([
                "address",
                "role",
                "path",
                "generator",
                "shard id",
                "last ms",
                "lead ms",
            ])];
            let shown = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
            for status in statuses {
                rows.push(row([
                    status.address.to_string(),
                    status.role,
                    status.path.name().to_owned(),
                    status.generator,
                    shown(status.shard_id.map(|shard| shard.to_string())),
                    shown(status.last_ms.map(|ms| ms.to_string())),
                    shown(status.lead_ms.map(|ms| ms.to_string())),
                ]));
            }
            print_table(&rows, &mut out).map_err(text)
        }
        Command::Bench { seconds, batch } => {
            if !(seconds > 0.0 && seconds <= 600.0) {
                return Err("--seconds must be above 0 and at most 600".to_owned());
            }
            if batch == 0 {
                return Err("--batch must be at least 1".to_owned());
            }
            bench(
                &cli.connection,
                Duration::from_secs_f64(seconds),
                batch,
                &mut out,
            )
            .await
        }
    }
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

async fn connect(flags: &Connection, script_only: bool) -> Result<Kestrel, String> {
    let config = config(flags, script_only)?;
    Kestrel::connect(config).await.map_err(text)
}

fn config(flags: &Connection, script_only: bool) -> Result<Config, String> {
    let mut builder = Config::builder().script_only(script_only);
    if let Some(url) = &flags.url {
        builder = builder.url(url);
    }
    if let (Some(sentinels), Some(master)) = (&flags.sentinel, &flags.master) {
        builder = builder.sentinel(Address::parse_list(sentinels).map_err(text)?, master);
    }
    if let Some(nodes) = &flags.cluster {
        builder = builder.cluster(Address::parse_list(nodes).map_err(text)?);
    }
    if let Some(username) = &flags.username {
        builder = builder.username(username);
    }
    if let Some(password) = &flags.password {
        builder = builder.password(password);
    }
    if let Some(path) = &flags.tls_ca {
        let pem =
            std::fs::read(path).map_err(|error| format!("--tls-ca {}: {error}", path.display()))?;
        builder = builder.tls_root_certificate(pem);
    }
    if let Some(generator) = &flags.generator {
        builder = builder.generator(generator);
    }
    if let Some(shard_id) = flags.shard_id {
        builder = builder.shard_id(shard_id);
    }
    builder.build().map_err(text)
}

fn print_ids(ids: &[Id], format: Format, out: &mut impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    match format {
        Format::Int => ids.iter().try_for_each(|id| writeln!(out, "{id}"))?,
        Format::String => ids.iter().try_for_each(|id| writeln!(out, "\"{id}\""))?,
        Format::Json => {
            let items: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
            writeln!(out, "[{}]", items.join(","))?;
        }
    }
    out.flush()
}

fn decode(texts: &[String], json: bool, out: &mut impl Write) -> Result<(), String> {
    let ids = texts
        .iter()
        .map(|text| {
            text.parse::<Id>()
                .map_err(|error| format!("{text:?} is not an ID: {error}"))
        })
        .collect::<Result<Vec<Id>, String>>()?;
    if json {
        let items: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    "{{\"id\":\"{id}\",\"unix_ms\":{},\"time\":\"{}\",\"shard_id\":{},\
                     \"sequence\":{}}}",
                    id.unix_ms(),
                    utc_time(id.unix_ms()),
                    id.shard_id(),
                    id.sequence()
                )
            })
            .collect();
        return writeln!(out, "[{}]", items.join(",")).map_err(text);
    }
    let mut rows = vec![row(["id", "time (UTC)", "unix ms", "shard id", "sequence"])];
    for id in ids {
        rows.push(row([
            id.to_string(),
            utc_time(id.unix_ms()),
            id.unix_ms().to_string(),
            id.shard_id().to_string(),
            id.sequence().to_string(),
        ]));
    }
    print_table(&rows, out).map_err(text)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian calendar).
fn utc_time(unix_ms: u64) -> String {
    let days = unix_ms / 86_400_000;
    let of_day = unix_ms % 86_400_000;
    // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000
    )
}

fn row<const N: usize>(cells: [impl Into<String>; N]) -> Vec<String> {
    cells.into_iter().map(Into::into).collect()
}

fn print_table(rows: &[Vec<String>], out: &mut impl Write) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// One measured pattern.
struct Measure {
    path: Path,
    per_call: u64,
    calls: u64,
    ids: u64,
    elapsed: Duration,
}

async fn bench(
    flags: &Connection,
    each: Duration,
    batch: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let auto = connect(flags, false).await?;
    let script = connect(flags, true).await?;
    let has_module = auto
        .plan()
        .await
        .map_err(text)?
        .iter()
        .any(|entry| entry.path == Path::Module);

    let mut clients = Vec::new();
    if has_module {
        clients.push((Path::Module, &auto));
    } else {
        tracing::warn!("no server in the plan has the module loaded; measuring the script only");
    }
    clients.push((Path::Script, &script));

    let total = each * (clients.len() as u32 * 2);
    let started = Instant::now();
    let mut results = Vec::new();
    for (path, client) in clients {
        for per_call in [1, batch] {
            let label = format!("{} x{per_call}", path.name());
            let measure = run_pattern(client, path, per_call, each, started, total, &label).await?;
            results.push(measure);
        }
    }
    eprintln!();

    let mut rows = vec![row([
        "path",
        "IDs per call",
        "calls",
        "IDs",
        "seconds",
        "IDs/s",
    ])];
    for measure in &results {
        let seconds = measure.elapsed.as_secs_f64();
        rows.push(row([
            measure.path.name().to_owned(),
            measure.per_call.to_string(),
            measure.calls.to_string(),
            measure.ids.to_string(),
            format!("{seconds:.2}"),
            format!("{:.0}", measure.ids as f64 / seconds.max(f64::EPSILON)),
        ]));
    }
    print_table(&rows, out).map_err(text)
}

async fn run_pattern(
    client: &Kestrel,
    path: Path,
    per_call: u64,
    each: Duration,
    bench_started: Instant,
    bench_total: Duration,
    label: &str,
) -> Result<Measure, String> {
    let started = Instant::now();
    let mut calls = 0u64;
    let mut ids = 0u64;
    let mut shown = Instant::now();
    while started.elapsed() < each {
        // Sequential calls, as an application would make them one after another.
        if per_call == 1 {
            client.get_id().await.map_err(text)?;
            ids += 1;
        } else {
            ids += client.get_ids(per_call as usize).await.map_err(text)?.len() as u64;
        }
        calls += 1;
        if shown.elapsed() >= Duration::from_millis(100) {
            progress(bench_started.elapsed(), bench_total, label);
            shown = Instant::now();
        }
    }
    progress(bench_started.elapsed(), bench_total, label);
    Ok(Measure {
        path,
        per_call,
        calls,
        ids,
        elapsed: started.elapsed(),
    })
}

fn progress(done: Duration, total: Duration, label: &str) {
    const WIDTH: usize = 30;
    let fraction = (done.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0);
    let filled = (fraction * WIDTH as f64).round() as usize;
    eprint!(
        "\r[{}{}] {:>3.0}% {label:<16}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        fraction * 100.0
    );
    // A progress line that fails to show is not worth failing the benchmark for.
    let _ = io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_matches_the_contract_example() {
        assert_eq!(utc_time(1_796_397_602_047), "2026-12-04T15:20:02.047Z");
        assert_eq!(utc_time(1_451_566_800_000), "2015-12-31T13:00:00.000Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn decode_prints_a_table_and_json() {
        let mut table = Vec::new();
        let mut json = Vec::new();
        decode(&["1446325212348944384".to_owned()], false, &mut table).unwrap();
        decode(&["1446325212348944384".to_owned()], true, &mut json).unwrap();

        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("2026-12-04T15:20:02.047Z"));
        assert_eq!(
            String::from_utf8(json).unwrap().trim(),
            "[{\"id\":\"1446325212348944384\",\"unix_ms\":1796397602047,\
             \"time\":\"2026-12-04T15:20:02.047Z\",\"shard_id\":1,\"sequence\":0}]"
        );
        assert!(decode(&["x".to_owned()], false, &mut Vec::new()).is_err());
    }

    #[test]
    fn flags_parse_and_bad_ones_are_usage_errors() {
        let cli = Cli::try_parse_from(["kestrel", "ids", "5", "--format", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ids {
                count: 5,
                format: Format::Json
            }
        ));

        let bad = Cli::try_parse_from(["kestrel", "ids", "five"])
            .err()
            .unwrap();
        assert_eq!(bad.exit_code(), 2);
    }
}
