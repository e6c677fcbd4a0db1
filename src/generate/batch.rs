//! Batched prompts: several token sequences, one result per row, in input order.
//!
//! transformers runs a batch as one left-padded tensor with an attention mask (pad = eos,
//! position ids `cumsum(mask) - 1`, pads never attended), so each row computes what the same
//! prompt computes alone, up to float error. A [`Session`] holds one sequence, so Quill runs
//! the rows one after another on one session (reset between rows): each row's numerics are
//! exactly those of the prompt run alone. Greedy rows are token-identical to single runs;
//! sampled row `i` uses random stream `i` of the seed; beam search runs per row.

use super::beam::{BeamGeneration, BeamSearch};
use super::{Flow, Generation, Generator};
use crate::error::{Error, Result};
use crate::model::Session;

/// Prefixes an error of row `row` with the row, so that a caller knows which prompt failed.
pub(crate) fn in_row(row: usize, e: Error) -> Error {
    e.within(format!("batch row {row}"))
}

/// Checks that there is at least one row and that no row is empty.
pub(crate) fn check_rows(prompts: &[Vec<u32>]) -> Result<()> {
    if prompts.is_empty() {
        return Err(Error::input("the batch has no prompts"));
    }
    if let Some(row) = prompts.iter().position(|p| p.is_empty()) {
        return Err(Error::input(format!("batch row {row}: the prompt is empty")));
    }
    Ok(())
}

impl Generator {
    /// Sets the number of new tokens of the following runs (e.g. a row's `max_length` minus its
    /// own prompt length).
    pub fn set_max_new_tokens(&mut self, n: usize) {
        self.opts.max_new_tokens = n;
    }

    /// Generates from each prompt of `prompts` as one row of a batch; returns one
    /// [`Generation`] per row, in input order.
    ///
    /// Each row starts from a reset `session`, so its result equals [`Generator::run`] on that
    /// prompt alone (what transformers' left-padded batch computes, up to float error). When
    /// sampling, row `i` uses random stream `i` of the seed. `on_token(row, id)` sees each new
    /// token; [`Flow::Stop`] ends that row only. An error names the row.
    pub fn run_batch(
        &mut self,
        session: &mut Session,
        prompts: &[Vec<u32>],
        mut on_token: impl FnMut(usize, u32) -> Result<Flow>,
    ) -> Result<Vec<Generation>> {
        check_rows(prompts)?;
        let mut out = Vec::with_capacity(prompts.len());
        for (row, prompt) in prompts.iter().enumerate() {
            session.reset();
            let g = self.run(session, prompt, row as u64, |id| on_token(row, id)).map_err(|e| in_row(row, e))?;
            out.push(g);
        }
        Ok(out)
    }
}

impl BeamSearch<'_> {
    /// Beam search from each prompt of `prompts`, one row at a time; one [`BeamGeneration`]
    /// per row, in input order, each equal to [`BeamSearch::run`] on that prompt alone.
    pub fn run_batch(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<BeamGeneration>> {
        check_rows(prompts)?;
        prompts.iter().enumerate().map(|(row, p)| self.run(p).map_err(|e| in_row(row, e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_must_be_there_and_not_empty() {
        assert!(check_rows(&[]).is_err());
        let e = check_rows(&[vec![1], vec![]]).unwrap_err().to_string();
        assert!(e.contains("batch row 1"), "{e}");
        assert!(check_rows(&[vec![1], vec![2, 3]]).is_ok());
    }
}
