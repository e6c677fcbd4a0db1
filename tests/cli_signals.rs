//! Ctrl-C during generation: the first SIGINT stops after the current token, the text so far and
//! the stats are printed, and the exit code is 130.

#![cfg(unix)]

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn ctrl_c_stops_generation_cleanly_with_stats() {
    let hub = common::hub();
    // A long run: sliding past the 64-position context, far more tokens than it will reach.
    let mut child = common::quill_command()
        .args(["generate", "-m", hub.to_str().unwrap(), "Once upon a time", "-n", "100000000"])
        .args(["--on-context-full", "slide", "--stats", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first streamed bytes, so the handler is surely installed.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    let start = Instant::now();
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?} to stop", start.elapsed());
    assert!(stderr.contains("interrupted"), "stats should name the finish reason: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
