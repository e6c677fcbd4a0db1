//! Prefetching of weights the kernels will stream: how far ahead the GEMVs fetch, and the
//! line-by-line fetcher the micro-kernels drive.

use crate::simd::Simd;

/// How many rows ahead the `(out, in)` GEMVs prefetch. q8_0 rows are short (768 bytes at
/// K = 768), so four rows ahead are too little to hide memory latency; eight are enough, for f16
/// too, and cost f32 nothing (docs/PERFORMANCE.md, "Decoding: GEMVs that stream").
pub(crate) const PREFETCH_ROWS: usize = 8;

/// Cache lines to prefetch from inside micro-kernels, one at a time: `rows` runs of bytes,
/// `stride` bytes apart.
pub(super) struct LineFetch {
    /// The next line, and the start of its run.
    at: *const u8,
    run: *const u8,
    /// Lines left in this run, lines per run, and lines left in all.
    left_in_run: usize,
    run_lines: usize,
    pub(super) left: usize,
    stride: usize,
}

impl LineFetch {
    /// Nothing to fetch.
    pub(super) fn none() -> Self {
        LineFetch { at: std::ptr::null(), run: std::ptr::null(), left_in_run: 0, run_lines: 0, left: 0, stride: 0 }
    }

    /// `rows` runs of `bytes` bytes from `start` on, `stride` bytes apart.
    pub(super) fn runs(start: *const u8, bytes: usize, stride: usize, rows: usize) -> Self {
        // Lines the first run touches; one more where the others may lie differently on lines.
        let first = (start as usize + bytes.max(1) - 1) / 64 - start as usize / 64 + 1;
        let run_lines = if stride.is_multiple_of(64) { first } else { bytes.div_ceil(64) + 1 };
        let start = start.wrapping_sub(start as usize % 64);
        LineFetch { at: start, run: start, left_in_run: run_lines, run_lines, left: run_lines * rows, stride }
    }

    /// Prefetches the next line, if any.
    ///
    /// # Safety
    /// The CPU supports `S`. (The lines may be any addresses: prefetches never fault.)
    #[inline(always)]
    pub(super) unsafe fn next<S: Simd>(&mut self) {
        // SAFETY: the CPU supports `S` (the contract above); a prefetch never faults.
        unsafe {
            if self.left == 0 {
                return;
            }
            S::prefetch(self.at);
            self.left -= 1;
            self.left_in_run -= 1;
            if self.left_in_run == 0 {
                self.run = self.run.wrapping_add(self.stride);
                self.at = self.run;
                self.left_in_run = self.run_lines;
            } else {
                self.at = self.at.wrapping_add(64);
            }
        }
    }
}
