//! Tokenizer throughput in MB/s (10^6 bytes of UTF-8 text per second), the figures of
//! docs/PERFORMANCE.md's tokenizer section.
//!
//! * `corpus`: encode and decode the mixed corpus of benches/data/tokenizer-corpus/ (its files
//!   concatenated in name order, as tools/tokenizer-bench/bench.py reads it for tiktoken and
//!   transformers), one thread.
//! * `5MB`: the corpus repeated to 5 MB, encoded on one thread and with `encode_parallel` in a
//!   rayon pool of 1 and 2 threads (repeated text: the piece cache does more than on 5 MB of
//!   distinct text).
//! * `corpus_first_call`: the first encode after loading (whole-token flags not yet known).
//! * `file`: each corpus file alone.
//! * `worst`: degenerate inputs (one letter, one digit, spaces, random bytes, emoji) at 100 KB
//!   and 1 MB; linear time shows as the same MB/s at both sizes.
//!
//! cargo bench --bench tokenizer [-- FILTER]

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use quill::tokenizer::Tokenizer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gpt2() -> Tokenizer {
    let dir = root().join("tests/data/gpt2-tokenizer");
    Tokenizer::from_vocab_merges(&dir.join("encoder.json"), &dir.join("vocab.bpe")).expect("GPT-2 tokenizer")
}

/// The corpus folder's regular files except `*.md`, in name order: (file name, text).
fn corpus_files() -> Vec<(String, String)> {
    let dir = root().join("benches/data/tokenizer-corpus");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("benches/data/tokenizer-corpus")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(p).unwrap()))
        .collect()
}

/// The corpus: its files concatenated.
fn corpus() -> String {
    corpus_files().into_iter().map(|(_, text)| text).collect()
}

fn corpus_bench(c: &mut Criterion) {
    let tok = gpt2();
    let text = corpus();
    let ids = tok.encode(&text);
    let mut group = c.benchmark_group("corpus");
    group.bench_function("load", |b| b.iter(gpt2));
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("encode", |b| b.iter(|| tok.encode(&text)));
    group.bench_function("decode_bytes", |b| b.iter(|| tok.decode_bytes(&ids).unwrap()));
    group.bench_function("decode", |b| b.iter(|| tok.decode(&ids).unwrap()));
    group.finish();

    // The first encode after loading, when no whole-token flag is known yet (see encode.rs).
    let mut group = c.benchmark_group("corpus_first_call");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("encode", |b| b.iter_batched(gpt2, |t| t.encode(&text), BatchSize::PerIteration));
    group.finish();
}

/// Each corpus file on its own (where the mix is fast or slow: prose, code, Japanese, ...).
fn per_file(c: &mut Criterion) {
    let tok = gpt2();
    let mut group = c.benchmark_group("file");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    for (name, text) in corpus_files() {
        group.throughput(Throughput::BytesDecimal(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| tok.encode(&text)));
    }
    group.finish();
}

fn five_mb(c: &mut Criterion) {
    let tok = gpt2();
    let corpus = corpus();
    let text = corpus.repeat(5_000_000usize.div_ceil(corpus.len()));
    assert_eq!(tok.encode_parallel(&text), tok.encode(&text));
    let mut group = c.benchmark_group("5MB");
    group.sample_size(10).throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("encode", |b| b.iter(|| tok.encode(&text)));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.bench_function(BenchmarkId::new("encode_parallel", threads), |b| {
            b.iter(|| pool.install(|| tok.encode_parallel(&text)))
        });
    }
    group.finish();
}

/// xorshift64, so the inputs are the same every run.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn worst_cases(c: &mut Criterion) {
    let tok = gpt2();
    let mut group = c.benchmark_group("worst");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for size in [100_000usize, 1_000_000] {
        let emoji: Vec<char> = ('\u{1F600}'..='\u{1F64F}').collect();
        let cases = [
            ("letter", "a".repeat(size)),
            ("digit", "7".repeat(size)),
            ("spaces", " ".repeat(size)),
            // Random bytes, invalid sequences replaced by U+FFFD (as a file read lossily).
            ("random_bytes", String::from_utf8_lossy(&random_bytes(size, 0x9E37_79B9_7F4A_7C15)).into_owned()),
            ("emoji", random_bytes(size / 4, 42).iter().map(|&b| emoji[b as usize % emoji.len()]).collect::<String>()),
        ];
        for (name, text) in cases {
            group.throughput(Throughput::BytesDecimal(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, size), &text, |b, t| b.iter(|| tok.encode(t)));
        }
    }
    group.finish();
}

criterion_group!(benches, corpus_bench, five_mb, worst_cases, per_file);
criterion_main!(benches);
