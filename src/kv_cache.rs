//! The KV-cache arena: every layer's keys and values for one sequence, allocated once per session.

use crate::error::{Error, Result};
use half::f16;
use quill_kernels::KvData;

/// Element type of the KV arena: f32 (exact, the default) or f16 (half the memory and the bytes
/// attention reads per token, as llama.cpp's default cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    #[default]
    F32,
    F16,
}

impl KvType {
    pub fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
        }
    }
}

/// Keys and values of every layer, in the arena's element type.
enum Store {
    F32 { keys: Vec<f32>, values: Vec<f32> },
    F16 { keys: Vec<f16>, values: Vec<f16> },
}

/// Keys and values laid out `[layer][head][slot][head_dim]`, so that attention reads each head's
/// keys (and values) as one contiguous `[slots, D]` block.
///
/// A layer has `slots` rows per head: position `p` lives in slot `p % slots`. A global layer has
/// one slot per position of the context; a local (sliding-window) layer only needs the last
/// positions its queries can see, so it keeps a ring of fewer slots that later positions reuse.
pub(crate) struct KvArena {
    store: Store,
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
    pub(crate) fn new(layer_slots: &[usize], n_head: usize, head_dim: usize, capacity: usize, kind: KvType) -> KvArena {
        let slots: Vec<usize> = layer_slots.iter().map(|&s| s.min(capacity)).collect();
        assert!(slots.iter().all(|&s| s > 0), "KV arena: a layer without slots");
        let mut starts = Vec::with_capacity(slots.len());
        let mut size = 0;
        for &s in &slots {
            starts.push(size);
            size += n_head * s * head_dim;
        }
        let store = match kind {
            KvType::F32 => Store::F32 { keys: vec![0.0; size], values: vec![0.0; size] },
            KvType::F16 => Store::F16 { keys: vec![f16::ZERO; size], values: vec![f16::ZERO; size] },
        };
        KvArena { store, slots, starts, n_head, head_dim, capacity, len: 0 }
    }

    /// Bytes `new` allocates for the same arguments.
    pub(crate) fn bytes_for(
        layer_slots: &[usize],
        n_head: usize,
        head_dim: usize,
        capacity: usize,
        kind: KvType,
    ) -> usize {
        let rows: usize = layer_slots.iter().map(|&s| s.min(capacity)).sum();
        2 * rows * n_head * head_dim * kind.size()
    }

    /// Bytes held by the arena.
    pub(crate) fn bytes(&self) -> usize {
        match &self.store {
            Store::F32 { keys, values } => (keys.len() + values.len()) * 4,
            Store::F16 { keys, values } => (keys.len() + values.len()) * 2,
        }
    }

    /// Positions the arena can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots per head of `layer` (`capacity` unless it is a ring).
    pub(crate) fn slots(&self, layer: usize) -> usize {
        self.slots[layer]
    }

    /// Positions filled so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes this arena hold the same sequence as `other` (same shape and element type): copies
    /// the slots `other` has filled, layer by layer and head by head, without allocating.
    pub(crate) fn copy_from(&mut self, other: &KvArena) {
        assert!(
            self.slots == other.slots && self.n_head == other.n_head && self.head_dim == other.head_dim,
            "KV arena copy: the arenas differ in shape"
        );
        let d = self.head_dim;
        for (l, &slots) in self.slots.iter().enumerate() {
            // A ring that has wrapped holds something in every slot.
            let used = other.len.min(slots) * d;
            for head in 0..self.n_head {
                let r = self.starts[l] + head * slots * d..self.starts[l] + head * slots * d + used;
                match (&mut self.store, &other.store) {
                    (Store::F32 { keys, values }, Store::F32 { keys: k, values: v }) => {
                        keys[r.clone()].copy_from_slice(&k[r.clone()]);
                        values[r.clone()].copy_from_slice(&v[r]);
                    }
                    (Store::F16 { keys, values }, Store::F16 { keys: k, values: v }) => {
                        keys[r.clone()].copy_from_slice(&k[r.clone()]);
                        values[r.clone()].copy_from_slice(&v[r]);
                    }
                    _ => panic!("KV arena copy: the arenas differ in element type"),
                }
            }
        }
        self.len = other.len;
    }

    /// Forgets the positions from `len` on (their slots are reused by the next ones).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
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
                let (k, v) = (&k_rows[src..][..d], &v_rows[src..][..d]);
                match &mut self.store {
                    Store::F32 { keys, values } => {
                        keys[dst..][..d].copy_from_slice(k);
                        values[dst..][..d].copy_from_slice(v);
                    }
                    Store::F16 { keys, values } => {
                        keys[dst..][..d].iter_mut().zip(k).for_each(|(o, &x)| *o = f16::from_f32(x));
                        values[dst..][..d].iter_mut().zip(v).for_each(|(o, &x)| *o = f16::from_f32(x));
                    }
                }
            }
        }
    }

    /// The key and value blocks `[H][slots, D]` of one layer.
    pub(crate) fn layer(&self, layer: usize) -> (KvData<'_>, KvData<'_>) {
        let size = self.n_head * self.slots[layer] * self.head_dim;
        let r = self.starts[layer]..self.starts[layer] + size;
        match &self.store {
            Store::F32 { keys, values } => (KvData::F32(&keys[r.clone()]), KvData::F32(&values[r])),
            Store::F16 { keys, values } => (KvData::F16(&keys[r.clone()]), KvData::F16(&values[r])),
        }
    }
}

/// Bytes of memory the OS says are available (Linux: `MemAvailable` in /proc/meminfo); `None`
/// where it cannot tell.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks, before allocating, that a KV arena of `bytes` for `ctx` positions fits in `available`
/// bytes of memory; the error says how many positions would.
pub(crate) fn check_fits(bytes: usize, ctx: usize, available: Option<u64>) -> Result<()> {
    let Some(available) = available else { return Ok(()) };
    if bytes as u64 <= available {
        return Ok(());
    }
    let fits = (ctx as u128 * available as u128 / bytes.max(1) as u128) as u64;
    Err(Error::KvTooLarge { ctx, bytes: bytes as u64, available, fits: fits.max(1) })
}

#[cfg(test)]
mod tests {
    use super::{check_fits, KvArena, KvType};

    #[test]
    fn an_arena_larger_than_memory_is_refused_with_a_ctx_that_fits() {
        assert!(check_fits(1 << 30, 1024, Some(2 << 30)).is_ok());
        assert!(check_fits(1 << 30, 1024, None).is_ok());
        let err = check_fits(64 << 30, 1 << 20, Some(16 << 30)).unwrap_err();
        assert!(matches!(err, crate::error::Error::KvTooLarge { ctx: 1048576, fits: 262144, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("1048576 positions needs 64.0 GiB"), "{msg}");
        assert!(msg.contains("only 16.0 GiB"), "{msg}");
        assert!(msg.contains("a `ctx` of 262144 or less"), "{msg}");
        assert!(!msg.contains("--"), "the library names no flag: {msg}");
    }
    use quill_kernels::KvData;

    fn f32s(d: KvData) -> Vec<f32> {
        match d {
            KvData::F32(v) => v.to_vec(),
            KvData::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
        }
    }

    #[test]
    fn a_ring_layer_keeps_the_last_positions() {
        // Layer 0 global (4 slots), layer 1 a ring of 3; one head of width 2.
        let mut kv = KvArena::new(&[4, 3], 1, 2, 4, KvType::F32);
        assert_eq!(kv.bytes(), KvArena::bytes_for(&[4, 3], 1, 2, 4, KvType::F32));
        assert_eq!(kv.bytes(), 2 * (4 + 3) * 2 * 4);
        for p in 0..4 {
            let (k, v) = ([p as f32, 0.5], [-(p as f32), 1.5]);
            kv.store(0, &k, &v, 2, 1);
            kv.store(1, &k, &v, 2, 1);
            kv.advance(1);
        }
        assert_eq!(f32s(kv.layer(0).0), [0.0, 0.5, 1.0, 0.5, 2.0, 0.5, 3.0, 0.5]);
        // Position 3 overwrote position 0 in slot 0.
        assert_eq!(f32s(kv.layer(1).0), [3.0, 0.5, 1.0, 0.5, 2.0, 0.5]);
        assert_eq!(f32s(kv.layer(1).1), [-3.0, 1.5, -1.0, 1.5, -2.0, 1.5]);
    }

    #[test]
    fn copy_from_copies_the_filled_slots_of_every_layer() {
        let mut a = KvArena::new(&[4, 3], 2, 2, 4, KvType::F32);
        for p in 0..4 {
            let (k, v) = ([p as f32, 0.5, 10.0 + p as f32, 1.0], [-(p as f32), 1.5, 7.0, p as f32]);
            a.store(0, &k, &v, 4, 1);
            a.store(1, &k, &v, 4, 1);
            a.advance(1);
        }
        let mut b = KvArena::new(&[4, 3], 2, 2, 4, KvType::F32);
        b.copy_from(&a);
        assert_eq!(b.len(), 4);
        for l in 0..2 {
            assert_eq!(f32s(b.layer(l).0), f32s(a.layer(l).0));
            assert_eq!(f32s(b.layer(l).1), f32s(a.layer(l).1));
        }
        // A shorter sequence: only its positions matter, and len follows.
        let mut c = KvArena::new(&[4, 3], 2, 2, 4, KvType::F32);
        c.store(0, &[9.0; 4], &[9.0; 4], 4, 1);
        c.store(1, &[9.0; 4], &[9.0; 4], 4, 1);
        c.advance(1);
        b.copy_from(&c);
        assert_eq!(b.len(), 1);
        assert_eq!(f32s(b.layer(0).0)[..2], [9.0, 9.0]);
    }

    #[test]
    fn an_f16_arena_rounds_to_nearest_and_takes_half_the_bytes() {
        let mut kv = KvArena::new(&[2], 1, 2, 2, KvType::F16);
        assert_eq!(kv.bytes(), KvArena::bytes_for(&[2], 1, 2, 2, KvType::F32) / 2);
        kv.store(0, &[1.0 / 3.0, 65504.0], &[-2.5, 1e-8], 2, 1);
        kv.advance(1);
        let k = f32s(kv.layer(0).0);
        assert_eq!(k[..2], [half::f16::from_f32(1.0 / 3.0).to_f32(), 65504.0]);
        assert_eq!(f32s(kv.layer(0).1)[..2], [-2.5, half::f16::from_f32(1e-8).to_f32()]);
    }
}
