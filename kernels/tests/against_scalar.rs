//! Every kernel level this CPU supports against the scalar reference: odd sizes, tails, unaligned
//! slices, both weight layouts, f32, f16 and q8_0 weights, one and many threads.

use quill_kernels::{
    f16, quantize_q8_0, scalar, select, Activation, AttentionExtras, AttentionLayer, Kernels, KvData, Layout, Level,
    Weight, WeightData, Q8_BLOCK,
};

/// Deterministic xorshift values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn levels() -> Vec<&'static Kernels> {
    Level::available().into_iter().map(|l| select(Some(l.name())).unwrap()).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(err <= tol, "{what}: element {i}: got {g}, want {w} (error {err:e})");
    }
}

/// Under Miri (tools/sanitize.sh), which interprets every operation, shapes past this many
/// multiply-adds are skipped: the small ones cover the same code paths and tails.
fn too_big_for_miri(macs: usize) -> bool {
    cfg!(miri) && macs > 40_000
}

/// Runs `f` once on the calling thread only and once on a two-thread pool.
fn with_thread_counts(f: impl Fn(&str) + Sync) {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| f(&format!("{threads} threads")));
    }
}

#[test]
fn matmul_matches_scalar() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let shapes = [
        (1, 1, 1),
        (1, 17, 33),
        (1, 64, 48),
        (1, 769, 130),
        // One row: the GEMV's four-vector steps, a single vector and a scalar tail all at once.
        (1, 45, 33),
        (2, 31, 70),
        (3, 100, 17),
        (7, 257, 65),
        // Either side of the switch from few-row GEMV tiles to the GEMM (12 rows with AVX2,
        // 24 with AVX-512), with partial tiles of rows of x and of weight rows.
        (11, 40, 9),
        (12, 33, 6),
        (23, 65, 37),
        (24, 33, 5),
        (64, 96, 200),
        (70, 300, 97),
        // More columns than one packed group of the (in, out) GEMM (512), the last panel partial.
        (9, 40, 1100),
        // Deeper than one K step of either GEMM (256), a partial last step.
        (40, 800, 70),
        // A last K step shorter than the micro-tiles' groups of 8 k steps.
        (30, 259, 70),
    ];
    for (m, k, n) in shapes {
        if too_big_for_miri(m * k * n) {
            continue;
        }
        // One extra element in front so the slices start unaligned.
        let x_buf = rng.vec(m * k + 1);
        let w_buf = rng.vec(k * n + 1);
        let w16_buf: Vec<f16> = w_buf.iter().map(|&v| f16::from_f32(v)).collect();
        let bias = rng.vec(n);
        let x = &x_buf[1..];
        for layout in [Layout::InOut, Layout::OutIn] {
            for data in [WeightData::F32(&w_buf[1..]), WeightData::F16(&w16_buf[1..])] {
                for b in [None, Some(&bias[..])] {
                    let w = Weight { data, k, n, layout };
                    let mut want = vec![0.0; m * n];
                    scalar::matmul(x, w, b, &mut want);
                    for kernels in levels() {
                        with_thread_counts(|threads| {
                            let mut got = vec![f32::NAN; m * n];
                            kernels.matmul(x, w, b, &mut got);
                            let what = format!(
                                "{:?} {m}x{k}x{n} {layout:?} {data:?} bias {} {threads}",
                                kernels.level(),
                                b.is_some()
                            );
                            assert_close(
                                &what[..what.find('[').unwrap_or(what.len())],
                                &got,
                                &want,
                                2e-5 * (k as f32).sqrt(),
                            );
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn layernorm_activations_softmax_sum_match_scalar() {
    let mut rng = Rng(42);
    for n in [1, 3, 8, 15, 16, 17, 33, 64, 100, 768] {
        let x: Vec<f32> = rng.vec(3 * n + 1).iter().map(|v| v * 4.0 + 0.5).collect();
        let x = &x[1..];
        let gamma = rng.vec(n);
        let beta = rng.vec(n);
        let mut want = vec![0.0; 3 * n];
        scalar::layernorm(x, &gamma, &beta, 1e-5, &mut want);
        for kernels in levels() {
            let mut got = vec![0.0; 3 * n];
            kernels.layernorm(x, &gamma, &beta, 1e-5, &mut got);
            assert_close(&format!("{:?} layernorm {n}", kernels.level()), &got, &want, 2e-6);

            for kind in [Activation::GeluNew, Activation::Gelu, Activation::Relu, Activation::Silu, Activation::Tanh] {
                let mut want = x.to_vec();
                scalar::activation(kind, &mut want);
                let mut got = x.to_vec();
                kernels.activation(kind, &mut got);
                assert_close(&format!("{:?} {kind:?} {n}", kernels.level()), &got, &want, 2e-6);
            }

            let mut want = x.to_vec();
            scalar::softmax(&mut want);
            let mut got = x.to_vec();
            kernels.softmax(&mut got);
            assert_close(&format!("{:?} softmax {n}", kernels.level()), &got, &want, 2e-6);

            let s = kernels.sum(x);
            assert!((s - scalar::sum(x)).abs() <= 1e-5 * (n as f32), "{:?} sum {n}", kernels.level());
        }
    }
    // A prompt's MLP activations (split across the pool at two threads), from an unaligned start.
    let x: Vec<f32> = rng.vec(128 * 3072 + 5).iter().map(|v| v * 4.0).collect();
    for kernels in levels().into_iter().filter(|_| !too_big_for_miri(x.len())) {
        with_thread_counts(|threads| {
            for kind in [Activation::GeluNew, Activation::Silu] {
                let mut want = x[1..].to_vec();
                scalar::activation(kind, &mut want);
                let mut got = x[1..].to_vec();
                kernels.activation(kind, &mut got);
                assert_close(&format!("{:?} {kind:?} prompt, {threads}", kernels.level()), &got, &want, 2e-6);
            }
        });
    }
    // Extreme inputs: the vector exp must saturate like the scalar one.
    for kernels in levels() {
        let x = [
            -1000.0, -90.0, -50.0, 0.0, 50.0, 88.0, 1e-8, -1e-8, 9.5, -9.5, 20.0, -20.0, 3.0, -3.0, 0.5, 100.0, -100.0,
        ];
        for kind in [Activation::GeluNew, Activation::Silu, Activation::Tanh] {
            let mut want = x.to_vec();
            scalar::activation(kind, &mut want);
            let mut got = x.to_vec();
            kernels.activation(kind, &mut got);
            assert_close(&format!("{:?} {kind:?} extremes", kernels.level()), &got, &want, 2e-6);
        }
        let mut got = x.to_vec();
        kernels.softmax(&mut got);
        let mut want = x.to_vec();
        scalar::softmax(&mut want);
        assert_close(&format!("{:?} softmax extremes", kernels.level()), &got, &want, 2e-6);
    }
}

#[test]
fn attention_matches_scalar() {
    let mut rng = Rng(7);
    for (h, d, first_pos, m, window) in [
        (1, 1, 0, 1, None),
        (2, 8, 0, 5, None),
        (3, 16, 9, 1, None),
        (4, 64, 30, 7, None),
        (2, 12, 20, 6, Some(8)),
        (3, 17, 0, 13, Some(4)),
        // Head sizes of 1, 2, 4 and 8 vectors keep the rows in registers (odd counts of visible
        // positions leave one for the tail).
        (1, 32, 5, 4, None),
        (2, 128, 40, 3, Some(20)),
        // Prompts of a block of queries or more go in micro-kernel tiles: several blocks and a
        // partial one, head sizes that are not a whole panel, a window, a long context.
        (2, 64, 100, 37, None),
        (2, 40, 3, 20, None),
        (1, 64, 50, 33, Some(16)),
        (2, 128, 0, 24, None),
    ] {
        let t = first_pos + m;
        let cap = t + 3;
        let q_stride = 3 * h * d + 1;
        let q = rng.vec(m * q_stride);
        let keys = rng.vec(h * cap * d);
        let values = rng.vec(h * cap * d);
        let keys16: Vec<f16> = keys.iter().map(|&v| f16::from_f32(v)).collect();
        let values16: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
        for (kd, vd) in [(KvData::F32(&keys), KvData::F32(&values)), (KvData::F16(&keys16), KvData::F16(&values16))] {
            let layer = AttentionLayer {
                q: &q,
                q_stride,
                keys: kd,
                values: vd,
                head_stride: cap * d,
                slots: cap,
                n_head: h,
                d,
                n_queries: m,
                first_pos,
                scale: 0.3,
                window,
                extras: AttentionExtras::default(),
            };
            let out_stride = h * d + 2;
            let mut want = vec![0.0; m * out_stride];
            let mut scores = vec![0.0; t];
            for head in 0..h {
                scalar::attention(&layer.head(head), &mut scores, &mut want[head * d..], out_stride);
            }
            for kernels in levels() {
                with_thread_counts(|threads| {
                    let mut got = vec![0.0; m * out_stride];
                    let mut scores = vec![0.0; h * t];
                    kernels.attention(&layer, &mut scores, &mut got, out_stride);
                    assert_close(
                        &format!("{:?} attention h{h} d{d} t{t} {threads} {kd:.0?}", kernels.level()),
                        &got,
                        &want,
                        2e-6,
                    );
                });
            }
        }
    }
}

#[test]
fn asking_for_a_level_the_cpu_lacks_is_an_error() {
    assert!(select(Some("scalar")).is_ok());
    assert!(select(Some("sse9")).unwrap_err().0.contains("unknown kernel level 'sse9'"));
    #[cfg(target_arch = "x86_64")]
    assert!(select(Some("neon")).unwrap_err().0.contains("not supported by this CPU"));
    #[cfg(target_arch = "aarch64")]
    assert!(select(Some("avx2")).unwrap_err().0.contains("not supported by this CPU"));
}

/// f32 keys and values of heads `stride` floats apart, `slots` positions each, seen through a
/// window; `dims` = (heads, head size, queries, first position, window).
fn window_layer<'a>(
    q: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    stride: usize,
    slots: usize,
    (h, d, m, first_pos, window): (usize, usize, usize, usize, usize),
) -> AttentionLayer<'a> {
    AttentionLayer {
        q,
        q_stride: h * d,
        keys: KvData::F32(keys),
        values: KvData::F32(values),
        head_stride: stride,
        slots,
        n_head: h,
        d,
        n_queries: m,
        first_pos,
        scale: 0.5,
        window: Some(window),
        extras: AttentionExtras::default(),
    }
}

#[test]
fn a_ring_of_slots_gives_the_same_attention_as_a_full_cache() {
    let mut rng = Rng(11);
    let (h, d, window) = (2, 8, 5);
    for (first_pos, m) in [(0, 1), (3, 4), (17, 1), (20, 6), (9, 9)] {
        let t = first_pos + m;
        let slots = window + m - 1 + 2;
        let q = rng.vec(m * h * d);
        let keys = rng.vec(h * t * d);
        let values = rng.vec(h * t * d);
        // The same positions in a ring: position j of head hh at slot j % slots.
        let (mut ring_k, mut ring_v) = (vec![f32::NAN; h * slots * d], vec![f32::NAN; h * slots * d]);
        for hh in 0..h {
            for j in t.saturating_sub(slots)..t {
                let (src, dst) = ((hh * t + j) * d, (hh * slots + j % slots) * d);
                ring_k[dst..dst + d].copy_from_slice(&keys[src..src + d]);
                ring_v[dst..dst + d].copy_from_slice(&values[src..src + d]);
            }
        }
        let dims = (h, d, m, first_pos, window);
        let full = window_layer(&q, &keys, &values, t * d, t, dims);
        let ring = window_layer(&q, &ring_k, &ring_v, slots * d, slots, dims);
        for kernels in levels() {
            let mut want = vec![0.0; m * h * d];
            kernels.attention(&full, &mut vec![0.0; h * t], &mut want, h * d);
            let mut got = vec![0.0; m * h * d];
            kernels.attention(&ring, &mut vec![0.0; h * t], &mut got, h * d);
            assert_close(&format!("{:?} ring first_pos {first_pos} m {m}", kernels.level()), &got, &want, 1e-6);
        }
    }
}

/// Masks, head scales and kept probabilities against attention written out in f64.
#[test]
fn attention_extras_match_a_direct_computation() {
    let mut rng = Rng(23);
    let (h, d, first_pos) = (3, 8, 4);
    // 5 queries go one by one on every level; 19 in micro-kernel tiles.
    for (m, window) in [(5, None), (5, Some(3)), (19, None), (19, Some(3))] {
        let t = first_pos + m;
        let q = rng.vec(m * h * d);
        let keys = rng.vec(h * t * d);
        let values = rng.vec(h * t * d);
        // Positions 0..=4 masked: query 0 (at position 4) sees only masked keys.
        let key_bias: Vec<f32> = (0..t).map(|j| if j <= 4 || j == 7 { f32::MIN } else { 0.0 }).collect();
        let head_scale = [1.0, 0.0, 0.5];
        let layer = AttentionLayer {
            q: &q,
            q_stride: h * d,
            keys: KvData::F32(&keys),
            values: KvData::F32(&values),
            head_stride: t * d,
            slots: t,
            n_head: h,
            d,
            n_queries: m,
            first_pos,
            scale: 0.7,
            window,
            extras: AttentionExtras { key_bias: Some(&key_bias), head_scale: Some(&head_scale), keep_probs: true },
        };
        // The reference: probabilities [H][M, T] and outputs [M, H·D].
        let (mut want_p, mut want_o) = (vec![0.0f32; h * m * t], vec![0.0f32; m * h * d]);
        for hh in 0..h {
            for i in 0..m {
                let pos = first_pos + i;
                let start = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let qi = &q[i * h * d + hh * d..][..d];
                let s: Vec<f64> = (start..=pos)
                    .map(|j| {
                        let k = &keys[(hh * t + j) * d..][..d];
                        let dot: f64 = qi.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum();
                        dot * 0.7 + if key_bias[j] < 0.0 { -1e30 } else { 0.0 }
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (jj, j) in (start..=pos).enumerate() {
                    let p = e[jj] / sum * head_scale[hh] as f64;
                    want_p[(hh * m + i) * t + j] = p as f32;
                    for c in 0..d {
                        want_o[i * h * d + hh * d + c] += (p * values[(hh * t + j) * d + c] as f64) as f32;
                    }
                }
            }
        }
        let mut scalar_o = vec![0.0; m * h * d];
        let mut scalar_p = vec![0.0; h * m * t];
        for hh in 0..h {
            scalar::attention(&layer.head(hh), &mut scalar_p[hh * m * t..], &mut scalar_o[hh * d..], h * d);
        }
        assert_close(&format!("scalar probs {window:?}"), &scalar_p, &want_p, 1e-6);
        assert_close(&format!("scalar out {window:?}"), &scalar_o, &want_o, 1e-5);
        for kernels in levels() {
            with_thread_counts(|threads| {
                let mut got_o = vec![0.0; m * h * d];
                let mut got_p = vec![f32::NAN; h * m * t];
                kernels.attention(&layer, &mut got_p, &mut got_o, h * d);
                let name = format!("{:?} {threads} m {m} {window:?}", kernels.level());
                assert_close(&format!("{name} probs"), &got_p, &want_p, 1e-6);
                assert_close(&format!("{name} out"), &got_o, &want_o, 1e-5);
            });
        }
        // Query 0 sees only masked keys: uniform over them (head 0), not NaN.
        let visible = window.map_or(first_pos + 1, |w| w.min(first_pos + 1));
        assert!((want_p[first_pos] - 1.0 / visible as f32).abs() < 1e-6);
    }
}

#[test]
fn quantize_q8_0_rounds_to_the_nearest_step_of_the_block_scale() {
    let mut rng = Rng(5);
    let mut x = rng.vec(4 * Q8_BLOCK);
    x[Q8_BLOCK..2 * Q8_BLOCK].fill(0.0); // an all-zero block: scale 0, values 0
    x[3 * Q8_BLOCK] = 1e4; // an outlier block
    let (mut q, mut d) = (vec![0i8; x.len()], vec![f16::ZERO; 4]);
    quantize_q8_0(&x, &mut q, &mut d);
    assert_eq!(d[1].to_f32(), 0.0);
    assert!(q[Q8_BLOCK..2 * Q8_BLOCK].iter().all(|&v| v == 0));
    for (b, block) in x.chunks_exact(Q8_BLOCK).enumerate() {
        let scale = d[b].to_f32();
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((scale - amax / 127.0).abs() <= amax / 127.0 * 1e-3, "block {b}: scale {scale}");
        for (i, &v) in block.iter().enumerate() {
            let back = q[b * Q8_BLOCK + i] as f32 * scale;
            assert!((back - v).abs() <= scale * 0.5 + amax * 1e-3, "block {b} [{i}]: {v} -> {back}");
        }
    }
}

/// q8_0 matmuls against the dequantized weights multiplied out in f64, and against the scalar
/// reference, at every level: GEMV (M = 1) and GEMM, K past one pass of widened scales.
#[test]
fn q8_0_matmul_matches_the_dequantized_weights() {
    let mut rng = Rng(0x51);
    for (m, k, n) in
        [(1, 32, 1), (1, 64, 7), (1, 800, 67), (2, 96, 33), (5, 8256, 9), (130, 320, 70), (17, 64, 16), (1, 768, 2304)]
    {
        if too_big_for_miri(m * k * n) {
            continue;
        }
        let x = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let (mut q, mut d) = (vec![0i8; n * k], vec![f16::ZERO; n * k / Q8_BLOCK]);
        quantize_q8_0(&w, &mut q, &mut d);
        let data = WeightData::Q8_0 { q: &q, scales: &d };
        let weight = Weight { data, k, n, layout: Layout::OutIn };
        // With the bias, and without (as zeros for the oracles).
        for given in [Some(&bias[..]), None] {
            let bias = given.map_or(vec![0.0; n], |b| b.to_vec());
            q8_0_matmul_case(m, k, n, &x, weight, given, &bias);
        }
    }
}

/// One case of [`q8_0_matmul_matches_the_dequantized_weights`]: `given` is passed to the
/// kernels, `bias` (zeros without one) to the oracles.
fn q8_0_matmul_case(m: usize, k: usize, n: usize, x: &[f32], weight: Weight, given: Option<&[f32]>, bias: &[f32]) {
    let WeightData::Q8_0 { q, scales: d } = weight.data else { unreachable!("q8_0 weights") };
    let data = weight.data;
    let mut exact = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|kk| x[i * k + kk] as f64 * data.get(j * k + kk) as f64).sum();
            exact[i * n + j] = (s + bias[j] as f64) as f32;
        }
    }
    let mut reference = vec![0.0; m * n];
    scalar::matmul(x, weight, given, &mut reference);
    let tol = 2e-5 * (k as f32).sqrt();
    let with = if given.is_some() { "bias" } else { "no bias" };
    assert_close(&format!("scalar q8_0 {m}x{k}x{n} {with}"), &reference, &exact, tol);
    let int_dots = q8_int_dots_reference(x, q, d, k, bias);
    for kernels in levels() {
        // Levels that quantize the rows to int8 blocks (avx512vnni and neondot always,
        // avx2dot for one row) have their own oracle.
        let want = if kernels.level().quantizes_q8_activations(m) { &int_dots } else { &exact };
        with_thread_counts(|threads| {
            let mut got = vec![f32::NAN; m * n];
            kernels.matmul(x, weight, given, &mut got);
            assert_close(&format!("{:?} q8_0 {m}x{k}x{n} {with} {threads}", kernels.level()), &got, want, tol);
        });
    }
}

/// Rows of x times q8_0 weights by the integer-dot definition: each row quantized per block of
/// 32 (scale max|x| / 127, values rounded to the nearest step, ties to even), each block's
/// integer dot product times both scales, summed in f64, plus the bias.
fn q8_int_dots_reference(x: &[f32], q: &[i8], d: &[f16], k: usize, bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    let blocks = k / Q8_BLOCK;
    let mut out = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks_exact(k) {
        let (mut xq, mut xd) = (vec![0i32; k], vec![0.0f32; blocks]);
        for (b, block) in row.chunks_exact(Q8_BLOCK).enumerate() {
            let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            xd[b] = amax / 127.0;
            // Zeros for an all-zero block and for one so small that 127 / amax overflows.
            let inv = 127.0 / amax;
            for (i, &v) in block.iter().enumerate() {
                xq[b * Q8_BLOCK + i] = if inv.is_finite() { (v * inv).round_ties_even() as i32 } else { 0 };
            }
        }
        out.extend((0..n).map(|j| {
            let s: f64 = (0..blocks)
                .map(|b| {
                    let dot: i32 =
                        (0..Q8_BLOCK).map(|i| q[j * k + b * Q8_BLOCK + i] as i32 * xq[b * Q8_BLOCK + i]).sum();
                    dot as f64 * d[j * blocks + b].to_f32() as f64 * xd[b] as f64
                })
                .sum();
            (s + bias[j] as f64) as f32
        }));
    }
    out
}

/// The integer dots stay within what quantizing the activations can cost: per element half a
/// step of its block's scale, times the weight.
#[test]
fn q8_0_integer_dots_stay_within_the_activation_rounding() {
    let mut rng = Rng(0x77);
    let (k, n) = (768, 64);
    let mut x = rng.vec(k);
    x[5] = 40.0; // an outlier: its block's step is coarse
    let w = rng.vec(n * k);
    let (mut q, mut d) = (vec![0i8; n * k], vec![f16::ZERO; n * k / Q8_BLOCK]);
    quantize_q8_0(&w, &mut q, &mut d);
    let data = WeightData::Q8_0 { q: &q, scales: &d };
    let got = q8_int_dots_reference(&x, &q, &d, k, &[0.0; 64]);
    for (j, &got) in got.iter().enumerate() {
        let exact: f64 = (0..k).map(|i| x[i] as f64 * data.get(j * k + i) as f64).sum();
        let bound: f64 = (0..k)
            .map(|i| {
                let block = &x[i / Q8_BLOCK * Q8_BLOCK..][..Q8_BLOCK];
                let step = block.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                data.get(j * k + i).abs() as f64 * step * 0.5
            })
            .sum();
        assert!((got as f64 - exact).abs() <= bound * 1.001 + 1e-6, "row {j}: {got} vs {exact} (bound {bound})");
    }
}

/// Extreme but finite blocks. One so small that 127 / max |x| overflows quantizes to zeros on
/// the integer levels, and every level matches its oracle. One whose |x| sum overflows f32 (each
/// value ~1e37) must stay finite on the integer levels (its scale must not become NaN); the
/// widening levels multiply x by the int8 weight before the scale and overflow from |x| ≈ 2.7e36
/// on, as any f32 arithmetic on such activations would, so they are not asked. GEMV and GEMM.
#[test]
fn q8_0_matmul_handles_huge_and_tiny_blocks() {
    let mut rng = Rng(0x5A);
    // Five blocks: the GEMVs that sum blocks in groups of four (avx2dot) take the group and the
    // block after it by their two paths.
    let (k, n) = (160, 5);
    let w = rng.vec(n * k);
    let (mut q, mut d) = (vec![0i8; n * k], vec![f16::ZERO; n * k / Q8_BLOCK]);
    quantize_q8_0(&w, &mut q, &mut d);
    let data = WeightData::Q8_0 { q: &q, scales: &d };
    let weight = Weight { data, k, n, layout: Layout::OutIn };
    for (m, huge) in [(1, false), (3, false), (1, true), (3, true)] {
        let mut x = rng.vec(m * k);
        for row in x.chunks_exact_mut(k) {
            row[Q8_BLOCK..2 * Q8_BLOCK].iter_mut().for_each(|v| *v *= 1e-38);
            if huge {
                for (i, v) in row[..Q8_BLOCK].iter_mut().enumerate() {
                    *v = if i % 2 == 0 { 1.6e37 } else { -1.6e37 } * (1.0 - i as f32 / 64.0);
                }
            }
        }
        let mut exact = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|kk| x[i * k + kk] as f64 * data.get(j * k + kk) as f64).sum();
                exact[i * n + j] = s as f32;
            }
        }
        let int_dots = q8_int_dots_reference(&x, &q, &d, k, &[0.0; 5]);
        assert!(int_dots.iter().chain(&exact).all(|v| v.is_finite()), "oracles: {int_dots:?} {exact:?}");
        for kernels in levels() {
            let int_level = kernels.level().quantizes_q8_activations(m);
            if huge && !int_level {
                continue;
            }
            let mut got = vec![f32::NAN; m * n];
            kernels.matmul(&x, weight, None, &mut got);
            let want = if int_level { &int_dots } else { &exact };
            assert_close(&format!("{:?} M={m} huge={huge}", kernels.level()), &got, want, 1e-4);
        }
    }
}

/// A NaN or infinity in the row makes the outputs NaN on every level, integer dots included
/// (the model then reports the layer it came from).
#[test]
fn q8_0_matmul_propagates_non_finite_activations() {
    let mut rng = Rng(0x99);
    let (k, n) = (96, 5);
    let w = rng.vec(n * k);
    let (mut q, mut d) = (vec![0i8; n * k], vec![f16::ZERO; n * k / Q8_BLOCK]);
    quantize_q8_0(&w, &mut q, &mut d);
    let weight = Weight { data: WeightData::Q8_0 { q: &q, scales: &d }, k, n, layout: Layout::OutIn };
    // One row (the GEMV) and three (the GEMM), the bad value in the last row: only its outputs.
    for (m, bad) in [1, 3].into_iter().flat_map(|m| [(m, f32::NAN), (m, f32::INFINITY), (m, f32::NEG_INFINITY)]) {
        let mut x = rng.vec(m * k);
        x[(m - 1) * k + 40] = bad;
        for kernels in levels() {
            let mut got = vec![0.0f32; m * n];
            kernels.matmul(&x, weight, None, &mut got);
            let (good, last) = got.split_at((m - 1) * n);
            let level = kernels.level();
            assert!(last.iter().all(|v| !v.is_finite()), "{level:?} M={m} with {bad} in the last row: {got:?}");
            assert!(good.iter().all(|v| v.is_finite()), "{level:?} M={m}: rows without {bad}: {got:?}");
        }
    }
}

#[test]
#[should_panic(expected = "q8_0 weights must be (N, K)")]
fn q8_0_weights_stored_in_out_are_refused() {
    let (q, d) = (vec![0i8; 64], vec![f16::ZERO; 2]);
    let w = Weight { data: WeightData::Q8_0 { q: &q, scales: &d }, k: 32, n: 2, layout: Layout::InOut };
    select(Some("scalar")).unwrap().matmul(&[0.0; 32], w, None, &mut [0.0; 2]);
}

/// No rows of x (M = 0): nothing to compute and nothing written, at every level, for every weight
/// type and layout.
#[test]
fn a_matmul_of_no_rows_writes_nothing() {
    let (k, n) = (64, 40);
    let w = Rng(0x0E).vec(k * n);
    let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
    let (mut q, mut d) = (vec![0i8; n * k], vec![f16::ZERO; n * k / Q8_BLOCK]);
    quantize_q8_0(&w, &mut q, &mut d);
    let weights = [
        (WeightData::F32(&w), Layout::InOut),
        (WeightData::F32(&w), Layout::OutIn),
        (WeightData::F16(&w16), Layout::InOut),
        (WeightData::F16(&w16), Layout::OutIn),
        (WeightData::Q8_0 { q: &q, scales: &d }, Layout::OutIn),
    ];
    let bias = vec![1.0; n];
    for (data, layout) in weights {
        for kernels in levels() {
            with_thread_counts(|_| kernels.matmul(&[], Weight { data, k, n, layout }, Some(&bias), &mut []));
        }
    }
}

/// The scalar reference is a safe API: an output too short for M × N is refused, not written past.
#[test]
#[should_panic(expected = "scalar::matmul: out is shorter than M×N")]
fn scalar_matmul_refuses_a_short_output() {
    let w = [0.5f32; 4 * 3];
    let weight = Weight { data: WeightData::F32(&w), k: 4, n: 3, layout: Layout::InOut };
    scalar::matmul(&[1.0; 2 * 4], weight, None, &mut [0.0; 2 * 3 - 1]);
}

/// As [`scalar_matmul_refuses_a_short_output`], for attention's output rows.
#[test]
#[should_panic(expected = "scalar::attention: out is shorter than its rows")]
fn scalar_attention_refuses_a_short_output() {
    let (d, m) = (4, 3);
    let (q, kv) = (vec![0.1; m * d], vec![0.2; m * d]);
    let layer = AttentionLayer {
        q: &q,
        q_stride: d,
        keys: KvData::F32(&kv),
        values: KvData::F32(&kv),
        head_stride: m * d,
        slots: m,
        n_head: 1,
        d,
        n_queries: m,
        first_pos: 0,
        scale: 1.0,
        window: None,
        extras: AttentionExtras::default(),
    };
    scalar::attention(&layer.head(0), &mut [0.0; 3], &mut [0.0; 3 * 4 - 1], d);
}
