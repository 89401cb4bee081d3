//! Finds the version of tokio this binary is built against (in the workspace's `Cargo.lock`)
//! and hands it to the code as the `MANIAC_BENCH_TOKIO_VERSION` environment variable.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let candidates = [
        manifest_dir.join("../Cargo.lock"),
        manifest_dir.join("Cargo.lock"),
    ];
    let mut version = String::from("unknown");
    for lock in &candidates {
        println!("cargo::rerun-if-changed={}", lock.display());
        let found = std::fs::read_to_string(lock)
            .ok()
            .and_then(|text| tokio_version(&text));
        if let Some(found) = found {
            version = found;
            break;
        }
    }
    println!("cargo::rustc-env=MANIAC_BENCH_TOKIO_VERSION={version}");
}

/// The `version` of the `[[package]]` named `tokio` in a `Cargo.lock`.
fn tokio_version(lock: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tokio\"" {
            let next = lines.next()?.trim();
            let version = next.strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}
