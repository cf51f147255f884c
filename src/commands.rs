//! The command handlers. Each reads: check arity, parse arguments, load state and call the
//! core (in `generators`), store state, reply.

use std::mem::ManuallyDrop;
use std::os::raw::c_long;
use std::sync::atomic::{AtomicBool, Ordering};

use kestrel_core::{parse_decimal_i64, Id, Issue};
use redis_module::{raw, AclPermissions, Context, RedisString};

use crate::error::{quote, KestrelError, IDS_USAGE, ID_USAGE, STATUS_USAGE};
use crate::{clock, config, generators, stats};

/// The generator used when a command names none.
pub const DEFAULT_GENERATOR: &[u8] = b"kestrel";

/// Whether the server runs in cluster mode; read once at load.
pub static CLUSTER_MODE: AtomicBool = AtomicBool::new(false);
/// Whether the server is a replica; kept up to date by the role-change event.
pub static REPLICA: AtomicBool = AtomicBool::new(false);

/// How IDs are written in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Int,
    String,
    Ranges,
}

const FORMATS: [(&[u8], Format); 3] = [
    (b"INT", Format::Int),
    (b"STRING", Format::String),
    (b"RANGES", Format::Ranges),
];

/// The options every generating command shares.
struct Options<'a> {
    generator: &'a [u8],
    named: bool,
    format: Format,
}

/// `KESTREL.ID [GENERATOR <name>] [FORMAT INT|STRING]`
pub fn id(ctx: &Context, args: &[&[u8]]) -> Result<(), KestrelError> {
    if ctx.is_keys_position_request() {
        report_generator_key(ctx, args, 1);
        return Ok(());
    }

    let options = parse_options(
        args.get(1..).unwrap_or(&[]),
        ID_USAGE,
        &[Format::Int, Format::String],
    )?;
    check_can_generate(ctx, &options)?;

    let issue = issue(ctx, options.generator, 1)?;

    reply_id(ctx, issue.batch.first_id(), options.format);
    Ok(())
}

/// `KESTREL.IDS <count> [GENERATOR <name>] [FORMAT INT|STRING|RANGES]`
pub fn ids(ctx: &Context, args: &[&[u8]]) -> Result<(), KestrelError> {
    if ctx.is_keys_position_request() {
        report_generator_key(ctx, args, 2);
        return Ok(());
    }
    if args.len() < 2 {
        return Err(KestrelError::Arity);
    }

    let count = parse_count(args[1])?;
    let formats = [Format::Int, Format::String, Format::Ranges];
    let options = parse_options(&args[2..], IDS_USAGE, &formats)?;
    check_can_generate(ctx, &options)?;

    let issue = issue(ctx, options.generator, count)?;

    reply_batch(ctx, &issue, options.format);
    Ok(())
}

/// `KESTREL.DECODE <id> [<id> ...]`
pub fn decode(ctx: &Context, args: &[&[u8]]) -> Result<(), KestrelError> {
    if args.len() < 2 {
        return Err(KestrelError::Arity);
    }

    let ids = args[1..]
        .iter()
        .map(|&text| {
            let value = parse_decimal_i64(text).ok_or_else(|| bad_id(text))?;
            Id::from_i64(value).map_err(|_| bad_id(text))
        })
        .collect::<Result<Vec<_>, _>>()?;

    reply_array(ctx, ids.len());
    for id in ids {
        reply_array(ctx, 3);
        reply_integer(ctx, id.unix_ms() as i64);
        reply_integer(ctx, id.shard_id().into());
        reply_integer(ctx, id.sequence().into());
    }
    Ok(())
}

/// `KESTREL.STATUS [GENERATOR <name>]`
pub fn status(ctx: &Context, args: &[&[u8]]) -> Result<(), KestrelError> {
    if ctx.is_keys_position_request() {
        report_generator_key(ctx, args, 1);
        return Ok(());
    }

    let options = parse_options(args.get(1..).unwrap_or(&[]), STATUS_USAGE, &[])?;
    check_unnamed(ctx, &options, AclPermissions::ACCESS)?;

    let snapshot = generators::snapshot(ctx, options.generator)?;
    let now_ms = clock::now_ms();

    let lead_ms = snapshot.last.unix_ms().saturating_sub(now_ms);
    reply_array(ctx, 16);
    reply_text(ctx, "generator");
    reply_bytes(ctx, options.generator);
    reply_text(ctx, "shard-id");
    match snapshot.shard {
        Some(shard) => reply_integer(ctx, shard.get().into()),
        None => reply_null(ctx),
    }
    let fields = [
        ("last-ms", snapshot.last.unix_ms()),
        ("last-sequence", snapshot.last.sequence().into()),
        ("reserved-ms", snapshot.reserved.unix_ms()),
        ("lead-ms", lead_ms),
        ("clock-ms", now_ms),
    ];
    for (name, value) in fields {
        reply_text(ctx, name);
        reply_integer(ctx, i64::try_from(value).unwrap_or(i64::MAX));
    }
    reply_text(ctx, "source");
    reply_text(ctx, if snapshot.in_memory { "memory" } else { "keys" });
    Ok(())
}

fn issue(ctx: &Context, generator: &[u8], count: u64) -> Result<Issue, KestrelError> {
    let settings = config::settings();
    let now_ms = clock::now_ms();
    let issue = generators::issue(ctx, generator, now_ms, count, &settings)?;

    stats::CALLS.add(1);
    stats::IDS_ISSUED.add(count);
    stats::MS_BORROWED.add(issue.borrowed_ms);
    stats::MAX_LEAD_MS.raise_to(issue.lead_ms);
    if issue.clock_stepped_back {
        stats::CLOCK_STEPS_BACK.add(1);
    }
    Ok(issue)
}

fn check_can_generate(ctx: &Context, options: &Options) -> Result<(), KestrelError> {
    if REPLICA.load(Ordering::Relaxed) {
        return Err(KestrelError::Replica);
    }
    let write = AclPermissions::ACCESS | AclPermissions::UPDATE | AclPermissions::INSERT;
    check_unnamed(ctx, options, write)
}

/// A command without `GENERATOR` declares no key: in a cluster it cannot be routed, and the
/// user's key patterns must be checked here.
fn check_unnamed(
    ctx: &Context,
    options: &Options,
    permissions: AclPermissions,
) -> Result<(), KestrelError> {
    if options.named {
        return Ok(());
    }
    if CLUSTER_MODE.load(Ordering::Relaxed) {
        return Err(KestrelError::ClusterNeedsName);
    }
    check_key_permission(ctx, options.generator, permissions)
}

/// Redis checks the key patterns of a user against the declared key, `GENERATOR <name>`.
/// Without it the command declares no key, so the module checks the default generator's name
/// itself: a user limited to other generators must not reach this one.
fn check_key_permission(
    ctx: &Context,
    generator: &[u8],
    permissions: AclPermissions,
) -> Result<(), KestrelError> {
    // SAFETY: ctx is the live context of this command call; the name returned is owned by
    // us and freed when `user` drops. Clients without a user (AOF loading, the master's link)
    // get NULL and are not restricted.
    let user = unsafe { raw::RedisModule_GetCurrentUserName.map(|current| current(ctx.ctx)) };
    let Some(user) = user.filter(|user| !user.is_null()) else {
        return Ok(());
    };
    let user = RedisString::from_redis_module_string(std::ptr::null_mut(), user);
    let allowed = with_key_name(generator, |key| {
        ctx.acl_check_key_permission(&user, key, &permissions)
    });
    allowed.map_err(|_| KestrelError::NoPermission {
        generator: quote(generator),
    })
}

thread_local! {
    // The default generator's name as a Redis string, made once: the permission check runs
    // on every call without GENERATOR. Never freed, like the module itself.
    static DEFAULT_KEY: ManuallyDrop<RedisString> =
        ManuallyDrop::new(RedisString::create_from_slice(std::ptr::null_mut(), DEFAULT_GENERATOR));
}

/// Runs `check` with `generator` as a Redis string, reusing the one made for the default.
fn with_key_name<T>(generator: &[u8], check: impl FnOnce(&RedisString) -> T) -> T {
    if generator == DEFAULT_GENERATOR {
        return DEFAULT_KEY.with(|key| check(key));
    }
    check(&RedisString::create_from_slice(
        std::ptr::null_mut(),
        generator,
    ))
}

fn parse_count(text: &[u8]) -> Result<u64, KestrelError> {
    let max = config::get(&config::MAX_BATCH);
    match parse_decimal_i64(text) {
        Some(count) if (1..=max).contains(&count) => Ok(count.unsigned_abs()),
        _ => Err(KestrelError::BadCount {
            given: quote(text),
            max,
        }),
    }
}

/// Parses `[GENERATOR <name>] [FORMAT <format>]` in any order, each at most once.
fn parse_options<'a>(
    args: &'a [&'a [u8]],
    usage: &'static str,
    formats: &[Format],
) -> Result<Options<'a>, KestrelError> {
    let syntax = |problem: String| KestrelError::Syntax { usage, problem };
    let mut generator = None;
    let mut format = None;

    let mut rest = args.iter().copied();
    while let Some(option) = rest.next() {
        let is_generator = option.eq_ignore_ascii_case(b"GENERATOR");
        let is_format = option.eq_ignore_ascii_case(b"FORMAT") && !formats.is_empty();
        if !is_generator && !is_format {
            return Err(syntax(format!("unknown option '{}'", quote(option))));
        }
        if is_generator && generator.is_some() || is_format && format.is_some() {
            return Err(syntax(format!("option '{}' given twice", quote(option))));
        }
        let value = rest
            .next()
            .ok_or_else(|| syntax(format!("option '{}' needs a value", quote(option))))?;

        if is_generator {
            generator = Some(parse_generator_name(value)?);
        } else {
            let chosen = FORMATS
                .iter()
                .find(|(name, format)| value.eq_ignore_ascii_case(name) && formats.contains(format))
                .ok_or_else(|| syntax(format!("unknown format '{}'", quote(value))))?;
            format = Some(chosen.1);
        }
    }

    Ok(Options {
        generator: generator.unwrap_or(DEFAULT_GENERATOR),
        named: generator.is_some(),
        format: format.unwrap_or(Format::Int),
    })
}

fn parse_generator_name(name: &[u8]) -> Result<&[u8], KestrelError> {
    let valid = !name.is_empty() && !name.iter().any(|&byte| byte == b'{' || byte == b'}');
    valid.then_some(name).ok_or(KestrelError::BadName)
}

/// Tells Redis which argument is the generator's key, for cluster routing and ACL checks.
fn report_generator_key(ctx: &Context, args: &[&[u8]], first_option: usize) {
    let options = args.iter().enumerate().skip(first_option);
    let keyword = options
        .filter(|(_, arg)| arg.eq_ignore_ascii_case(b"GENERATOR"))
        .map(|(position, _)| position + 1)
        .find(|&position| position < args.len());
    if let Some(position) = keyword.and_then(|position| i32::try_from(position).ok()) {
        ctx.key_at_pos(position);
    }
}

fn bad_id(text: &[u8]) -> KestrelError {
    KestrelError::BadId { given: quote(text) }
}

fn reply_id(ctx: &Context, id: Id, format: Format) {
    match format {
        Format::String => reply_decimal(ctx, id.as_i64()),
        Format::Int | Format::Ranges => reply_integer(ctx, id.as_i64()),
    }
}

fn reply_batch(ctx: &Context, issue: &Issue, format: Format) {
    let batch = &issue.batch;
    match format {
        Format::Int => {
            reply_array(ctx, batch.count() as usize);
            batch.ids().for_each(|id| reply_integer(ctx, id.as_i64()));
        }
        Format::String => {
            reply_array(ctx, batch.count() as usize);
            batch.ids().for_each(|id| reply_decimal(ctx, id.as_i64()));
        }
        Format::Ranges => {
            reply_array(ctx, batch.runs().count());
            for (first, count) in batch.runs() {
                reply_array(ctx, 2);
                reply_decimal(ctx, first.as_i64());
                reply_integer(ctx, count as i64);
            }
        }
    }
}

fn reply_array(ctx: &Context, len: usize) {
    raw::reply_with_array(ctx.ctx, c_long::try_from(len).unwrap_or(c_long::MAX));
}

fn reply_integer(ctx: &Context, value: i64) {
    raw::reply_with_long_long(ctx.ctx, value);
}

fn reply_decimal(ctx: &Context, value: i64) {
    reply_bytes(ctx, itoa::Buffer::new().format(value).as_bytes());
}

fn reply_text(ctx: &Context, text: &str) {
    reply_bytes(ctx, text.as_bytes());
}

fn reply_bytes(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.ctx, bytes.as_ptr().cast(), bytes.len());
}

fn reply_null(ctx: &Context) {
    raw::reply_with_null(ctx.ctx);
}
