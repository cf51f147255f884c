//! The Kestrel Redis module: `KESTREL.ID`, `KESTREL.IDS`, `KESTREL.DECODE` and
//! `KESTREL.STATUS`, serving 64-bit k-sortable IDs that share their state keys with the
//! original library's Lua script.
//!
//! The ID layout and the generator state machine live in `kestrel-core`; this crate reads
//! arguments, keeps generators in memory, stores their high-water marks in the keyspace and
//! replies.

mod clock;
mod commands;
mod config;
mod error;
mod generators;
mod stats;
mod store;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Duration;

use kestrel_core::{EPOCH_MS, LAST_MS};
use redis_module::{
    decode_args, logging, raw, Context, ContextFlags, NotifyEvent, RedisString, Status,
};

use crate::error::KestrelError;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MODULE_NAME: &CStr = c"kestrel";

/// Every allocation goes through Redis, so `INFO memory` and `maxmemory` see the module's.
/// Unit tests run without Redis and keep the system allocator.
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: redis_module::alloc::RedisAlloc = redis_module::alloc::RedisAlloc;

/// A command handler: replies itself on success, or returns the refusal to reply with.
type Handler = fn(&Context, &[&[u8]]) -> Result<(), KestrelError>;

/// Commands with at most this many arguments read them without allocating.
const INLINE_ARGS: usize = 8;

/// One command: its name, handler, flags, and a C entry point that calls the handler.
struct Command {
    name: &'static CStr,
    flags: &'static CStr,
    entry:
        extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int,
}

macro_rules! entry_point {
    ($handler:path) => {{
        extern "C" fn entry(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            run_command(ctx, argv, argc, $handler)
        }
        entry
    }};
}

/// The generator's key comes from `GENERATOR <name>`, reported through the getkeys API, so
/// the commands declare no fixed key positions.
static COMMANDS: [Command; 4] = [
    Command {
        name: c"kestrel.id",
        flags: c"write deny-oom fast getkeys-api no-mandatory-keys",
        entry: entry_point!(commands::id),
    },
    Command {
        name: c"kestrel.ids",
        flags: c"write deny-oom getkeys-api no-mandatory-keys",
        entry: entry_point!(commands::ids),
    },
    Command {
        name: c"kestrel.decode",
        flags: c"readonly fast",
        entry: entry_point!(commands::decode),
    },
    Command {
        name: c"kestrel.status",
        flags: c"readonly getkeys-api no-mandatory-keys",
        entry: entry_point!(commands::status),
    },
];

/// Runs a handler so that nothing unwinds into Redis: a panic becomes an error reply (the
/// panic hook has already written it to the Redis log), and every error is counted.
fn run_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: Handler,
) -> c_int {
    let context = Context::new(ctx);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let count = usize::try_from(argc).unwrap_or(0);
        if argv.is_null() || count == 0 {
            return handler(&context, &[]);
        }
        // SAFETY: Redis passes `argc` valid strings in `argv`, alive for the whole call.
        let argv = unsafe { std::slice::from_raw_parts(argv, count) };
        let mut inline: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        let spilled: Vec<&[u8]>;
        let args: &[&[u8]] = if count <= INLINE_ARGS {
            for (slot, &arg) in inline.iter_mut().zip(argv) {
                *slot = string_bytes(arg);
            }
            &inline[..count]
        } else {
            spilled = argv.iter().map(|&arg| string_bytes(arg)).collect();
            &spilled
        };
        handler(&context, args)
    }));
    match outcome.unwrap_or(Err(KestrelError::Internal)) {
        Ok(()) => {}
        Err(KestrelError::Arity) => {
            stats::ERRORS.add(1);
            // SAFETY: ctx is the live context of this command call.
            unsafe { raw::RedisModule_WrongArity.map(|wrong_arity| wrong_arity(ctx)) };
        }
        Err(error) => {
            stats::ERRORS.add(1);
            context.reply_error_string(&error.to_string());
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// The bytes of a string Redis passed to a command, valid while the command runs.
fn string_bytes<'a>(string: *mut raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0;
    let bytes = raw::string_ptr_len(string, &mut len);
    if bytes.is_null() {
        return &[];
    }
    // SAFETY: RedisModule_StringPtrLen returned the string's buffer and length; Redis keeps
    // command arguments alive until the command returns, and no argument outlives it here.
    unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), len) }
}

/// Entry point Redis calls on `loadmodule` or `MODULE LOAD`.
///
/// # Safety
///
/// Redis calls it once, with a valid context and `argc` module arguments in `argv`.
#[no_mangle]
pub unsafe extern "C" fn RedisModule_OnLoad(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes its context; the name is a NUL-terminated static string. Nothing
    // allocates before this call, since allocation needs the API it fills in.
    let initialised = unsafe {
        raw::Export_RedisModule_Init(
            ctx,
            MODULE_NAME.as_ptr(),
            1,
            raw::REDISMODULE_APIVER_1 as c_int,
        )
    };
    if initialised == raw::Status::Err as c_int {
        return raw::REDISMODULE_ERR as c_int;
    }

    let context = Context::new(ctx);
    let loaded = panic::catch_unwind(AssertUnwindSafe(|| {
        let args = decode_args(ctx, argv, argc);
        load(&context, &args)
    }));
    match loaded {
        Ok(Ok(())) => raw::REDISMODULE_OK as c_int,
        Ok(Err(problem)) => {
            context.log_warning(&format!("kestrel: not loaded: {problem}"));
            raw::REDISMODULE_ERR as c_int
        }
        Err(_) => raw::REDISMODULE_ERR as c_int,
    }
}

fn load(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    install_panic_hook();
    let args: Vec<&[u8]> = args.iter().map(RedisString::as_slice).collect();
    let values = config::parse_module_args(&args)?;
    for command in &COMMANDS {
        create_command(ctx, command)?;
    }
    config::register(ctx, &values)?;
    subscribe(ctx)?;

    let flags = ctx.get_flags();
    commands::CLUSTER_MODE.store(flags.contains(ContextFlags::CLUSTER), Ordering::Relaxed);
    // The role-change event does not fire at start-up, so read the initial role here.
    commands::REPLICA.store(flags.contains(ContextFlags::SLAVE), Ordering::Relaxed);

    let options: Vec<String> = config::OPTIONS
        .iter()
        .map(|option| format!("{}={}", option.name, config::get(option.value)))
        .collect();
    let build = if cfg!(feature = "test-clock") {
        " (test-clock build)"
    } else {
        ""
    };
    ctx.log_notice(&format!(
        "kestrel {VERSION} loaded{build}: epoch {EPOCH_MS} ms, {}",
        options.join(" ")
    ));
    Ok(())
}

fn create_command(ctx: &Context, command: &Command) -> Result<(), String> {
    // SAFETY: called during OnLoad with its context; name and flags are static C strings and
    // the entry point is a plain function that lives as long as the module.
    let status = unsafe {
        raw::RedisModule_CreateCommand.map(|create| {
            create(
                ctx.ctx,
                command.name.as_ptr(),
                Some(command.entry),
                command.flags.as_ptr(),
                0,
                0,
                0,
            )
        })
    };
    match status {
        Some(code) if code == raw::REDISMODULE_OK as c_int => Ok(()),
        _ => Err(format!(
            "could not create command {}",
            command.name.to_string_lossy()
        )),
    }
}

/// Writes any panic, with where it happened, to the Redis log. The entry points catch the
/// unwind and reply with an error, so Redis itself never sees it.
fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|location| format!(" at {}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        logging::log_warning(format!("kestrel: panic{place}: {payload}"));
    }));
}

/// Subscribes to what can change a generator's keys behind its back, and to INFO.
fn subscribe(ctx: &Context) -> Result<(), String> {
    let key_events = NotifyEvent::GENERIC
        | NotifyEvent::STRING
        | NotifyEvent::EXPIRED
        | NotifyEvent::EVICTED
        | NotifyEvent::LIST
        | NotifyEvent::SET
        | NotifyEvent::HASH
        | NotifyEvent::ZSET
        | NotifyEvent::STREAM;
    // SAFETY: called during OnLoad with its context; the callback is a plain function.
    let status = unsafe {
        raw::RedisModule_SubscribeToKeyspaceEvents
            .map(|subscribe| subscribe(ctx.ctx, key_events.bits(), Some(on_key_event)))
    };
    if status != Some(raw::REDISMODULE_OK as c_int) {
        return Err("could not subscribe to keyspace events".into());
    }

    let server_events = [
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_SWAPDB,
        raw::REDISMODULE_EVENT_LOADING,
        raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
    ];
    for id in server_events {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: as above; the event ids are the server events of the 7.0 API.
        let status = unsafe {
            raw::RedisModule_SubscribeToServerEvent
                .map(|subscribe| subscribe(ctx.ctx, event, Some(on_server_event)))
        };
        if status != Some(raw::REDISMODULE_OK as c_int) {
            return Err(format!("could not subscribe to server event {id}"));
        }
    }

    if raw::register_info_function(ctx.ctx, Some(on_info)) == Status::Err {
        return Err("could not register the INFO section".into());
    }
    Ok(())
}

extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    _kind: c_int,
    _event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    let _ = panic::catch_unwind(|| {
        let mut len = 0;
        let bytes = raw::string_ptr_len(key, &mut len);
        if bytes.is_null() {
            return;
        }
        // SAFETY: Redis passes a live string; string_ptr_len gave its buffer and length.
        let key = unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), len) };
        generators::key_changed(&Context::new(ctx), key);
    });
    raw::REDISMODULE_OK as c_int
}

extern "C" fn on_server_event(
    ctx: *mut raw::RedisModuleCtx,
    event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    let _ = panic::catch_unwind(|| match event.id {
        raw::REDISMODULE_EVENT_FLUSHDB | raw::REDISMODULE_EVENT_SWAPDB => {
            generators::all_changed();
        }
        raw::REDISMODULE_EVENT_LOADING => {
            generators::all_fenced();
            if subevent == raw::REDISMODULE_SUBEVENT_LOADING_ENDED {
                fence_stored_soon(&Context::new(ctx));
            }
        }
        raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED => {
            let replica = subevent != raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER;
            commands::REPLICA.store(replica, Ordering::Relaxed);
            generators::all_fenced();
            fence_stored_soon(&Context::new(ctx));
        }
        _ => {}
    });
}

/// Fences the stored generators from a timer that fires as soon as the event loop runs, so
/// the writes happen in an ordinary context and replicate like a command's.
fn fence_stored_soon(ctx: &Context) {
    ctx.create_timer(Duration::ZERO, fence_stored_now, ());
}

fn fence_stored_now(ctx: &Context, _: ()) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        if !commands::REPLICA.load(Ordering::Relaxed) {
            generators::fence_stored(ctx);
        }
    }));
}

/// The `kestrel` section of INFO. Redis prefixes each field with `kestrel_`.
extern "C" fn on_info(info: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    let _ = panic::catch_unwind(|| add_info(info));
}

fn add_info(info: *mut raw::RedisModuleInfoCtx) {
    if raw::add_info_section(info, None) == Status::Err {
        return;
    }
    raw::add_info_field_str(info, "version", VERSION);
    raw::add_info_field_long_long(info, "epoch_ms", EPOCH_MS as i64);
    raw::add_info_field_long_long(info, "last_ms", LAST_MS as i64);
    for option in config::OPTIONS {
        let name = option.name.replace('-', "_");
        raw::add_info_field_long_long(info, &name, config::get(option.value));
    }
    let counters = [
        ("calls", &stats::CALLS),
        ("ids_issued", &stats::IDS_ISSUED),
        ("ms_borrowed", &stats::MS_BORROWED),
        ("max_lead_ms", &stats::MAX_LEAD_MS),
        ("clock_steps_back", &stats::CLOCK_STEPS_BACK),
        ("errors", &stats::ERRORS),
        ("lead_refusals", &stats::LEAD_REFUSALS),
        ("mark_writes", &stats::MARK_WRITES),
        ("key_reads", &stats::KEY_READS),
        ("fences", &stats::FENCES),
    ];
    for (name, counter) in counters {
        raw::add_info_field_unsigned_long_long(info, name, counter.get());
    }
    let in_memory = generators::count().try_into().unwrap_or(u64::MAX);
    raw::add_info_field_unsigned_long_long(info, "generators_in_memory", in_memory);
}
