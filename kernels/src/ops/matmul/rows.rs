//! The rows of an `(out, in)` weight as the `(out, in)` kernels read them: f32 or f16
//! ([`PlainRows`]), q8_0 ([`Q8Rows`]) or a block format ([`BlockRows`]), in place or widened to
//! f32 ([`OutInRows`]).

use half::f16;

use crate::elem::Elem;
use crate::formats::BlockFormat;
use crate::simd::Simd;
use crate::weight::Q8_BLOCK;

/// The rows of an `(out, in)` weight as the out-in GEMM reads them: in place when they are f32,
/// else widened (or dequantized) to f32, `kc` inputs from `k0` at a time.
pub(crate) trait OutInRows: Copy {
    /// Row `j` from input `k0` on, if it is f32 already.
    ///
    /// # Safety
    /// Row `j` is one of the weight's and `k0` is below K.
    unsafe fn in_place(&self, j: usize, k0: usize) -> Option<*const f32>;
    /// Inputs `k0..k0 + kc` of row `j`, as f32, into `dst`.
    ///
    /// # Safety
    /// The CPU supports `S`; row `j` is one of the weight's and `k0 + kc ≤ K` (whole blocks of 32
    /// for q8_0); `dst` is valid for writing `kc` floats.
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32);
    /// Where inputs `k0..k0 + kc` of row `j` are stored (start and bytes), and the distance in
    /// bytes from one row to the next, for prefetching.
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize);
}

/// f32 or f16 rows of `k` elements.
#[derive(Clone, Copy)]
pub(super) struct PlainRows<E> {
    pub(super) w: *const E,
    pub(super) k: usize,
}

impl<E: Elem> OutInRows for PlainRows<E> {
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize) {
        let size = std::mem::size_of::<E>();
        (self.w.wrapping_add(j * self.k + k0).cast(), kc * size, self.k * size)
    }

    #[inline(always)]
    unsafe fn in_place(&self, j: usize, k0: usize) -> Option<*const f32> {
        // SAFETY: `j·k + k0` is inside the weight (the trait's contract).
        unsafe { E::IS_F32.then(|| self.w.add(j * self.k + k0) as *const f32) }
    }

    #[inline(always)]
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        // SAFETY: the trait's contract: inputs `k0..k0 + kc` of row j are inside the weight,
        // vectors below `full ≤ kc` then single elements, and `dst` holds kc.
        unsafe {
            let src = self.w.add(j * self.k + k0);
            let full = kc / S::LANES * S::LANES;
            for kk in (0..full).step_by(S::LANES) {
                E::load::<S>(src.add(kk)).store(dst.add(kk));
            }
            for kk in full..kc {
                *dst.add(kk) = (*src.add(kk)).to_f32();
            }
        }
    }
}

/// q8_0 rows of `k` int8 values and `k / 32` f16 scales.
#[derive(Clone, Copy)]
pub(crate) struct Q8Rows {
    pub(crate) q: *const i8,
    pub(crate) scales: *const f16,
    pub(crate) k: usize,
}

impl OutInRows for Q8Rows {
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize) {
        (self.q.wrapping_add(j * self.k + k0).cast(), kc, self.k)
    }

    #[inline(always)]
    unsafe fn in_place(&self, _: usize, _: usize) -> Option<*const f32> {
        None
    }

    /// `k0` and `kc` are whole blocks (KC_OUT_IN and K are multiples of 32).
    #[inline(always)]
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        // SAFETY: the trait's contract: `k0` and `kc` are whole blocks inside row j, whose scales
        // follow its bytes' positions / 32, and `dst` holds kc.
        unsafe {
            let (q, scales) = (self.q.add(j * self.k + k0), self.scales.add((j * self.k + k0) / Q8_BLOCK));
            for b in 0..kc / Q8_BLOCK {
                let d = S::splat((*scales.add(b)).to_f32());
                for i in (0..Q8_BLOCK).step_by(S::LANES) {
                    let at = b * Q8_BLOCK + i;
                    S::load_i8(q.add(at)).mul(d).store(dst.add(at));
                }
            }
        }
    }
}

/// Rows of `k` weights in a block format: each row `format.row_bytes(k)` bytes of whole blocks.
#[derive(Clone, Copy)]
pub(crate) struct BlockRows {
    pub(crate) data: *const u8,
    pub(crate) format: BlockFormat,
    pub(crate) k: usize,
    /// Bytes per row.
    pub(crate) row_bytes: usize,
}

impl BlockRows {
    /// Inputs `k0..k0 + kc` of row `j` (whole blocks), decoded into `dst`.
    ///
    /// # Safety
    /// Row `j` is one of the weight's, `k0` and `kc` are whole blocks with `k0 + kc ≤ K`, and `dst`
    /// is valid for writing `kc` floats.
    #[inline(always)]
    pub(crate) unsafe fn decode(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        let (w, b) = (self.format.block_weights(), self.format.block_bytes());
        // SAFETY: the contract above: the bytes of those blocks lie inside row j, and dst holds kc.
        unsafe {
            let bytes = std::slice::from_raw_parts(self.data.add(j * self.row_bytes + k0 / w * b), kc / w * b);
            self.format.dequantize_row(bytes, std::slice::from_raw_parts_mut(dst, kc));
        }
    }
}

impl OutInRows for BlockRows {
    fn run(&self, j: usize, k0: usize, kc: usize) -> (*const u8, usize, usize) {
        let per = self.format.block_bytes() as f64 / self.format.block_weights() as f64;
        let start = j * self.row_bytes + (k0 as f64 * per) as usize;
        (self.data.wrapping_add(start), (kc as f64 * per).ceil() as usize, self.row_bytes)
    }

    #[inline(always)]
    unsafe fn in_place(&self, _: usize, _: usize) -> Option<*const f32> {
        None
    }

    /// `k0` and `kc` are whole blocks (KC_OUT_IN is a multiple of 256, K of the block).
    #[inline(always)]
    unsafe fn widen<S: Simd>(&self, j: usize, k0: usize, kc: usize, dst: *mut f32) {
        // SAFETY: the trait's contract is `decode`'s.
        unsafe { self.decode(j, k0, kc, dst) }
    }
}

/// A tile of block-format weight rows as integer codes with a scale and an offset per group
/// (`BlockFormat::codes`): what the integer kernels that do not read a format's blocks directly
/// multiply. Its buffers are reused from tile to tile.
#[derive(Default)]
pub(crate) struct CodeTile {
    /// `rows × K` codes.
    pub(crate) q: Vec<i8>,
    /// Per row and group (`rows × K / group`).
    pub(crate) alpha: Vec<f32>,
    pub(crate) beta: Vec<f32>,
}

impl CodeTile {
    /// Tile row `r` becomes weight row `rows[r]` of `w`.
    ///
    /// # Safety
    /// Every `rows[r]` is one of `w`'s rows.
    pub(crate) unsafe fn decode(&mut self, w: BlockRows, rows: &[usize]) {
        let (k, groups) = (w.k, w.k / w.format.group());
        self.q.resize(rows.len() * k, 0);
        self.alpha.resize(rows.len() * groups, 0.0);
        self.beta.resize(rows.len() * groups, 0.0);
        for (r, &j) in rows.iter().enumerate() {
            // SAFETY: row j is one of w's (the contract above): `row_bytes` bytes from `j · row_bytes`.
            let bytes = unsafe { std::slice::from_raw_parts(w.data.add(j * w.row_bytes), w.row_bytes) };
            let gs = r * groups..(r + 1) * groups;
            w.format.codes(bytes, &mut self.q[r * k..(r + 1) * k], &mut self.alpha[gs.clone()], &mut self.beta[gs]);
        }
    }
}
