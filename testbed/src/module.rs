//! Finding the Kestrel module that the caller built.
//!
//! Building is the caller's job (`cargo build -p kestrel-module`, or `scripts/test.sh`, which
//! also builds the `test-clock` variant). The testbed never loads the file in place: a server
//! started with [`ServerBuilder::module`](crate::ServerBuilder::module) gets its own copy in its
//! temporary folder, so a rebuild during a test run never replaces a file a server has mapped.

use std::env;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Environment variable naming the module file to load.
pub const MODULE_ENV: &str = "KESTREL_MODULE";

/// Environment variable naming the module built with `--features test-clock`.
pub const TEST_CLOCK_MODULE_ENV: &str = "KESTREL_MODULE_TEST_CLOCK";

/// File name cargo gives the module (`[lib] name = "kestrel"`, a cdylib).
pub const MODULE_FILE_NAME: &str = "libkestrel.so";

/// Where `scripts/test.sh` leaves its copy of the `test-clock` build, under the target folder.
pub const TEST_CLOCK_SUBDIR: &str = "kestrel-test-clock";

/// The module to load: `$KESTREL_MODULE` if set, else the most recently built of
/// `target/debug/libkestrel.so` and `target/release/libkestrel.so` (honouring
/// `CARGO_TARGET_DIR`).
///
/// # Panics
///
/// When the file does not exist, with the command that builds it.
pub fn module_path() -> PathBuf {
    if let Some(path) = env::var_os(MODULE_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!(
                "kestrel-testbed: {MODULE_ENV}={} does not exist; build the module with \
                 `cargo build -p kestrel-module` or unset {MODULE_ENV}",
                path.display()
            );
        }
        return path;
    }
    let target = target_dir();
    let candidates = [
        target.join("debug").join(MODULE_FILE_NAME),
        target.join("release").join(MODULE_FILE_NAME),
    ];
    newest(&candidates).unwrap_or_else(|| {
        panic!(
            "kestrel-testbed: the Kestrel module is not built: none of {} and {} exists. Build it \
             with `cargo build -p kestrel-module` (run scripts/deps.sh first on a new machine), \
             or set {MODULE_ENV} to the path of libkestrel.so",
            candidates[0].display(),
            candidates[1].display()
        )
    })
}

/// The module built with `--features test-clock` (which adds the `kestrel.clock-offset-ms`
/// option): `$KESTREL_MODULE_TEST_CLOCK` if set, else `target/kestrel-test-clock/libkestrel.so`.
///
/// # Panics
///
/// When the file does not exist, with the commands that build it.
pub fn test_clock_module_path() -> PathBuf {
    let path = env::var_os(TEST_CLOCK_MODULE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(TEST_CLOCK_SUBDIR).join(MODULE_FILE_NAME));
    if !path.is_file() {
        panic!(
            "kestrel-testbed: the test-clock module {} does not exist. Run scripts/test.sh, or \
             build it by hand: `cargo build -p kestrel-module --features test-clock`, copy \
             target/debug/{MODULE_FILE_NAME} to {} and set {TEST_CLOCK_MODULE_ENV} to the copy",
            path.display(),
            path.display()
        );
    }
    path
}

/// The workspace's target folder: `$CARGO_TARGET_DIR`, else `<workspace root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn newest(paths: &[PathBuf]) -> Option<PathBuf> {
    paths
        .iter()
        .filter_map(|path| {
            let modified = path.metadata().ok()?.modified().ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _): &(SystemTime, &PathBuf)| *modified)
        .map(|(_, path)| path.clone())
}
