//! Command-line pieces the three load tools share.

use std::process::ExitCode;

/// A non-negative finite number given to `name`.
pub fn number(name: &str, v: String) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{name}: not a non-negative number: {v:?}"))
}

/// A count given to `name`.
pub fn count(name: &str, v: String) -> Result<usize, String> {
    v.parse::<usize>()
        .map_err(|_| format!("{name}: not a count: {v:?}"))
}

/// Parses with `parse`, or prints why (an empty reason: `--help`) and the usage, and gives
/// the exit status 2.
pub fn args<A>(
    tool: &str,
    usage: &str,
    parse: impl FnOnce() -> Result<A, String>,
) -> Result<A, ExitCode> {
    parse().map_err(|e| {
        if !e.is_empty() {
            eprintln!("{tool}: {e}");
        }
        eprintln!("{usage}");
        ExitCode::from(2)
    })
}

/// The report value at JSON `pointer` for a text table: floats to one decimal, `-` if absent.
pub fn shown(v: &serde_json::Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.1}"),
            _ => n.to_string(),
        },
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => "-".into(),
    }
}
