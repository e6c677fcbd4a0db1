//! The kernel table: chosen once per process, from the CPU's features or `QUILL_KERNELS`.

use std::sync::OnceLock;

use crate::{scalar, Activation, AttentionHead, WeightF32};

/// A family of kernel implementations, from the portable reference up to the widest SIMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512, Level::Neon]
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
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
        probe!("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni");
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

/// The levels this build implements; SIMD tables join this list as they are written.
const IMPLEMENTED: &[Level] = &[Level::Scalar];

/// Picks the best implemented level, or the one `requested` names (a level the build or the CPU
/// lacks is an error, never a silent fallback).
pub fn select(requested: Option<&str>) -> Result<Kernels, LevelError> {
    let level = match requested {
        None => *IMPLEMENTED.iter().max().expect("scalar is always implemented"),
        Some(name) => {
            let level = Level::parse(name).ok_or_else(|| {
                LevelError(format!("unknown kernel level '{name}' (expected scalar, avx2, avx512 or neon)"))
            })?;
            if !IMPLEMENTED.contains(&level) {
                return Err(LevelError(format!(
                    "kernel level '{}' is not available in this build (available: {})",
                    level.name(),
                    IMPLEMENTED.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
                )));
            }
            level
        }
    };
    Ok(Kernels::for_level(level))
}

static CHOSEN: OnceLock<Kernels> = OnceLock::new();

/// The process-wide kernel table: the first call decides (honouring `QUILL_KERNELS`), later calls
/// return the same table. Fails only when `QUILL_KERNELS` names a level that cannot be used.
pub fn kernels() -> Result<&'static Kernels, LevelError> {
    if let Some(k) = CHOSEN.get() {
        return Ok(k);
    }
    let requested = std::env::var("QUILL_KERNELS").ok().filter(|s| !s.is_empty());
    let k = select(requested.as_deref())?;
    Ok(CHOSEN.get_or_init(|| k))
}

type MatmulF32 = fn(&[f32], WeightF32, Option<&[f32]>, &mut [f32]);
type LayerNorm = fn(&[f32], &[f32], &[f32], f32, &mut [f32]);
type Act = fn(Activation, &mut [f32]);
type Softmax = fn(&mut [f32]);
type Attention = fn(AttentionHead, &mut [f32], &mut [f32], usize);

/// One implementation of every op. The methods check all lengths, so every variant behind them
/// may assume well-formed arguments.
#[derive(Clone, Copy)]
pub struct Kernels {
    level: Level,
    matmul_f32: MatmulF32,
    layernorm: LayerNorm,
    activation: Act,
    softmax: Softmax,
    attention: Attention,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("level", &self.level).finish()
    }
}

impl Kernels {
    fn for_level(level: Level) -> Kernels {
        match level {
            Level::Scalar | Level::Avx2 | Level::Avx512 | Level::Neon => Kernels {
                level,
                matmul_f32: scalar::matmul_f32,
                layernorm: scalar::layernorm,
                activation: scalar::activation,
                softmax: scalar::softmax,
                attention: scalar::attention,
            },
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// `out[M, N] = x[M, K] · W + bias`, with `M = x.len() / K`.
    pub fn matmul_f32(&self, x: &[f32], w: WeightF32, bias: Option<&[f32]>, out: &mut [f32]) {
        assert!(w.k > 0 && x.len() % w.k == 0, "matmul: x length {} is not a multiple of K={}", x.len(), w.k);
        assert_eq!(w.data.len(), w.k * w.n, "matmul: weight is not K×N");
        assert_eq!(out.len(), x.len() / w.k * w.n, "matmul: out is not M×N");
        if let Some(b) = bias {
            assert_eq!(b.len(), w.n, "matmul: bias is not N long");
        }
        (self.matmul_f32)(x, w, bias, out)
    }

    /// LayerNorm over rows of `gamma.len()` features.
    pub fn layernorm(&self, x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let n = gamma.len();
        assert!(n > 0 && beta.len() == n && x.len() % n == 0 && out.len() == x.len(), "layernorm: shapes disagree");
        (self.layernorm)(x, gamma, beta, eps, out)
    }

    pub fn activation(&self, kind: Activation, x: &mut [f32]) {
        (self.activation)(kind, x)
    }

    pub fn softmax(&self, x: &mut [f32]) {
        if !x.is_empty() {
            (self.softmax)(x)
        }
    }

    /// Attention of one head (see [`AttentionHead`]); `scores` is scratch of at least `T` floats.
    pub fn attention(&self, h: AttentionHead, scores: &mut [f32], out: &mut [f32], out_stride: usize) {
        let t = h.first_pos + h.n_queries;
        assert!(h.d > 0 && h.q_stride >= h.d && out_stride >= h.d, "attention: strides smaller than D");
        assert!(h.window != Some(0), "attention: window of 0");
        if h.n_queries == 0 {
            return;
        }
        let last_row = (h.n_queries - 1) * h.q_stride + h.d;
        assert!(h.q.len() >= last_row, "attention: q too short");
        assert!(out.len() >= (h.n_queries - 1) * out_stride + h.d, "attention: out too short");
        assert!(h.keys.len() >= t * h.d && h.values.len() >= t * h.d, "attention: cache shorter than T");
        assert!(scores.len() >= t, "attention: scores scratch shorter than T");
        (self.attention)(h, scores, out, out_stride)
    }
}
