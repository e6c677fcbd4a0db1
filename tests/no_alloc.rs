//! After warm-up, a decode step allocates nothing on the heap (a counting global allocator).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use quill::generate::argmax;
use quill::Model;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_do_not_allocate() {
    let model = Model::load_dir(&common::data_dir().join("tiny-gpt2-hub")).unwrap();
    let mut session = model.session(None).unwrap();
    let mut next = argmax(session.feed(&[464, 3290, 318, 257]).unwrap());
    next = argmax(session.feed(&[next]).unwrap());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..20 {
        next = argmax(session.feed(&[next]).unwrap());
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "20 decode steps made {} heap allocations", after - before);
}
