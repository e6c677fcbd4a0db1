//! The kernel table: chosen once per process, from the CPU's features or `QUILL_KERNELS`, and
//! the safe methods every caller goes through (length checks, splitting work across threads).

use std::sync::OnceLock;

use crate::activation::Activation;
use crate::attention_args::{AttentionLayer, KvData};
use crate::isa::{self, Fns};
use crate::team::parallel_for;
use crate::weight::{Layout, Weight, WeightData, Q8_BLOCK};

/// A family of kernel implementations, from the portable reference up to the widest SIMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// [`Level::Avx2`], but decoding with q8_0 weights quantizes the activation row per block of
    /// 32 and multiplies bytes (`vpmaddubsw`) instead of widening the weights to f32.
    Avx2Dot,
    /// x86_64 AVX-512 F + BW (with AVX2 + FMA + F16C).
    Avx512,
    /// [`Level::Avx512`] plus VNNI: decoding with q8_0 weights quantizes the activations per
    /// block of 32 and multiplies bytes (`vpdpbusd`) instead of widening the weights to f32.
    Avx512Vnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// [`Level::Neon`] plus the dotprod extension: q8_0 matmuls quantize the activations per
    /// block of 32 and multiply bytes (`sdot`), as [`Level::Avx512Vnni`] does.
    NeonDot,
}

impl Level {
    pub const ALL: [Level; 7] =
        [Level::Scalar, Level::Avx2, Level::Avx2Dot, Level::Avx512, Level::Avx512Vnni, Level::Neon, Level::NeonDot];

    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx2Dot => "avx2dot",
            Level::Avx512 => "avx512",
            Level::Avx512Vnni => "avx512vnni",
            Level::Neon => "neon",
            Level::NeonDot => "neondot",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the level's kernels.
    pub fn supported(self) -> bool {
        // Miri interprets neither CPUID nor vector intrinsics: only the scalar kernels run there.
        if cfg!(miri) {
            return self == Level::Scalar;
        }
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Dot => Level::Avx2.supported(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                Level::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx512.supported()
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Level::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => Level::Neon.supported() && std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Whether a matmul of `rows` rows of activations with q8_0 weights quantizes them to int8
    /// per block (integer dots) rather than widening the weights to f32 (exact). `avx2dot` does
    /// so only for a single row (decoding): its prompts run the exact f32 GEMM.
    pub fn quantizes_q8_activations(self, rows: usize) -> bool {
        match self {
            Level::Avx512Vnni | Level::NeonDot => true,
            Level::Avx2Dot => rows == 1,
            _ => false,
        }
    }

    /// Every level this CPU supports, lowest first.
    pub fn available() -> Vec<Level> {
        Level::ALL.into_iter().filter(|l| l.supported()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelError(pub String);

impl std::fmt::Display for LevelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LevelError {}

/// The SIMD features this CPU reports that Quill's kernels can use, for `quill info`.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { found.push($f); } )* };
        }
        probe!("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni");
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { found.push($f); } )* };
        }
        probe!("neon", "fp16", "dotprod");
    }
    found
}

/// Physical cores (not hyper-threads) where the OS says, else the logical count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(target_os = "linux")]
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut cores = std::collections::HashSet::new();
        let mut physical = "";
        for line in info.lines() {
            if let Some((key, value)) = line.split_once(':') {
                match key.trim() {
                    "physical id" => physical = value.trim(),
                    "core id" => {
                        cores.insert((physical.to_string(), value.trim().to_string()));
                    }
                    _ => {}
                }
            }
        }
        if !cores.is_empty() {
            return cores.len().min(logical);
        }
    }
    logical
}

/// The best level this CPU supports, or the one `requested` names (a level the CPU lacks is an
/// error, never a silent fallback). Each level's table is built once and shared.
pub fn select(requested: Option<&str>) -> Result<&'static Kernels, LevelError> {
    let available = Level::available();
    let level = match requested {
        None => *available.last().expect("scalar is always available"),
        Some(name) => {
            let level = Level::parse(name).ok_or_else(|| {
                LevelError(format!(
                    "unknown kernel level '{name}' (expected scalar, avx2, avx2dot, avx512, avx512vnni, neon or neondot)"
                ))
            })?;
            if !available.contains(&level) {
                return Err(LevelError(format!(
                    "kernel level '{}' is not supported by this CPU (available: {})",
                    level.name(),
                    available.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
                )));
            }
            level
        }
    };
    static TABLES: [OnceLock<Kernels>; Level::ALL.len()] = [const { OnceLock::new() }; Level::ALL.len()];
    let slot = Level::ALL.iter().position(|&l| l == level).expect("every level is in ALL");
    Ok(TABLES[slot].get_or_init(|| Kernels::for_supported_level(level)))
}

static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();

/// The process-wide kernel table: the first call decides (honouring `QUILL_KERNELS`), later calls
/// return the same table. Fails only when `QUILL_KERNELS` names a level that cannot be used.
pub fn kernels() -> Result<&'static Kernels, LevelError> {
    init(None)
}

/// Fixes the process-wide table to `requested` (else `QUILL_KERNELS`, else the best level) if no
/// table was chosen yet, and returns the table in force.
pub fn init(requested: Option<&str>) -> Result<&'static Kernels, LevelError> {
    if let Some(k) = CHOSEN.get() {
        return Ok(*k);
    }
    let from_env = std::env::var("QUILL_KERNELS").ok().filter(|s| !s.is_empty());
    let k = select(requested.or(from_env.as_deref()))?;
    Ok(*CHOSEN.get_or_init(|| k))
}

/// A pointer into an output that several threads write, each to its own disjoint part.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    /// Through a method, so closures capture the whole (Send) wrapper, not the raw pointer.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: every use hands each thread a disjoint set of elements (documented at the use).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

thread_local! {
    /// The calling thread's buffer of per-thread partial sums, kept between calls.
    static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Below this many multiply-adds a matmul runs on the calling thread: waking the pool costs more.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// Elementwise work (activations) is split across threads from this many elements on: six
/// rows of GPT-2's MLP, where one row (decoding) stays on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

#[derive(Clone, Copy)]
pub struct Kernels {
    level: Level,
    fns: Fns,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("level", &self.level).finish()
    }
}

impl Kernels {
    /// The table of `level`, which the caller has checked the CPU supports.
    fn for_supported_level(level: Level) -> Kernels {
        let fns = match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => isa::avx2::FNS,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Dot => isa::avx2dot::FNS,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => isa::avx512::FNS,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => isa::avx512vnni::FNS,
            #[cfg(target_arch = "aarch64")]
            Level::Neon => isa::neon::FNS,
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => isa::neondot::FNS,
            _ => isa::scalar::FNS,
        };
        Kernels { level, fns }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// `out[M, N] = x[M, K] · W + bias`, with `M = x.len() / K`; large ones split by columns
    /// across the rayon pool.
    pub fn matmul(&self, x: &[f32], w: Weight, bias: Option<&[f32]>, out: &mut [f32]) {
        let (k, n) = (w.k, w.n);
        assert!(k > 0 && n > 0 && x.len().is_multiple_of(k), "matmul: x length {} is not a multiple of K={k}", x.len());
        assert_eq!(w.data.len(), k * n, "matmul: weight is not K×N");
        if let WeightData::Q8_0 { scales, .. } = w.data {
            assert!(
                w.layout == Layout::OutIn && k.is_multiple_of(Q8_BLOCK) && scales.len() == k * n / Q8_BLOCK,
                "matmul: q8_0 weights must be (N, K) with K a multiple of {Q8_BLOCK} and one scale per block"
            );
        }
        if let WeightData::Blocks { format, data } = w.data {
            assert!(
                w.layout == Layout::OutIn && format.row_bytes(k).is_some_and(|row| data.len() == row * n),
                "matmul: {} weights must be (N, K) with K a multiple of {} and whole blocks",
                format.name(),
                format.block_weights()
            );
        }
        let m = x.len() / k;
        assert_eq!(out.len(), m * n, "matmul: out is not M×N");
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "matmul: bias is not N long");
        }
        // The kernels take at least one row: the f16 `(out, in)` GEMV reads a row of x per call.
        if m == 0 {
            return;
        }
        let threads = rayon::current_num_threads();
        let dst = SharedOut(out.as_mut_ptr());
        if threads <= 1 || m * k * n < PARALLEL_MIN_MACS {
            // SAFETY: `out` is exclusively ours and holds M×N floats; the table's ISA is present.
            unsafe { (self.fns.matmul_cols)(x, w, bias, dst.0, 0, n) };
            return;
        }
        if m == 1 && w.layout == Layout::InOut {
            return self.gemv_split_rows(x, w, bias, out, threads);
        }
        // Column ranges in multiples of 64, so every chunk starts on whole vectors and panels.
        let chunk = n.div_ceil(threads).next_multiple_of(64);
        parallel_for(n.div_ceil(chunk), &|c| {
            let (n0, n1) = (c * chunk, ((c + 1) * chunk).min(n));
            // SAFETY: each task writes only columns n0..n1 of every row, disjoint from the others;
            // `out` outlives the parallel loop; the table's ISA is present.
            unsafe { (self.fns.matmul_cols)(x, w, bias, dst.ptr(), n0, n1) };
        });
    }

    /// One row times an `(in, out)` weight on several threads: each thread streams its own
    /// contiguous block of weight rows (a column split would hand every thread short strided
    /// pieces of each row, which the prefetchers serve worse) into a partial sum, then the
    /// partial sums are added up.
    fn gemv_split_rows(&self, x: &[f32], w: Weight, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
        let (k, n) = (w.k, w.n);
        let rows = k.div_ceil(threads).next_multiple_of(4);
        let parts = k.div_ceil(rows);
        let mut partials = PARTIALS.with(|p| p.take());
        partials.resize((parts - 1) * n, 0.0);
        let (dst, spare) = (SharedOut(out.as_mut_ptr()), SharedOut(partials.as_mut_ptr()));
        parallel_for(parts, &|c| {
            let (k0, k1) = (c * rows, ((c + 1) * rows).min(k));
            let block = Weight { data: w.data.slice(k0 * n..k1 * n), k: k1 - k0, n, layout: Layout::InOut };
            // SAFETY: part 0 writes `out` (with the bias), part c > 0 writes its own N floats of
            // `partials`, which holds (parts - 1) × N; both outlive the loop; ISA present.
            unsafe {
                match c {
                    0 => (self.fns.matmul_cols)(&x[k0..k1], block, bias, dst.ptr(), 0, n),
                    _ => (self.fns.matmul_cols)(&x[k0..k1], block, None, spare.ptr().add((c - 1) * n), 0, n),
                }
            }
        });
        for part in partials.chunks_exact(n) {
            out.iter_mut().zip(part).for_each(|(o, p)| *o += p);
        }
        PARTIALS.with(|p| p.replace(partials));
    }

    /// LayerNorm over rows of `gamma.len()` features.
    pub fn layernorm(&self, x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let n = gamma.len();
        assert!(
            n > 0 && beta.len() == n && x.len().is_multiple_of(n) && out.len() == x.len(),
            "layernorm: shapes disagree"
        );
        // SAFETY: lengths checked above; the table's ISA is present.
        unsafe { (self.fns.layernorm)(x, gamma, beta, eps, out) }
    }

    /// The activation in place; a prompt's worth (at least `PARALLEL_MIN_ELEMENTS`) split
    /// across the pool, so that the other threads do not wait while one computes it all.
    pub fn activation(&self, kind: Activation, x: &mut [f32]) {
        let (len, threads) = (x.len(), rayon::current_num_threads());
        if threads <= 1 || len < PARALLEL_MIN_ELEMENTS {
            // SAFETY: any length is valid; the table's ISA is present.
            return unsafe { (self.fns.activation)(kind, x) };
        }
        let chunk = len.div_ceil(threads).next_multiple_of(64);
        let dst = SharedOut(x.as_mut_ptr());
        parallel_for(len.div_ceil(chunk), &|c| {
            let (a, b) = (c * chunk, ((c + 1) * chunk).min(len));
            // SAFETY: each task touches only elements a..b of x, disjoint from the others', and
            // x outlives the loop; any length is valid; the table's ISA is present.
            unsafe { (self.fns.activation)(kind, std::slice::from_raw_parts_mut(dst.ptr().add(a), b - a)) }
        });
    }

    pub fn softmax(&self, x: &mut [f32]) {
        if !x.is_empty() {
            // SAFETY: non-empty row; the table's ISA is present.
            unsafe { (self.fns.softmax)(x) }
        }
    }

    /// Sum of all elements (the memory-bandwidth probe).
    pub fn sum(&self, x: &[f32]) -> f32 {
        // SAFETY: any length is valid; the table's ISA is present.
        unsafe { (self.fns.sum)(x) }
    }

    /// Attention of every head of a layer (see [`AttentionLayer`]), heads split across the pool.
    /// `scores` is scratch of at least `H × T` floats; head `h` writes columns `h·D .. (h+1)·D`
    /// of each output row `i * out_stride`.
    pub fn attention(&self, layer: &AttentionLayer, scores: &mut [f32], out: &mut [f32], out_stride: usize) {
        let (h, d, m) = (layer.n_head, layer.d, layer.n_queries);
        let t = layer.first_pos + m;
        assert!(d > 0 && h > 0 && layer.window != Some(0), "attention: empty head or window");
        assert!(layer.q_stride >= h * d && out_stride >= h * d, "attention: strides smaller than H×D");
        // A ring must hold every position the chunk's first query still sees.
        let needed = layer.window.map_or(t, |w| t.min(w + m - 1));
        assert!(layer.slots >= needed, "attention: {} slots cannot hold the {needed} positions in view", layer.slots);
        assert!(layer.head_stride >= layer.slots * d, "attention: head blocks shorter than slots×D");
        let blocks = (h - 1) * layer.head_stride + layer.slots * d;
        assert!(
            layer.keys.len() >= blocks && layer.values.len() >= blocks,
            "attention: keys or values shorter than H blocks"
        );
        assert!(
            matches!((layer.keys, layer.values), (KvData::F32(_), KvData::F32(_)) | (KvData::F16(_), KvData::F16(_))),
            "attention: keys and values of different types"
        );
        // Scores scratch per head: one reused row of T, or every query's row when kept.
        let per_head = if layer.extras.keep_probs { m * t } else { t };
        assert!(scores.len() >= h * per_head, "attention: scores scratch shorter than H×T (×M when kept)");
        assert!(layer.extras.key_bias.is_none_or(|b| b.len() >= t), "attention: key_bias shorter than T");
        assert!(layer.extras.head_scale.is_none_or(|s| s.len() >= h), "attention: head_scale shorter than H");
        if m == 0 {
            return;
        }
        assert!(layer.q.len() >= (m - 1) * layer.q_stride + h * d, "attention: q too short");
        assert!(out.len() >= (m - 1) * out_stride + h * d, "attention: out too short");
        let dst = SharedOut(out.as_mut_ptr());
        let run = |head: usize, scores: &mut [f32]| {
            // SAFETY: head `head` writes only its own D columns of each output row, disjoint from
            // the other heads; lengths checked above; the table's ISA is present.
            unsafe { (self.fns.attention_head)(&layer.head(head), scores, dst.ptr().add(head * d), out_stride) };
        };
        if rayon::current_num_threads() <= 1 || m * t * h * d < PARALLEL_MIN_MACS {
            (0..h).for_each(|head| run(head, &mut scores[head * per_head..][..per_head]));
        } else {
            let scratch = SharedOut(scores.as_mut_ptr());
            parallel_for(h, &|head| {
                // SAFETY: head `head` alone uses floats head·per_head .. (head+1)·per_head of the
                // scratch, which holds H × per_head (checked above) and outlives the loop.
                run(head, unsafe { std::slice::from_raw_parts_mut(scratch.ptr().add(head * per_head), per_head) })
            });
        }
    }
}
