//! The KV-cache arena: every layer's keys and values for one sequence, allocated once per session.

/// Keys and values laid out `[layer][head][slot][head_dim]`, so that attention reads each head's
/// keys (and values) as one contiguous `[slots, D]` block.
///
/// A layer has `slots` rows per head: position `p` lives in slot `p % slots`. A global layer has
/// one slot per position of the context; a local (sliding-window) layer only needs the last
/// positions its queries can see, so it keeps a ring of fewer slots that later positions reuse.
pub struct KvArena {
    keys: Vec<f32>,
    values: Vec<f32>,
    /// Slots per head of each layer.
    slots: Vec<usize>,
    /// Where each layer's `[H][slots, D]` block starts in `keys`/`values`.
    starts: Vec<usize>,
    n_head: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvArena {
    /// Room for `capacity` positions of `layer_slots.len()` layers of `n_head` heads of `head_dim`;
    /// layer `l` keeps `layer_slots[l]` (at most `capacity`) slots per head.
    pub fn new(layer_slots: &[usize], n_head: usize, head_dim: usize, capacity: usize) -> KvArena {
        let slots: Vec<usize> = layer_slots.iter().map(|&s| s.min(capacity)).collect();
        assert!(slots.iter().all(|&s| s > 0), "KV arena: a layer without slots");
        let mut starts = Vec::with_capacity(slots.len());
        let mut size = 0;
        for &s in &slots {
            starts.push(size);
            size += n_head * s * head_dim;
        }
        KvArena { keys: vec![0.0; size], values: vec![0.0; size], slots, starts, n_head, head_dim, capacity, len: 0 }
    }

    /// Bytes `new` allocates for the same arguments.
    pub fn bytes_for(layer_slots: &[usize], n_head: usize, head_dim: usize, capacity: usize) -> usize {
        let rows: usize = layer_slots.iter().map(|&s| s.min(capacity)).sum();
        2 * rows * n_head * head_dim * std::mem::size_of::<f32>()
    }

    /// Bytes held by the arena.
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * std::mem::size_of::<f32>()
    }

    /// Positions the arena can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots per head of `layer` (`capacity` unless it is a ring).
    pub fn slots(&self, layer: usize) -> usize {
        self.slots[layer]
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

    /// Stores the keys and values of rows `k_rows`/`v_rows` (each `n_head * head_dim` wide, one per
    /// new position, `stride` apart) at positions `len..len + n` of `layer`: position `p` in slot
    /// `p % slots`. `n` must not exceed the layer's slots (a ring keeps at least one chunk).
    pub(crate) fn store(&mut self, layer: usize, k_rows: &[f32], v_rows: &[f32], stride: usize, n: usize) {
        let (d, slots) = (self.head_dim, self.slots[layer]);
        assert!(n <= slots && self.len + n <= self.capacity, "KV arena: {n} positions do not fit");
        for head in 0..self.n_head {
            let block = self.starts[layer] + head * slots * d;
            for i in 0..n {
                let dst = block + (self.len + i) % slots * d;
                let src = i * stride + head * d;
                self.keys[dst..][..d].copy_from_slice(&k_rows[src..][..d]);
                self.values[dst..][..d].copy_from_slice(&v_rows[src..][..d]);
            }
        }
    }

    /// The key and value blocks `[H][slots, D]` of one layer.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let size = self.n_head * self.slots[layer] * self.head_dim;
        let start = self.starts[layer];
        (&self.keys[start..][..size], &self.values[start..][..size])
    }
}

#[cfg(test)]
mod tests {
    use super::KvArena;

    #[test]
    fn a_ring_layer_keeps_the_last_positions() {
        // Layer 0 global (4 slots), layer 1 a ring of 3; one head of width 2.
        let mut kv = KvArena::new(&[4, 3], 1, 2, 4);
        assert_eq!(kv.bytes(), KvArena::bytes_for(&[4, 3], 1, 2, 4));
        assert_eq!(kv.bytes(), 2 * (4 + 3) * 2 * 4);
        for p in 0..4 {
            let (k, v) = ([p as f32, 0.5], [-(p as f32), 1.5]);
            kv.store(0, &k, &v, 2, 1);
            kv.store(1, &k, &v, 2, 1);
            kv.advance(1);
        }
        assert_eq!(kv.layer(0).0, [0.0, 0.5, 1.0, 0.5, 2.0, 0.5, 3.0, 0.5]);
        // Position 3 overwrote position 0 in slot 0.
        assert_eq!(kv.layer(1).0, [3.0, 0.5, 1.0, 0.5, 2.0, 0.5]);
        assert_eq!(kv.layer(1).1, [-3.0, 1.5, -1.0, 1.5, -2.0, 1.5]);
    }
}
