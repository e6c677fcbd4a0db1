//! Weight matrices as the kernels read them: layout, element types (f32, f16, q8_0, the block
//! formats of [`crate::formats`]) and the q8_0 quantizer.

use half::f16;

use crate::formats::BlockFormat;

/// How a weight matrix of `K` inputs and `N` outputs is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `(K, N)` row-major, as GPT-2's `Conv1D` stores it.
    InOut,
    /// `(N, K)` row-major, as `nn.Linear` (and the tied embedding used as lm_head) stores it.
    OutIn,
}

/// Weights per q8_0 block: one scale for each run of this many int8 values along K.
pub const Q8_BLOCK: usize = 32;

/// Weight elements as stored in the checkpoint; read in place by the kernels.
#[derive(Clone, Copy, Debug)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// q8_0: `q[i]` times the f16 scale of its block of [`Q8_BLOCK`] (`scales[i / 32]`); stored
    /// `(N, K)` with K a multiple of 32, so each block runs along one output's inputs.
    Q8_0 {
        q: &'a [i8],
        scales: &'a [f16],
    },
    /// Blocks of `format` (GGUF's bytes), stored `(N, K)`: each output's row is K / block
    /// weights whole blocks, one after the other.
    Blocks {
        format: BlockFormat,
        data: &'a [u8],
    },
}

impl<'a> WeightData<'a> {
    pub fn len(&self) -> usize {
        match self {
            WeightData::F32(d) => d.len(),
            WeightData::F16(d) => d.len(),
            WeightData::Q8_0 { q, .. } => q.len(),
            WeightData::Blocks { format, data } => data.len() / format.block_bytes() * format.block_weights(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `range` (in storage order); for q8_0 the range must be whole blocks.
    pub fn slice(&self, range: std::ops::Range<usize>) -> WeightData<'a> {
        match *self {
            WeightData::F32(d) => WeightData::F32(&d[range]),
            WeightData::F16(d) => WeightData::F16(&d[range]),
            WeightData::Q8_0 { q, scales } => {
                assert!(
                    range.start.is_multiple_of(Q8_BLOCK) && range.end.is_multiple_of(Q8_BLOCK),
                    "q8_0 slice {range:?} splits a block"
                );
                let blocks = range.start / Q8_BLOCK..range.end / Q8_BLOCK;
                WeightData::Q8_0 { q: &q[range], scales: &scales[blocks] }
            }
            WeightData::Blocks { format, data } => {
                let (w, b) = (format.block_weights(), format.block_bytes());
                assert!(
                    range.start.is_multiple_of(w) && range.end.is_multiple_of(w),
                    "{} slice {range:?} splits a block",
                    format.name()
                );
                WeightData::Blocks { format, data: &data[range.start / w * b..range.end / w * b] }
            }
        }
    }

    /// Element `i`, widened to f32 (dequantized for q8_0 and the block formats: a block
    /// decoded for one value, so for single elements only; [`WeightData::to_f32`] decodes runs).
    pub fn get(&self, i: usize) -> f32 {
        match *self {
            WeightData::F32(d) => d[i],
            WeightData::F16(d) => d[i].to_f32(),
            WeightData::Q8_0 { q, scales } => q[i] as f32 * scales[i / Q8_BLOCK].to_f32(),
            WeightData::Blocks { format, .. } => {
                let w = format.block_weights();
                let mut block = vec![0.0; w];
                self.slice(i / w * w..(i / w + 1) * w).to_f32(&mut block);
                block[i % w]
            }
        }
    }

    /// All elements, widened (or decoded) into `out`, which holds as many.
    pub fn to_f32(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "to_f32: out length");
        match *self {
            WeightData::F32(d) => out.copy_from_slice(d),
            WeightData::F16(d) => out.iter_mut().zip(d).for_each(|(o, h)| *o = h.to_f32()),
            WeightData::Q8_0 { .. } => out.iter_mut().enumerate().for_each(|(i, o)| *o = self.get(i)),
            WeightData::Blocks { format, data } => format.dequantize_row(data, out),
        }
    }
}

/// Quantizes `x` (a whole number of [`Q8_BLOCK`] runs) to q8_0: for each block the scale is
/// `max |x| / 127` rounded to f16, and each value is `round(x / scale)` with that rounded scale,
/// so dequantizing gives the nearest multiple of the stored scale.
pub fn quantize_q8_0(x: &[f32], q: &mut [i8], scales: &mut [f16]) {
    assert!(
        x.len().is_multiple_of(Q8_BLOCK) && q.len() == x.len() && scales.len() == x.len() / Q8_BLOCK,
        "quantize_q8_0: lengths"
    );
    for ((block, qb), scale) in x.chunks_exact(Q8_BLOCK).zip(q.chunks_exact_mut(Q8_BLOCK)).zip(scales) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        let inv = if d.to_f32() > 0.0 { 1.0 / d.to_f32() } else { 0.0 };
        for (o, &v) in qb.iter_mut().zip(block) {
            *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        }
        *scale = d;
    }
}

/// A borrowed weight matrix with `k` inputs and `n` outputs.
#[derive(Clone, Copy, Debug)]
pub struct Weight<'a> {
    pub data: WeightData<'a>,
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}
