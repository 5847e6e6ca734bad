//! Markdown tables from result files: one column per target, and for each peer the factor by
//! which the first target (Sandcat) is better (>1) or worse (<1).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// `(label, json path, higher is better)`
const METRICS: &[(&str, &[&str], bool)] = &[
    (
        "GET /versions (req/s)",
        &["workloads", "versions", "throughput"],
        true,
    ),
    (
        "GET /versions p99 (ms)",
        &["workloads", "versions", "p99_ms"],
        false,
    ),
    (
        "send (events/s)",
        &["workloads", "send", "throughput"],
        true,
    ),
    ("send p50 (ms)", &["workloads", "send", "p50_ms"], false),
    ("send p99 (ms)", &["workloads", "send", "p99_ms"], false),
    (
        "send→/sync delivery p50 (ms)",
        &["workloads", "fanout", "p50_ms"],
        false,
    ),
    (
        "send→/sync delivery p99 (ms)",
        &["workloads", "fanout", "p99_ms"],
        false,
    ),
    (
        "send→/sync delivery max (ms)",
        &["workloads", "fanout", "max_ms"],
        false,
    ),
    (
        "initial /sync, first (ms)",
        &["workloads", "initial-sync", "first_ms"],
        false,
    ),
    (
        "initial /sync, repeated (ms)",
        &["workloads", "initial-sync", "repeated_ms"],
        false,
    ),
    (
        "initial /sync size (bytes)",
        &["workloads", "initial-sync", "response_bytes"],
        false,
    ),
    (
        "Matrix send→Sandcat WebSocket p50 (ms)",
        &["workloads", "native", "p50_ms"],
        false,
    ),
    (
        "Matrix send→Sandcat WebSocket p99 (ms)",
        &["workloads", "native", "p99_ms"],
        false,
    ),
    ("login (req/s)", &["workloads", "login", "throughput"], true),
    (
        "register (req/s)",
        &["workloads", "register", "throughput"],
        true,
    ),
    (
        "join: fill room (joins/s)",
        &["workloads", "join", "joins_per_second"],
        true,
    ),
    (
        "join: next member (ms)",
        &["workloads", "join", "next_join_ms"],
        false,
    ),
    ("cold start to /versions (ms)", &["cold_start_ms"], false),
    ("idle RSS (MB)", &["rss_idle_mb"], false),
    ("RSS after send (MB)", &["rss_after_send_mb"], false),
    ("CPU used during the run (s)", &["cpu_seconds"], false),
];

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn write(files: &[std::path::PathBuf], out: Option<&Path>, machine: &str) -> Result<()> {
    let mut results = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mut v: Value = serde_json::from_str(&text)?;
        for (kb, mb) in [
            ("rss_idle_kb", "rss_idle_mb"),
            ("rss_after_send_kb", "rss_after_send_mb"),
        ] {
            if let Some(k) = v.get(kb).and_then(Value::as_f64) {
                v[mb] = serde_json::json!(k / 1024.0);
            }
        }
        results.push(v);
    }
    let names: Vec<String> = results
        .iter()
        .map(|r| r["target"].as_str().unwrap_or("?").to_owned())
        .collect();
    let mut md = String::new();
    if !machine.is_empty() {
        md.push_str(&format!("Machine: {machine}\n\n"));
    }
    md.push_str("| metric |");
    for n in &names {
        md.push_str(&format!(" {n} |"));
    }
    for n in names.iter().skip(1) {
        md.push_str(&format!(" {} vs {n} |", names[0]));
    }
    md.push('\n');
    md.push_str(&"| --- ".repeat(1 + names.len() * 2 - 1));
    md.push_str("|\n");
    for (label, path, higher_better) in METRICS {
        let vals: Vec<Option<f64>> = results
            .iter()
            .map(|r| lookup(r, path).and_then(Value::as_f64))
            .collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        md.push_str(&format!("| {label} |"));
        for v in &vals {
            md.push_str(&format!(" {} |", v.map(fmt).unwrap_or_else(|| "–".into())));
        }
        for v in vals.iter().skip(1) {
            let ratio = match (vals[0], *v) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                    Some(if *higher_better { a / b } else { b / a })
                }
                _ => None,
            };
            md.push_str(&format!(
                " {} |",
                ratio
                    .map(|r| format!("{}×", fmt(r)))
                    .unwrap_or_else(|| "–".into())
            ));
        }
        md.push('\n');
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["failed"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|r| format!("{}: {}", r["target"], r["failed"]))
        .collect();
    if !failed.is_empty() {
        md.push_str(&format!(
            "\nFailed workloads (lost or refused requests; not comparable): {}\n",
            failed.join("; ")
        ));
    }
    md.push_str("\nA factor above 1× means the first target is better (faster, smaller, or more per second).\n");
    print!("{md}");
    if let Some(out) = out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
