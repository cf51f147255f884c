//! `kestrel`: get, decode and benchmark Kestrel IDs from the command line.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use kestrel_client::{Address, Config, ErrorKind, Id, Kestrel, Path};
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

    /// The generator name (Cluster: the prefix of the per-master names); non-empty, without
    /// `{` or `}`.
    #[arg(long, env = "KESTREL_GENERATOR", global = true, value_parser = parse_generator)]
    generator: Option<String>,

    /// The shard id to set up where none is stored (standalone and Sentinel), 1 to 1023.
    #[arg(
        long,
        env = "KESTREL_SHARD_ID",
        global = true,
        value_parser = clap::value_parser!(i64).range(MIN_SHARD_ID..=MAX_SHARD_ID)
    )]
    shard_id: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Print one ID.
    Id,
    /// Print N IDs, one a line.
    Ids {
        /// How many, at least 1.
        #[arg(
            allow_negative_numbers = true,
            value_parser = parse_at_least_one::<usize>
        )]
        count: usize,
        /// int: one decimal number a line; string: one JSON string a line (the number in
        /// double quotes); json: one JSON array of strings.
        #[arg(long, value_enum, default_value_t = Format::Int)]
        format: Format,
    },
    /// Show what IDs are made of: time, shard id, sequence. Needs no server.
    Decode {
        /// IDs as decimal numbers.
        #[arg(required = true, allow_negative_numbers = true, value_parser = parse_id)]
        ids: Vec<Id>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set up shard ids (every master in a cluster) and print the plan.
    Setup,
    /// Print each generator's state: address, role, module or script, shard id, last ms, lead.
    Status,
    /// Measure IDs per second from the module and from the script on the same server(s).
    ///
    /// The benchmark never touches the generator that `id` and `ids` use: it takes its IDs
    /// from two generators of its own, GENERATOR-bench-module and GENERATOR-bench-script
    /// (GENERATOR is --generator, `kestrel` by default), and throws them away. Their state
    /// keys ({NAME}-shard-id, {NAME}-generator-lock, {NAME}-generator-sequence) stay behind.
    /// Their shard id is --shard-id, else 1023 (the module refuses a shard id another
    /// generator on the server uses); in a cluster each master gets a bench generator with a
    /// shard id of its own, as `setup` would give it. An ACL user needs key patterns that
    /// allow those names.
    #[command(verbatim_doc_comment)]
    Bench {
        /// Seconds per pattern, above 0 and at most 600.
        #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
        seconds: f64,
        /// IDs per call in the batched pattern, at least 1.
        #[arg(long, default_value_t = 100, value_parser = parse_at_least_one::<u64>)]
        batch: u64,
    },
}

const MIN_SHARD_ID: i64 = kestrel_core::MIN_SHARD_ID as i64;
const MAX_SHARD_ID: i64 = kestrel_core::MAX_SHARD_ID as i64;

fn parse_id(text: &str) -> Result<Id, String> {
    text.parse::<Id>()
        .map_err(|error| format!("not an ID: {error}"))
}

fn parse_at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(
    text: &str,
) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(number) if number >= T::from(1) => Ok(number),
        _ => Err("expected a whole number, at least 1".to_owned()),
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 600.0 => Ok(seconds),
        Ok(_) => Err("must be above 0 and at most 600".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Int,
    String,
    Json,
}

fn parse_generator(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(['{', '}']) {
        return Err("a generator name is non-empty and holds no '{' or '}'".to_owned());
    }
    Ok(name.to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Without -v, a failure is the one line `main` prints, not also the client's warnings.
    let level = match cli.verbose {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
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
    connect_to(config(flags, script_only)?).await
}

async fn connect_to(config: Config) -> Result<Kestrel, String> {
    let generator = config.generator().to_owned();
    Kestrel::connect(config).await.map_err(|error| {
        if error.kind() == ErrorKind::Permission {
            format!(
                "{error} (the user's ACL key patterns must allow the generator {generator:?}: \
                 ~{generator} for the module, ~{{{generator}}}-* for the script; choose another \
                 with --generator or KESTREL_GENERATOR)"
            )
        } else {
            error.to_string()
        }
    })
}

fn config(flags: &Connection, script_only: bool) -> Result<Config, String> {
    config_for(flags, script_only, None, None)
}

/// The configuration from the flags, with `generator` in place of the configured one.
fn config_for(
    flags: &Connection,
    script_only: bool,
    generator: Option<&str>,
    shard_id: Option<i64>,
) -> Result<Config, String> {
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
    if let Some(generator) = generator.or(flags.generator.as_deref()) {
        builder = builder.generator(generator);
    }
    if let Some(shard_id) = flags.shard_id.or(shard_id) {
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

fn decode(ids: &[Id], json: bool, out: &mut impl Write) -> Result<(), String> {
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
    for id in ids.iter() {
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

/// The shard id of the benchmark's generators unless `--shard-id` says otherwise: the last
/// one, the least likely to belong to a real generator.
const BENCH_SHARD_ID: i64 = 1023;

async fn bench(
    flags: &Connection,
    each: Duration,
    batch: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    // Generators of the benchmark's own, so that the real one keeps its state untouched.
    let base = config(flags, false)?.generator().to_owned();
    let module_generator = format!("{base}-bench-module");
    let script_generator = format!("{base}-bench-script");
    // Never the shard id of a real generator (KESTREL_SHARD_ID included): the module refuses
    // a second generator with a shard id in use on the server.
    let shard_id = Some(BENCH_SHARD_ID);
    let auto = connect_to(config_for(flags, false, Some(&module_generator), shard_id)?).await?;
    let script = connect_to(config_for(flags, true, Some(&script_generator), shard_id)?).await?;
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
        eprintln!(
            "kestrel: no server in the plan has the module loaded; measuring the script only"
        );
    }
    clients.push((Path::Script, &script));

    let total = each * (clients.len() as u32 * 2);
    let show_progress = io::stderr().is_terminal();
    let started = Instant::now();
    let mut results = Vec::new();
    for (path, client) in clients {
        for per_call in [1, batch] {
            let label = format!("{} x{per_call}", path.name());
            let progress = show_progress.then_some(Progress {
                started,
                total,
                label: &label,
            });
            results.push(run_pattern(client, path, per_call, each, progress).await?);
        }
    }
    if show_progress {
        eprintln!();
    }

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

/// The progress line on a terminal: where the whole benchmark is, and the pattern running.
struct Progress<'a> {
    started: Instant,
    total: Duration,
    label: &'a str,
}

async fn run_pattern(
    client: &Kestrel,
    path: Path,
    per_call: u64,
    each: Duration,
    progress: Option<Progress<'_>>,
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
        if let Some(progress) = &progress {
            if shown.elapsed() >= Duration::from_millis(100) {
                progress.show();
                shown = Instant::now();
            }
        }
    }
    if let Some(progress) = &progress {
        progress.show();
    }
    Ok(Measure {
        path,
        per_call,
        calls,
        ids,
        elapsed: started.elapsed(),
    })
}

impl Progress<'_> {
    /// Redraws the line in place (`\r`), which only a terminal shows as meant.
    fn show(&self) {
        const WIDTH: usize = 30;
        let done = self.started.elapsed().as_secs_f64();
        let fraction = (done / self.total.as_secs_f64()).clamp(0.0, 1.0);
        let filled = (fraction * WIDTH as f64).round() as usize;
        eprint!(
            "\r[{}{}] {:>3.0}% {:<16}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            fraction * 100.0,
            self.label
        );
        // A progress line that fails to show is not worth failing the benchmark for.
        let _ = io::stderr().flush();
    }
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
        let id = parse_id("1446325212348944384").unwrap();
        let mut table = Vec::new();
        let mut json = Vec::new();
        decode(&[id], false, &mut table).unwrap();
        decode(&[id], true, &mut json).unwrap();

        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("2026-12-04T15:20:02.047Z"));
        assert_eq!(
            String::from_utf8(json).unwrap().trim(),
            "[{\"id\":\"1446325212348944384\",\"unix_ms\":1796397602047,\
             \"time\":\"2026-12-04T15:20:02.047Z\",\"shard_id\":1,\"sequence\":0}]"
        );
        assert!(parse_id("x").is_err());
        assert!(parse_id("-1").is_err());
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

        let bad = [
            &["kestrel", "ids", "five"][..],
            &["kestrel", "ids", "0"],
            &["kestrel", "ids", "-1"],
            &["kestrel", "decode", "abc"],
            &["kestrel", "decode", "-1"],
            &["kestrel", "--shard-id", "5000", "id"],
            &["kestrel", "--shard-id", "0", "id"],
            &["kestrel", "bench", "--batch", "0"],
            &["kestrel", "bench", "--seconds", "0"],
        ];
        for args in bad {
            let error = Cli::try_parse_from(args).err().unwrap();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        let negative = Cli::try_parse_from(["kestrel", "decode", "-1"])
            .err()
            .unwrap();
        assert!(negative.to_string().contains("not an ID"), "{negative}");
        let shard = Cli::try_parse_from(["kestrel", "id", "--shard-id", "1023"]).unwrap();
        assert_eq!(shard.connection.shard_id, Some(1023));
    }
}
