//! The workspace's binaries, built fresh from this tree before a test starts one: one
//! `cargo build --bins` per test binary, with the running test's cargo, profile and
//! target directory (see the crate's documentation for why).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries the process-level tests start.
const PACKAGES: [&str; 5] = [
    "damrey-proxy",
    "damrey-agent",
    "damrey-cli",
    "damrey-example",
    "damrey-chaos",
];

/// The path of binary `name` (`damrey-agent`, `damrey`, `add`, `chaos-worker`...), built from this
/// tree; the first call builds them all (later calls wait for it).
///
/// # Panics
/// When the build fails (its output is in the message) or `name` is not one of the
/// packages' binaries.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // Before the first process starts: the test opens more connections than a
        // shell's 1,024 files in places, and the processes it starts inherit the limit.
        damrey_service::connections::raise_open_files_limit();
        build()
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not a binary of {PACKAGES:?}",
        path.display()
    );
    path
}

/// Runs `cargo build --bins -p ...` into the directory the running test binary came
/// from, and returns that directory (where cargo puts the binaries).
fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/[triple/]profile/deps/this-test-binary (benches, run by cargo, too); the
    // `deps` check keeps a binary started by hand from elsewhere working.
    let deps = exe.parent().expect("the test binary is in a directory");
    let profile_dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("deps is in the profile's directory")
    } else {
        deps
    };
    let above = profile_dir
        .parent()
        .expect("the profile's directory is in the target directory");
    // Cargo marks the target directory with CACHEDIR.TAG, and a target triple's
    // directory inside it too: the triple's is the one whose parent is marked as well.
    let marked = |dir: &Path| dir.join("CACHEDIR.TAG").exists();
    let (target_dir, triple) = match above.parent() {
        Some(parent) if marked(parent) || !marked(above) => {
            let triple = above.file_name().and_then(|name| name.to_str());
            (parent, triple)
        }
        _ => (above, None),
    };
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", profile_dir.display()),
    };
    let run_by_cargo = std::env::var_os("CARGO");
    let cargo = PathBuf::from(run_by_cargo.clone().unwrap_or_else(|| env!("CARGO").into()));
    let mut command = Command::new(&cargo);
    // Started by hand rather than by cargo, the binary has no RUSTUP_TOOLCHAIN: rustup's
    // `rustc` would then pick a toolchain by the directory it compiles in (a dependency
    // may pin one), so name the compiler that came with this cargo.
    let rustc = cargo.with_file_name("rustc");
    if run_by_cargo.is_none() && std::env::var_os("RUSTC").is_none() && rustc.exists() {
        command.env("RUSTC", rustc);
    }
    command
        .arg("build")
        .arg("--bins")
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"));
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    if let Some(triple) = triple {
        command.args(["--target", triple]);
    }
    // Cargo gives the test the variables of its own package (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME...). Some build scripts (ring's) rerun when one of these differs
    // from the build that ran them last, so passing them on would rebuild ring and all
    // above it here, and again in the next `cargo test`.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_for_the_test) {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the binaries the tests start failed ({command:?}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir.to_owned()
}

/// Whether cargo sets variable `key` for the running test (its package's manifest,
/// name, version, binaries...), rather than the user for cargo.
fn set_for_the_test(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// The workspace's root directory.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("this crate is in the workspace")
}
