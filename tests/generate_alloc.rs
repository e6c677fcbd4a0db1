//! A generation's buffers are allocated once: a longer generation makes no more heap allocations
//! than a shorter one (counting global allocator), with every processor, sampling and logprobs on.

mod generate_util;

use generate_util::common::counting_alloc::{allocations, Counting};
use quill::generate::{DecodeOptions, Flow, Generator, OnContextFull, Sampling, Strategy};
use quill::Model;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One test only: the counter is global. Runs on a thread of rayon's pool (see tests/no_alloc.rs
/// for why).
#[test]
fn generation_allocates_per_run_not_per_token() {
    let model = Model::load(&generate_util::hub(), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    let prompt = [464, 13458, 7696];
    for (top_k, top_p, min_p) in [(0, 0.9, None), (40, 1.0, Some(0.05)), (0, 1.0, None)] {
        let opts = DecodeOptions {
            max_new_tokens: 0,
            eos_token_ids: vec![50256],
            strategy: Strategy::Sample(Sampling { temperature: 0.8, top_k, top_p, min_p, seed: 3 }),
            repetition_penalty: 1.2,
            no_repeat_ngram_size: 3,
            min_new_tokens: 2,
            on_context_full: OnContextFull::Stop,
            logprobs: true,
        };
        rayon::broadcast(|_| ());
        // All runs on one thread of the pool, warm-up included.
        let counts: Vec<usize> = rayon::scope(|_| {
            [1, 5, 40, 5]
                .into_iter()
                .map(|n| {
                    let mut opts = opts.clone();
                    opts.max_new_tokens = n;
                    let mut generator = Generator::new(opts, model.config().vocab_size).unwrap();
                    // Warm-up run: first-time allocations outside the generation loop.
                    session.reset();
                    generator.run(&mut session, &prompt, 0, |_| Ok(Flow::Continue)).unwrap();
                    session.reset();
                    let before = allocations();
                    let g = generator.run(&mut session, &prompt, 1, |_| Ok(Flow::Continue)).unwrap();
                    let count = allocations() - before;
                    assert_eq!(g.new_ids.len(), n);
                    count
                })
                .collect()
        });
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "allocations per run of 1, 5, 40, 5 tokens: {counts:?}");
        assert!(counts[0] <= 2, "a run allocates only its new_ids and logprobs: {counts:?}");
    }
}
