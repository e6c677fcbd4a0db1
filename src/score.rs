//! Loss and perplexity of a token stream with transformers' strided sliding-window method, a
//! binary file of the scored positions' log-probabilities, and the KL divergence between two
//! such files (a model against a base model, e.g. a quantized one against f32).
//!
//! **Windows** (transformers' docs, "Perplexity of fixed-length models"): windows of `ctx`
//! tokens start at `0, stride, 2 * stride, ...`; the last one ends at the last token and no
//! window starts after it. In each window the tokens already scored by an earlier window are
//! context only (label -100); the others are scored, except that a window's first token is never
//! scored (nothing in the window predicts it: transformers shifts the labels by one). So:
//!
//! - with `stride < ctx` (overlap) every token but the first of the text is scored exactly once;
//! - with `stride == ctx` (no overlap) the first token of every window is not scored.
//!
//! The loss is the total negative log-likelihood over every scored token divided by their
//! number (token-weighted: not a mean of the windows' means). Each token's NLL is computed in
//! f64 from the f32 logits: `logsumexp(logits) - logits[target]`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Setting};
use crate::math::{argmax, kl_divergence_f64, nll_f64};
use crate::model::Model;

/// Positions whose logits are computed together (bounds the `[rows, vocab]` buffer).
const LOGITS_ROWS: usize = 128;

/// One window of the sliding-window method, in token indices of the whole text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First token of the window.
    pub begin: usize,
    /// One past its last token.
    pub end: usize,
    /// First scored token: tokens `first_scored..end` are scored, `begin..first_scored` are
    /// context only. Always `> begin`.
    pub first_scored: usize,
}

impl Window {
    pub fn scored(&self) -> usize {
        self.end - self.first_scored
    }
}

/// Checks `ctx` and `stride` and fills in the defaults: `ctx` = `n_positions`,
/// `stride` = `ctx / 2`. [`Error::OutOfRange`]: `ctx` < 2 or > `n_positions`, `stride` 0 or > `ctx`.
pub fn resolve_settings(ctx: Option<usize>, stride: Option<usize>, n_positions: usize) -> Result<(usize, usize)> {
    let ctx = ctx.unwrap_or(n_positions);
    if ctx < 2 || ctx > n_positions {
        return Err(Error::out_of_range(
            Setting::Ctx,
            ctx,
            format!("a window needs at least 2 tokens, and this model has {n_positions} positions (n_positions)"),
        ));
    }
    let stride = stride.unwrap_or(ctx / 2);
    if stride == 0 || stride > ctx {
        return Err(Error::out_of_range(Setting::Stride, stride, format!("it must be 1 to {} ({ctx})", Setting::Ctx)));
    }
    Ok((ctx, stride))
}

/// The windows transformers' recipe uses for `n_tokens` tokens (see the module docs).
/// `2 <= ctx` and `1 <= stride <= ctx` (as [`resolve_settings`] checks); no windows if
/// `n_tokens < 2`.
pub fn windows(n_tokens: usize, ctx: usize, stride: usize) -> Vec<Window> {
    assert!(ctx >= 2 && (1..=ctx).contains(&stride), "bad ctx {ctx} / stride {stride}");
    let mut out = Vec::new();
    if n_tokens < 2 {
        return out;
    }
    let mut prev_end = 0;
    let mut begin = 0;
    loop {
        let end = (begin + ctx).min(n_tokens);
        // Labels of the last `end - prev_end` tokens are kept; after the shift, the window's
        // first token cannot be scored.
        let first_scored = prev_end.max(begin + 1);
        out.push(Window { begin, end, first_scored });
        if end == n_tokens {
            return out;
        }
        prev_end = end;
        begin += stride;
    }
}

/// Indices of the scored tokens, in order.
pub fn scored_positions(windows: &[Window]) -> Vec<usize> {
    windows.iter().flat_map(|w| w.first_scored..w.end).collect()
}

/// One scored token, as [`score`] hands it to its callback.
pub struct Scored<'a> {
    /// Index of the token in the text's token stream.
    pub pos: usize,
    /// The token id at `pos`.
    pub target: u32,
    /// The model's f32 logits that predict it (those of position `pos - 1` in its window).
    pub logits: &'a [f32],
    /// `-log p(target)`, in nats, f64.
    pub nll: f64,
}

/// What [`score`] adds up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub tokens_scored: usize,
    /// Sum of the scored tokens' NLL, in nats.
    pub nll_sum: f64,
    pub windows: usize,
    /// Tokens run through the model (context ones included).
    pub tokens_fed: usize,
}

impl Totals {
    /// Mean NLL per scored token (nats).
    pub fn loss(&self) -> f64 {
        self.nll_sum / self.tokens_scored as f64
    }

    pub fn perplexity(&self) -> f64 {
        self.loss().exp()
    }
}

/// Scores `ids` with windows of `ctx` tokens moving by `stride` and calls `each` for every scored
/// token, in order. Each window starts a fresh session; its context-only tokens (but the one
/// before the first scored token) are fed without computing their logits, and its last token is
/// not fed at all (only its label is needed). `batch` caps the tokens per forward pass (default:
/// a window's context at once, then 128 scored positions a pass): `Some(1)` runs the decode
/// kernels, as generation does after its prompt.
///
/// ```
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
/// let model = quill::Model::load(&dir, &Default::default())?;
/// let ids: Vec<u32> = (0..40).map(|i| 100 + i).collect();
/// let (ctx, stride) = quill::score::resolve_settings(Some(16), Some(8), model.config().n_positions)?;
/// let totals = quill::score::score(&model, &ids, ctx, stride, None, |_token| Ok(()))?;
/// assert_eq!(totals.tokens_scored, 39); // every token but the first
/// assert!(totals.perplexity() > 1.0);
/// # Ok::<(), quill::Error>(())
/// ```
pub fn score(
    model: &Model,
    ids: &[u32],
    ctx: usize,
    stride: usize,
    batch: Option<usize>,
    mut each: impl FnMut(&Scored) -> Result<()>,
) -> Result<Totals> {
    let (context_batch, batch) = match batch {
        Some(b) => (b.max(1), b.clamp(1, LOGITS_ROWS)),
        None => (ctx, LOGITS_ROWS),
    };
    let (ctx, stride) = resolve_settings(Some(ctx), Some(stride), model.config.n_positions)?;
    if ids.len() < 2 {
        return Err(Error::input(format!(
            "{} token{}: nothing to score (the first token is never predicted)",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        )));
    }
    let v = model.config.vocab_size;
    let mut session = model.session(Some(ctx))?;
    let mut logits = Vec::with_capacity(LOGITS_ROWS * v);
    let mut totals = Totals::default();
    for w in windows(ids.len(), ctx, stride) {
        session.reset();
        totals.windows += 1;
        // Position p's logits predict token p + 1: run begin..end-1, logits from first_scored-1.
        let from = w.first_scored - 1;
        for chunk in ids[w.begin..from].chunks(context_batch) {
            session.feed(chunk)?;
            totals.tokens_fed += chunk.len();
        }
        let mut pos = from;
        for chunk in ids[from..w.end - 1].chunks(batch) {
            session.feed_all_logits(chunk, &mut logits)?;
            totals.tokens_fed += chunk.len();
            for row in logits.chunks_exact(v) {
                let target = ids[pos + 1];
                let nll = nll_f64(row, target as usize);
                totals.nll_sum += nll;
                totals.tokens_scored += 1;
                each(&Scored { pos: pos + 1, target, logits: row, nll })?;
                pos += 1;
            }
        }
    }
    Ok(totals)
}

/// The magic bytes that open a log-probability file.
pub const LOGPROB_MAGIC: &[u8; 8] = b"QUILLLP\0";
/// Its format version.
pub const LOGPROB_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 40;

/// What a log-probability file describes (its header, token stream and scored positions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogProbHeader {
    pub vocab_size: usize,
    pub ctx: usize,
    pub stride: usize,
    /// The whole token stream of the text.
    pub ids: Vec<u32>,
    /// The scored token indices, increasing; row `i` of the file predicts `ids[positions[i]]`.
    pub positions: Vec<u32>,
}

impl LogProbHeader {
    fn data_bytes(&self) -> u64 {
        HEADER_BYTES
            + 4 * self.ids.len() as u64
            + 4 * self.positions.len() as u64
            + 4 * self.positions.len() as u64 * self.vocab_size as u64
    }

    /// Why `other` (read from `path`) cannot be compared with `self`, if it cannot.
    pub fn check_same_stream(&self, other: &LogProbHeader, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::bad_file(path, msg));
        if other.vocab_size != self.vocab_size {
            return bad(format!("vocabulary of {} tokens, this model has {}", other.vocab_size, self.vocab_size));
        }
        if other.ids != self.ids {
            let at = other
                .ids
                .iter()
                .zip(&self.ids)
                .position(|(a, b)| a != b)
                .unwrap_or(other.ids.len().min(self.ids.len()));
            return bad(format!(
                "its token stream differs from this text's ({} tokens there, {} here; first difference at token {at})",
                other.ids.len(),
                self.ids.len()
            ));
        }
        if (other.ctx, other.stride) != (self.ctx, self.stride) || other.positions != self.positions {
            return bad(format!(
                "saved with {ctx} {} {stride} {}; this run uses {ctx} {} {stride} {}: give the same",
                other.ctx,
                other.stride,
                self.ctx,
                self.stride,
                ctx = Setting::Ctx,
                stride = Setting::Stride
            ));
        }
        Ok(())
    }
}

/// Writes a log-probability file: the header, then one row per scored position.
pub struct LogProbWriter {
    path: PathBuf,
    out: BufWriter<File>,
    rows_left: usize,
    vocab_size: usize,
    bytes: Vec<u8>,
}

impl LogProbWriter {
    pub fn create(path: &Path, header: &LogProbHeader) -> Result<LogProbWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(HEADER_BYTES as usize + 4 * (header.ids.len() + header.positions.len()));
        head.extend_from_slice(LOGPROB_MAGIC);
        for n in [LOGPROB_VERSION, header.vocab_size as u32, header.ctx as u32, header.stride as u32] {
            head.extend_from_slice(&n.to_le_bytes());
        }
        head.extend_from_slice(&(header.ids.len() as u64).to_le_bytes());
        head.extend_from_slice(&(header.positions.len() as u64).to_le_bytes());
        for &id in header.ids.iter().chain(&header.positions) {
            head.extend_from_slice(&id.to_le_bytes());
        }
        out.write_all(&head).map_err(|e| Error::io(path, e))?;
        Ok(LogProbWriter {
            path: path.to_path_buf(),
            out,
            rows_left: header.positions.len(),
            vocab_size: header.vocab_size,
            bytes: Vec::with_capacity(4 * header.vocab_size),
        })
    }

    /// Appends the next row of log-probabilities.
    pub fn write_row(&mut self, logprobs: &[f32]) -> Result<()> {
        assert_eq!(logprobs.len(), self.vocab_size, "row length");
        assert!(self.rows_left > 0, "more rows than scored positions");
        self.rows_left -= 1;
        self.bytes.clear();
        self.bytes.extend(logprobs.iter().flat_map(|v| v.to_le_bytes()));
        self.out.write_all(&self.bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes the file; every row must have been written.
    pub fn finish(mut self) -> Result<()> {
        assert_eq!(self.rows_left, 0, "rows missing");
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads a log-probability file: the header at once, then the rows in order.
pub struct LogProbReader {
    pub header: LogProbHeader,
    path: PathBuf,
    input: BufReader<File>,
    bytes: Vec<u8>,
}

impl LogProbReader {
    pub fn open(path: &Path) -> Result<LogProbReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let bad = |msg: &str| Error::bad_file(path, msg.to_string());
        let mut head = [0u8; HEADER_BYTES as usize];
        input.read_exact(&mut head).map_err(|_| bad("not a quill log-probability file (too short)"))?;
        if &head[..8] != LOGPROB_MAGIC {
            return Err(bad("not a quill log-probability file (bad magic)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap());
        if u32_at(8) != LOGPROB_VERSION {
            return Err(Error::bad_file(
                path,
                format!("log-probability file version {} (this quill reads {LOGPROB_VERSION})", u32_at(8)),
            ));
        }
        let (vocab_size, ctx, stride) = (u32_at(12) as usize, u32_at(16) as usize, u32_at(20) as usize);
        let (n_ids, n_rows) = (u64_at(24), u64_at(32));
        let expected = n_ids
            .checked_add(n_rows)
            .and_then(|n| n.checked_add(n_rows.checked_mul(vocab_size as u64)?))
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(HEADER_BYTES));
        if expected != Some(size) {
            return Err(Error::bad_file(
                path,
                format!(
                    "{size} bytes, but its header ({n_ids} tokens, {n_rows} rows of {vocab_size}) needs {}: truncated \
                     or damaged",
                    expected.map_or("more than 2^64".to_string(), |n| n.to_string())
                ),
            ));
        }
        let mut read_u32s = |n: u64| -> Result<Vec<u32>> {
            let mut buf = vec![0u8; 4 * n as usize];
            input.read_exact(&mut buf).map_err(|e| Error::io(path, e))?;
            Ok(buf.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect())
        };
        let ids = read_u32s(n_ids)?;
        let positions = read_u32s(n_rows)?;
        let header = LogProbHeader { vocab_size, ctx, stride, ids, positions };
        debug_assert_eq!(header.data_bytes(), size);
        Ok(LogProbReader { header, path: path.to_path_buf(), input, bytes: vec![0; 4 * vocab_size] })
    }

    /// Reads the next row into `out` (`vocab_size` values).
    pub fn read_row(&mut self, out: &mut [f32]) -> Result<()> {
        self.input.read_exact(&mut self.bytes).map_err(|e| Error::io(&self.path, e))?;
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().unwrap());
        }
        Ok(())
    }
}

/// Running KL divergence and top-1 agreement between a base model's and this model's
/// log-probabilities, position by position.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KlStats {
    pub positions: usize,
    pub kl_sum: f64,
    pub kl_max: f64,
    /// Positions where both models' most likely token is the same.
    pub top1_same: usize,
    /// Sum of the base model's NLL of the scored tokens (nats).
    pub base_nll_sum: f64,
}

impl KlStats {
    /// Adds one position: `base` and `this` are log-probabilities over the vocabulary, `target`
    /// the token scored there.
    pub fn add(&mut self, base: &[f32], this: &[f32], target: u32) {
        let kl = kl_divergence_f64(base, this);
        self.positions += 1;
        self.kl_sum += kl;
        self.kl_max = self.kl_max.max(kl);
        self.top1_same += usize::from(argmax(base) == argmax(this));
        self.base_nll_sum -= base[target as usize] as f64;
    }

    pub fn kl_mean(&self) -> f64 {
        self.kl_sum / self.positions as f64
    }

    pub fn top1_agreement(&self) -> f64 {
        self.top1_same as f64 / self.positions as f64
    }

    pub fn base_loss(&self) -> f64 {
        self.base_nll_sum / self.positions as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_recipe() {
        // Overlap: every token but the first scored once.
        let w = windows(10, 4, 2);
        assert_eq!(
            w,
            [
                Window { begin: 0, end: 4, first_scored: 1 },
                Window { begin: 2, end: 6, first_scored: 4 },
                Window { begin: 4, end: 8, first_scored: 6 },
                Window { begin: 6, end: 10, first_scored: 8 },
            ]
        );
        assert_eq!(scored_positions(&w), (1..10).collect::<Vec<_>>());
        // No overlap: each window's first token is not scored.
        let w = windows(10, 4, 4);
        assert_eq!(scored_positions(&w), [1, 2, 3, 5, 6, 7, 9]);
        // Short text: one window; fewer than 2 tokens: none.
        assert_eq!(windows(3, 8, 4), [Window { begin: 0, end: 3, first_scored: 1 }]);
        assert!(windows(1, 8, 4).is_empty());
        // A last window that ends at the text's end with a short step.
        let w = windows(9, 4, 3);
        assert_eq!(w.last(), Some(&Window { begin: 6, end: 9, first_scored: 7 }));
        assert_eq!(scored_positions(&w), (1..9).collect::<Vec<_>>());
    }

    #[test]
    fn every_token_but_the_first_is_scored_once_with_overlap() {
        for n in 2..60 {
            for ctx in 2..12 {
                for stride in 1..=ctx {
                    let w = windows(n, ctx, stride);
                    let pos = scored_positions(&w);
                    if stride < ctx {
                        assert_eq!(pos, (1..n).collect::<Vec<_>>(), "n {n} ctx {ctx} stride {stride}");
                    } else {
                        let want: Vec<usize> = (1..n).filter(|p| p % ctx != 0).collect();
                        assert_eq!(pos, want, "n {n} ctx {ctx} stride {stride}");
                    }
                    assert!(w.iter().all(|w| w.end - w.begin <= ctx && w.first_scored > w.begin));
                }
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(resolve_settings(None, None, 64).unwrap(), (64, 32));
        assert_eq!(resolve_settings(Some(3), None, 64).unwrap(), (3, 1));
        assert_eq!(resolve_settings(Some(8), Some(8), 64).unwrap(), (8, 8));
        for (ctx, stride) in
            [(Some(65), None), (Some(1), None), (Some(0), None), (Some(8), Some(0)), (Some(8), Some(9))]
        {
            assert_eq!(resolve_settings(ctx, stride, 64).unwrap_err().exit_code(), 2, "{ctx:?} {stride:?}");
        }
    }
}
