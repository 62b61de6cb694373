//! Replays every crash reproducer (`../testdata/fuzz/<target>-*.bin`) and, when present, the
//! seed/grown corpora (`corpus/<target>/*`) through the fuzz properties on stable Rust:
//! `cargo test --release --features api` in this directory (without `api`, the
//! `api_stream_body` inputs are skipped and listed). A reproducer whose bug is not fixed yet
//! fails here.

use std::fs;
use std::path::Path;

fn replay_dir(dir: &Path, filter: impl Fn(&str) -> Option<&'static str>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut n = 0;
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(target) = filter(&name) else {
            continue;
        };
        let Some((_, f)) = ferrocast_fuzz::targets().find(|(t, _)| *t == target) else {
            eprintln!(
                "skipping {} (built without the api feature)",
                path.display()
            );
            continue;
        };
        // A running fuzzer replaces corpus files as it minimizes them.
        let Ok(data) = fs::read(&path) else {
            continue;
        };
        eprintln!("replaying {}", path.display());
        f(&data);
        n += 1;
    }
    n
}

/// Every target name, including those behind features.
fn all_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ferrocast_fuzz::TARGETS.iter().map(|(t, _)| *t).collect();
    names.extend(ferrocast_fuzz::API_TARGET_NAMES);
    names
}

#[test]
fn crash_reproducers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz");
    // Longest target name first: `amf0_roundtrip-x.bin` must not match a shorter prefix.
    let mut targets = all_names();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let n = replay_dir(&dir, |name| {
        let stem = name.strip_suffix(".bin")?;
        targets
            .iter()
            .copied()
            .find(|t| stem.starts_with(&format!("{t}-")))
    });
    eprintln!("{n} reproducers replayed");
}

#[test]
fn corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    for target in all_names() {
        n += replay_dir(&root.join(target), |_| Some(target));
    }
    eprintln!("{n} corpus inputs replayed");
}

/// The curated seeds in git (`seeds/<target>/`), so `cargo test` covers them without
/// `seed.sh`.
#[test]
fn seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut n = 0;
    for target in all_names() {
        n += replay_dir(&root.join(target), |_| Some(target));
    }
    eprintln!("{n} seeds replayed");
}
