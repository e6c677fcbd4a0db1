//! Batched encoding: right truncation and padding to the longest sequence.

/// Which side padding goes on (padding is to the longest sequence of the batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// No padding: sequences keep their own lengths.
    #[default]
    None,
    /// Pad on the left (what generation wants: the last token of every row is real).
    Left,
    /// Pad on the right (transformers' default `padding_side`).
    Right,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOptions {
    /// Keep at most this many ids per text, dropping from the end (transformers' default
    /// `truncation_side="right"`).
    pub max_length: Option<usize>,
    pub padding: Padding,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// One row per text; padded with the pad id (the pad token, else eos, else 0).
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding; same shape as `input_ids`.
    pub attention_mask: Vec<Vec<u8>>,
}

pub(crate) fn assemble(mut rows: Vec<Vec<u32>>, opts: &BatchOptions, pad: u32) -> Batch {
    if let Some(max) = opts.max_length {
        for r in &mut rows {
            r.truncate(max);
        }
    }
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut masks = Vec::with_capacity(rows.len());
    for r in &mut rows {
        let n = r.len();
        let fill = if opts.padding == Padding::None { 0 } else { longest - n };
        let mut mask = vec![1u8; n];
        match opts.padding {
            Padding::None => {}
            Padding::Right => {
                r.resize(longest, pad);
                mask.resize(longest, 0);
            }
            Padding::Left => {
                r.splice(0..0, std::iter::repeat_n(pad, fill));
                mask.splice(0..0, std::iter::repeat_n(0, fill));
            }
        }
        masks.push(mask);
    }
    Batch { input_ids: rows, attention_mask: masks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_truncates() {
        let rows = vec![vec![1, 2, 3, 4], vec![5]];
        let b = assemble(rows.clone(), &BatchOptions { max_length: Some(3), padding: Padding::Left }, 9);
        assert_eq!(b.input_ids, [vec![1, 2, 3], vec![9, 9, 5]]);
        assert_eq!(b.attention_mask, [vec![1, 1, 1], vec![0, 0, 1]]);
        let b = assemble(rows.clone(), &BatchOptions { max_length: None, padding: Padding::Right }, 9);
        assert_eq!(b.input_ids, [vec![1, 2, 3, 4], vec![5, 9, 9, 9]]);
        assert_eq!(b.attention_mask, [vec![1, 1, 1, 1], vec![1, 0, 0, 0]]);
        let b = assemble(rows, &BatchOptions::default(), 9);
        assert_eq!(b.input_ids, [vec![1, 2, 3, 4], vec![5]]);
        assert_eq!(b.attention_mask, [vec![1, 1, 1, 1], vec![1]]);
        assert_eq!(assemble(vec![], &BatchOptions::default(), 0), Batch::default());
    }
}
