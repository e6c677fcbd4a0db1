//! The KV-cache arena: every layer's keys and values for one sequence, allocated once per session.

/// Keys and values laid out `[layer][head][position][head_dim]`, so that attention reads each
/// head's keys (and values) as one contiguous `[T, D]` block.
pub struct KvArena {
    keys: Vec<f32>,
    values: Vec<f32>,
    n_head: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvArena {
    /// Room for `capacity` positions of `n_layer` layers of `n_head` heads of `head_dim`.
    pub fn new(n_layer: usize, n_head: usize, head_dim: usize, capacity: usize) -> KvArena {
        let size = n_layer * n_head * capacity * head_dim;
        KvArena { keys: vec![0.0; size], values: vec![0.0; size], n_head, head_dim, capacity, len: 0 }
    }

    /// Bytes held by the arena.
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * std::mem::size_of::<f32>()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Marks `n` more positions as filled (after every layer has stored them).
    pub(crate) fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity, "KV arena overflow");
        self.len += n;
    }

    fn block(&self, layer: usize, head: usize) -> std::ops::Range<usize> {
        let size = self.capacity * self.head_dim;
        let start = (layer * self.n_head + head) * size;
        start..start + size
    }

    /// Stores the keys and values of rows `k_rows`/`v_rows` (each `n_head * head_dim` wide, one per
    /// new position, `stride` apart) at positions `len..` of `layer`.
    pub(crate) fn store(&mut self, layer: usize, k_rows: &[f32], v_rows: &[f32], stride: usize, n: usize) {
        let d = self.head_dim;
        for head in 0..self.n_head {
            let block = self.block(layer, head);
            let dst_k = &mut self.keys[block.clone()][self.len * d..][..n * d];
            let dst_v = &mut self.values[block][self.len * d..][..n * d];
            for i in 0..n {
                let src = i * stride + head * d;
                dst_k[i * d..][..d].copy_from_slice(&k_rows[src..][..d]);
                dst_v[i * d..][..d].copy_from_slice(&v_rows[src..][..d]);
            }
        }
    }

    /// The key and value blocks `[H][capacity, D]` of one layer.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let size = self.n_head * self.capacity * self.head_dim;
        (&self.keys[layer * size..][..size], &self.values[layer * size..][..size])
    }
}
