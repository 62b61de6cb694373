//! Replays every crash reproducer (`../testdata/fuzz/<target>-*.bin`) and, when present, the
//! seed/grown corpora (`corpus/<target>/*`) through the fuzz properties on stable Rust:
//! `cargo test` in this directory. A reproducer whose bug is not fixed yet fails here.

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
        let f = ferrocast_fuzz::TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .unwrap()
            .1;
        let data = fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        f(&data);
        n += 1;
    }
    n
}

#[test]
fn crash_reproducers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz");
    // Longest target name first: `amf0_roundtrip-x.bin` must not match a shorter prefix.
    let mut targets: Vec<_> = ferrocast_fuzz::TARGETS.iter().map(|(t, _)| *t).collect();
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
    for (target, _) in ferrocast_fuzz::TARGETS {
        n += replay_dir(&root.join(target), |_| Some(target));
    }
    eprintln!("{n} corpus inputs replayed");
}
