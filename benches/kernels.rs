//! Per-op kernel benchmarks at GPT-2 124M shapes, at the best kernel level of this CPU (set
//! QUILL_KERNELS to compare levels). GEMV throughput is weight bytes/s (decode is bound by it);
//! GEMM throughput is in flop/s (criterion's "elem/s").
//!
//! cargo bench --bench kernels [-- FILTER]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quill_kernels::{
    f16, kernels, quantize_q8_0, AttentionExtras, AttentionLayer, KvData, Layout, Weight, WeightData, Q8_BLOCK,
};

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// `w` in q8_0 blocks, and its size in bytes (int8 values and f16 scales).
fn q8_0(w: &[f32]) -> (Vec<i8>, Vec<f16>, usize) {
    let (mut q, mut scales) = (vec![0; w.len()], vec![f16::ZERO; w.len() / Q8_BLOCK]);
    quantize_q8_0(w, &mut q, &mut scales);
    let bytes = q.len() + 2 * scales.len();
    (q, scales, bytes)
}

fn matmul(c: &mut Criterion) {
    let k = kernels().unwrap();
    // (name, K, N, layout): the four GPT-2 matmuls of a layer and the tied lm_head.
    let shapes = [
        ("qkv", 768, 2304, Layout::InOut),
        ("attn_out", 768, 768, Layout::InOut),
        ("fc", 768, 3072, Layout::InOut),
        ("proj", 3072, 768, Layout::InOut),
        ("lm_head", 768, 50257, Layout::OutIn),
    ];
    let mut group = c.benchmark_group(format!("gemv[{}]", k.level().name()));
    for (name, kk, n, layout) in shapes {
        let w32 = data(kk * n);
        let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
        let x = data(kk);
        let mut out = vec![0.0; n];
        for (dtype, wd, bytes) in [("f32", WeightData::F32(&w32), 4), ("f16", WeightData::F16(&w16), 2)] {
            let w = Weight { data: wd, k: kk, n, layout };
            group.throughput(Throughput::Bytes((kk * n * bytes) as u64));
            group.bench_function(BenchmarkId::new(dtype, name), |b| b.iter(|| k.matmul(&x, w, None, &mut out)));
        }
        // q8_0 is stored (out, in) whatever the checkpoint's layout.
        let (q, scales, bytes) = q8_0(&w32);
        let w = Weight { data: WeightData::Q8_0 { q: &q, scales: &scales }, k: kk, n, layout: Layout::OutIn };
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::new("q8_0", name), |b| b.iter(|| k.matmul(&x, w, None, &mut out)));
    }
    group.finish();

    let mut group = c.benchmark_group(format!("gemm128[{}]", k.level().name()));
    group.sample_size(10);
    // HF checkpoints store the blocks' weights (in, out); Quill files store them (out, in).
    let out_in = shapes[..4].iter().map(|&(name, kk, n, _)| (name, kk, n, Layout::OutIn));
    for (name, kk, n, layout) in shapes[..4].iter().copied().chain(out_in) {
        let name = format!("{name}.{}", if layout == Layout::OutIn { "out_in" } else { "in_out" });
        let w32 = data(kk * n);
        let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
        let x = data(128 * kk);
        let mut out = vec![0.0; 128 * n];
        for (dtype, wd) in [("f32", WeightData::F32(&w32)), ("f16", WeightData::F16(&w16))] {
            let w = Weight { data: wd, k: kk, n, layout };
            group.throughput(Throughput::Elements((2 * 128 * kk * n) as u64));
            group.bench_function(BenchmarkId::new(dtype, &name), |b| b.iter(|| k.matmul(&x, w, None, &mut out)));
        }
    }
    group.finish();
}

fn row_ops(c: &mut Criterion) {
    let k = kernels().unwrap();
    let mut group = c.benchmark_group(format!("rows[{}]", k.level().name()));
    let x = data(128 * 768);
    let g = data(768);
    let mut out = vec![0.0; x.len()];
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    group.bench_function("layernorm_128x768", |b| b.iter(|| k.layernorm(&x, &g, &g, 1e-5, &mut out)));
    let mut h = data(128 * 3072);
    group.throughput(Throughput::Bytes((h.len() * 4) as u64));
    group.bench_function("gelu_new_128x3072", |b| {
        b.iter(|| k.activation(quill_kernels::Activation::GeluNew, &mut h));
    });
    let mut s = data(1024);
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("softmax_1024", |b| b.iter(|| k.softmax(&mut s)));
    group.finish();
}

fn attention(c: &mut Criterion) {
    let k = kernels().unwrap();
    let mut group = c.benchmark_group(format!("attention[{}]", k.level().name()));
    let (h, d) = (12, 64);
    for (m, first_pos) in [(1, 127), (1, 1023), (2, 1022), (5, 1019), (6, 1018), (8, 1016), (128, 0), (128, 896)] {
        let t = first_pos + m;
        let q = data(m * 3 * h * d);
        let keys = data(h * t * d);
        let values = data(h * t * d);
        let layer = AttentionLayer {
            q: &q,
            q_stride: 3 * h * d,
            keys: KvData::F32(&keys),
            values: KvData::F32(&values),
            head_stride: t * d,
            slots: t,
            n_head: h,
            d,
            n_queries: m,
            first_pos,
            scale: 0.125,
            window: None,
            extras: AttentionExtras::default(),
        };
        let mut scores = vec![0.0; h * t];
        let mut out = vec![0.0; m * h * d];
        group.bench_function(format!("q{m}_t{t}"), |b| b.iter(|| k.attention(&layer, &mut scores, &mut out, h * d)));
    }
    group.finish();
}

criterion_group!(benches, matmul, gemv_in_l2, prompt_matmuls, row_ops, attention);
criterion_main!(benches);

/// One-thread GEMV on a weight that fits in L2: the kernels' compute ceiling, to compare with
/// the memory bandwidth they need to keep up with.
fn gemv_in_l2(c: &mut Criterion) {
    let k = kernels().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut group = c.benchmark_group(format!("gemv_l2_1thread[{}]", k.level().name()));
    let (kk, n) = (256, 512);
    let w32 = data(kk * n);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let x = data(kk);
    let mut out = vec![0.0; n];
    for layout in [Layout::InOut, Layout::OutIn] {
        for (dtype, wd) in [("f32", WeightData::F32(&w32)), ("f16", WeightData::F16(&w16))] {
            let w = Weight { data: wd, k: kk, n, layout };
            group.throughput(Throughput::Elements((kk * n) as u64));
            group.bench_function(BenchmarkId::new(dtype, format!("{layout:?}")), |b| {
                pool.install(|| b.iter(|| k.matmul(&x, w, None, &mut out[..n])))
            });
        }
    }
    // q8_0 at the model's two widths, K = 768 and 3072 (per-row costs are amortized over K).
    for (kk, n) in [(768, 192), (3072, 48)] {
        let (q, scales, _) = q8_0(&data(kk * n));
        let x = data(kk);
        let w = Weight { data: WeightData::Q8_0 { q: &q, scales: &scales }, k: kk, n, layout: Layout::OutIn };
        group.throughput(Throughput::Elements((kk * n) as u64));
        group.bench_function(BenchmarkId::new("q8_0", format!("OutIn_k{kk}")), |b| {
            pool.install(|| b.iter(|| k.matmul(&x, w, None, &mut out[..n])))
        });
    }
    group.finish();
}

/// The 48 matmuls of a 128-token prompt through GPT-2 124M, each with its own weights (340 MB
/// of f32, so read from memory as in the model, not from cache), with biases, one thread and
/// all threads, in both layouts: the GEMMs' figure for a prompt without attention, norms and
/// the lm_head. In flop/s.
fn prompt_matmuls(c: &mut Criterion) {
    let k = kernels().unwrap();
    let shapes = [(768, 2304), (768, 768), (768, 3072), (3072, 768)];
    let layers: Vec<Vec<f32>> = (0..12).flat_map(|_| shapes.map(|(kk, n)| data(kk * n))).collect();
    let x = data(128 * 3072);
    let bias = data(3072);
    let mut out = vec![0.0; 128 * 3072];
    let flops: usize = 12 * shapes.iter().map(|(kk, n)| 2 * 128 * kk * n).sum::<usize>();
    let mut group = c.benchmark_group(format!("prompt128_matmuls[{}]", k.level().name()));
    group.sample_size(10);
    group.throughput(Throughput::Elements(flops as u64));
    for threads in [1, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for layout in [Layout::InOut, Layout::OutIn] {
            let id = BenchmarkId::new(format!("f32.{layout:?}"), format!("{threads}threads"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    pool.install(|| {
                        for (w, &(kk, n)) in layers.iter().zip(shapes.iter().cycle()) {
                            let w = Weight { data: WeightData::F32(w), k: kk, n, layout };
                            k.matmul(&x[..128 * kk], w, Some(&bias[..n]), &mut out[..128 * n]);
                        }
                    })
                })
            });
        }
    }
    group.finish();
}
