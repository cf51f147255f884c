//! Random argument vectors against a live server with the module: odd counts, names, formats,
//! numbers at the edges of i64, random bytes, huge arguments, mixed with hostile writes to the
//! state keys and script calls. The server must never die, every reply must be a value or an
//! error reply with an upper-case code, and the module's own IDs must stay unique and
//! increasing per generator.

use std::collections::HashMap;

use kestrel_testbed::redis::{self, Value};
use kestrel_testbed::Server;

use crate::load::{error_reply, script_keys, set_shard_id, Rng};
use crate::Outcome;

const COMMANDS: [&str; 8] = [
    "KESTREL.ID",
    "KESTREL.IDS",
    "KESTREL.DECODE",
    "KESTREL.STATUS",
    "kestrel.id",
    "Kestrel.Ids",
    "kestrel.decode",
    "kestrel.status",
];
const WORDS: [&str; 10] = [
    "GENERATOR",
    "FORMAT",
    "generator",
    "format",
    "INT",
    "STRING",
    "RANGES",
    "ranges",
    "Int",
    "GENERATORS",
];
const NAMES: [&str; 8] = [
    "g1",
    "g2",
    "kestrel",
    "{g1}",
    "",
    "a}b",
    "g{",
    "\u{e9}\u{1f600}",
];
const NUMBERS: [&str; 18] = [
    "0",
    "1",
    "-1",
    "7",
    "4095",
    "4096",
    "4097",
    "65536",
    "65537",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "99999999999999999999",
    "1e3",
    " 1",
    "+1",
    "007",
    "1446325212348944384",
];
/// Generators whose IDs are tracked (the names above that the module accepts), each with its
/// own shard id: the default generator's comes from the module option.
const TRACKED: [(&str, u16); 3] = [("g1", 2), ("g2", 3), ("kestrel", 1)];

/// Starts a server with the module and runs `commands` random commands against it.
pub fn scenario(commands: usize, seed: u64) -> Outcome {
    let server = Server::builder().module(&["shard-id", "1"]).start();
    run(&server, commands, seed)
}

/// Runs `commands` random commands against `server` (which has the module, shard id 1).
pub fn run(server: &Server, commands: usize, seed: u64) -> Outcome {
    let mut outcome = Outcome::new("random argument vectors");
    let mut connection = server.connection();
    let sha = crate::load::load_script(&mut connection).unwrap_or_default();
    for (generator, shard) in TRACKED {
        let set = set_shard_id(&mut connection, generator, shard);
        outcome.expect(set.is_ok(), || {
            format!("SET the shard id of {generator}: {set:?}")
        });
    }
    let mut rng = Rng::new(seed);
    let mut last_issued: HashMap<String, u64> = HashMap::new();
    let (mut values, mut errors) = (0_u64, 0_u64);

    for _ in 0..commands {
        let argv = random_argv(&mut rng, &sha);
        let mut command = redis::cmd(std::str::from_utf8(&argv[0]).unwrap_or("PING"));
        for arg in &argv[1..] {
            command.arg(arg.as_slice());
        }
        let reply: redis::RedisResult<Value> = command.query(&mut connection);
        match reply {
            Ok(value) => {
                values += 1;
                if let Some((generator, ids)) = module_ids(&argv, &value) {
                    outcome.ids_checked += ids.len() as u64;
                    let last = last_issued.entry(generator.clone()).or_insert(0);
                    for id in ids {
                        if id <= *last {
                            outcome.duplicates += u64::from(id == *last);
                            outcome.failures.push(format!(
                                "generator '{generator}' issued {id} after {last} for {}",
                                show(&argv)
                            ));
                        }
                        *last = id.max(*last);
                    }
                }
            }
            Err(error) => match error_reply(&error) {
                Some(text) => {
                    errors += 1;
                    let code = text.split(' ').next().unwrap_or_default();
                    // The script keeps the original library's message for a bad shard id.
                    let contract = text.starts_with("Logical shard ID out of range");
                    let upper = contract
                        || !code.is_empty()
                            && code.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                    outcome.expect(upper && code != "KESTREL_INTERNAL", || {
                        format!("{} got the error '{text}'", show(&argv))
                    });
                }
                None => {
                    outcome.failures.push(format!(
                        "{} broke the connection: {error}; server running: {}",
                        show(&argv),
                        server.is_running()
                    ));
                    break;
                }
            },
        }
        if outcome.failures.len() > 20 {
            break;
        }
    }

    let pong: redis::RedisResult<String> = match server.try_connection() {
        Ok(mut fresh) => redis::cmd("PING").query(&mut fresh),
        Err(error) => Err(error),
    };
    outcome.expect(pong.is_ok(), || format!("PING after the run: {pong:?}"));
    let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    outcome.expect(!log.contains("kestrel: panic"), || {
        "the module panicked (see the server log)".into()
    });
    outcome.note(format!(
        "{commands} commands: {values} values, {errors} error replies"
    ));
    outcome
}

fn random_argv(rng: &mut Rng, sha: &str) -> Vec<Vec<u8>> {
    let (generator, shard) = TRACKED[rng.between(0, 2) as usize];
    match rng.between(0, 99) {
        // Hostile writes to the state keys: garbage, other types, deletions, and now and then
        // the generator's own shard id back, so that its calls get through again.
        0..=3 => {
            let keys = script_keys(generator);
            let key = keys[rng.between(0, 2) as usize].clone().into_bytes();
            match rng.between(0, 4) {
                0 => vec![b"DEL".to_vec(), key],
                1 => vec![b"LPUSH".to_vec(), key, b"x".to_vec()],
                2 => {
                    let [_, _, shard_key] = keys;
                    let own = shard.to_string().into_bytes();
                    vec![b"SET".to_vec(), shard_key.into_bytes(), own]
                }
                _ => vec![b"SET".to_vec(), key, token(rng)],
            }
        }
        // The script with random counts and clocks.
        4..=7 => {
            let [lock, sequence, shard] = script_keys(generator);
            let mut argv: Vec<Vec<u8>> = ["EVALSHA", sha, "3", &lock, &sequence, &shard]
                .iter()
                .map(|arg| arg.as_bytes().to_vec())
                .collect();
            argv.extend(
                ["4095", "1", "1023"]
                    .iter()
                    .map(|arg| arg.as_bytes().to_vec()),
            );
            for _ in 0..rng.between(0, 2) {
                argv.push(token(rng));
            }
            argv
        }
        _ => {
            let command = COMMANDS[rng.between(0, COMMANDS.len() as u64 - 1) as usize];
            let mut argv = vec![command.as_bytes().to_vec()];
            if command.eq_ignore_ascii_case("KESTREL.IDS") && rng.chance(80) {
                argv.push(rng.between(1, 5000).to_string().into_bytes());
            }
            for _ in 0..rng.between(0, 6) {
                argv.push(token(rng));
            }
            // Often a well-formed tail, so that calls get through to the generator.
            if rng.chance(40) {
                argv.push(b"GENERATOR".to_vec());
                argv.push(generator.as_bytes().to_vec());
            }
            argv
        }
    }
}

fn pick(rng: &mut Rng, list: &[&'static str]) -> &'static str {
    list[rng.between(0, list.len() as u64 - 1) as usize]
}

fn token(rng: &mut Rng) -> Vec<u8> {
    match rng.between(0, 9) {
        0..=3 => pick(rng, &WORDS).as_bytes().to_vec(),
        4 => pick(rng, &NAMES).as_bytes().to_vec(),
        5..=6 => pick(rng, &NUMBERS).as_bytes().to_vec(),
        7 => (rng.next_u64() as i64).to_string().into_bytes(),
        8 => {
            let len = rng.between(0, 40);
            (0..len).map(|_| rng.next_u64() as u8).collect()
        }
        _ => {
            let len = if rng.chance(10) {
                100_000
            } else {
                rng.between(0, 300)
            };
            vec![b"{}\0x"[rng.between(0, 3) as usize]; len as usize]
        }
    }
}

/// For a successful `KESTREL.ID` / `KESTREL.IDS`, the generator it used and the IDs it got.
fn module_ids(argv: &[Vec<u8>], reply: &Value) -> Option<(String, Vec<u64>)> {
    let command = argv.first()?;
    let first_option = if command.eq_ignore_ascii_case(b"KESTREL.ID") {
        1
    } else if command.eq_ignore_ascii_case(b"KESTREL.IDS") {
        2
    } else {
        return None;
    };
    let generator = argv
        .get(first_option..)?
        .chunks(2)
        .find(|pair| pair[0].eq_ignore_ascii_case(b"GENERATOR"))
        .and_then(|pair| pair.get(1))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_else(|| "kestrel".to_string());
    let mut ids = Vec::new();
    collect_ids(reply, &mut ids)?;
    Some((generator, ids))
}

fn collect_ids(reply: &Value, ids: &mut Vec<u64>) -> Option<()> {
    match reply {
        Value::Int(id) => ids.push(u64::try_from(*id).ok()?),
        Value::BulkString(text) => ids.push(std::str::from_utf8(text).ok()?.parse().ok()?),
        Value::Array(items) => match items.as_slice() {
            // A run: [first as a string, how many].
            [Value::BulkString(first), Value::Int(count)] => {
                let first: u64 = std::str::from_utf8(first).ok()?.parse().ok()?;
                ids.extend(first..first + u64::try_from(*count).ok()?);
            }
            items => {
                for item in items {
                    collect_ids(item, ids)?;
                }
            }
        },
        _ => return None,
    }
    Some(())
}

fn show(argv: &[Vec<u8>]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|arg| {
            let text: String = arg.iter().take(40).map(|&b| b as char).collect();
            format!("{text:?}{}", if arg.len() > 40 { "..." } else { "" })
        })
        .collect();
    words.join(" ")
}
