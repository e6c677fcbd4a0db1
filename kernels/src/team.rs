//! A team of threads that run the kernels' parallel regions, spinning between them.
//!
//! Decoding a token is about 60 parallel regions (each matmul, the attention of a layer), some
//! only tens of microseconds long. A rayon worker that finds no work yields to the OS and then
//! sleeps, so a region often begins by waking a thread through the kernel (tens of microseconds
//! in a VM) and ends when that late thread finishes. The team's workers instead spin on a
//! generation counter for a short while after each region ([`SPIN`]), so a region reaches them
//! in well under a microsecond while regions follow each other, and they sleep on a condition
//! variable once the process goes quiet. A team has as many threads as the rayon pool it was
//! asked for by (the caller is one of them), and there is none for a pool larger than the
//! CPUs the process may use: spinning never needs more threads than cores.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps between the regions of
/// one token (and between tokens), short enough not to hold a core once a run is over.
const SPIN: Duration = Duration::from_micros(500);

/// The job of the current region: called once per part, with the part's index.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per region; a worker runs each generation's job once.
    generation: AtomicUsize,
    /// Workers that have not finished the current region yet.
    running: AtomicUsize,
    /// The current region's job, written by the caller before it bumps `generation`.
    job: UnsafeCell<Option<Job>>,
    /// Workers asleep (or about to be) on `wake`.
    sleeping: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller holding the team's `busy` lock, before the
// Release store of `generation`; workers read it only after an Acquire load sees that
// generation, and the caller does not write it again until every worker has finished (the
// Acquire load of `running` reaching 0).
unsafe impl Sync for Shared {}

pub(crate) struct Team {
    /// Threads taking part in a region, the caller included.
    size: usize,
    shared: &'static Shared,
    /// Held by the one caller whose region is running.
    busy: Mutex<()>,
}

impl Team {
    /// The team of `size` threads (`size - 1` workers, started on first use and kept for the
    /// life of the process), or `None` for one thread, and for more threads than the CPUs the
    /// process may run on: spinning threads that outnumber the cores take turns on them and
    /// stall every region, so such a pool keeps rayon.
    pub(crate) fn of_size(size: usize) -> Option<&'static Team> {
        /// One team per thread count, for the pools tests and `quill bench --threads 1,2` build.
        static TEAMS: [OnceLock<Team>; 64] = [const { OnceLock::new() }; 64];
        static CPUS: OnceLock<usize> = OnceLock::new();
        let cpus = *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        (2..=TEAMS.len().min(cpus)).contains(&size).then(|| TEAMS[size - 1].get_or_init(|| Team::start(size)))
    }

    fn start(size: usize) -> Team {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            generation: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            sleeping: Mutex::new(0),
            wake: Condvar::new(),
        }));
        for part in 1..size {
            std::thread::Builder::new()
                .name(format!("quill-team-{part}"))
                .spawn(move || work(shared, part))
                .expect("cannot start a kernel thread");
        }
        Team { size, shared, busy: Mutex::new(()) }
    }

    /// Runs `f(part)` for every part in `0..size`, part 0 on the calling thread, and returns once
    /// all have finished. Returns `false` without running anything when another thread's region
    /// holds the team (the caller then uses rayon).
    pub(crate) fn run(&self, f: &(dyn Fn(usize) + Sync)) -> bool {
        let _busy = match self.busy.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let shared = self.shared;
        // SAFETY: erasing the lifetime is sound: this function does not return before every
        // worker is done with `f` (the wait below), even if part 0 panics (the guard waits too).
        let job: Job = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(f) };
        // SAFETY: no worker reads `job` now: the previous region ended with `running` at 0.
        unsafe { *shared.job.get() = Some(job) };
        shared.running.store(self.size - 1, Ordering::Relaxed);
        // From here on, leaving this function (return or unwind) waits for the workers.
        let _wait = WaitForWorkers(shared);
        shared.generation.fetch_add(1, Ordering::Release);
        if *shared.sleeping.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            shared.wake.notify_all();
        }
        f(0);
        true
    }

    /// [`Team::run`] of `f(part)` for `part` in `0..parts`: thread t takes parts t, t + size,
    /// t + 2·size, … (the kernels usually make as many parts as threads).
    fn run_parts(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        self.run(&|t| (t..parts).step_by(self.size).for_each(f))
    }
}

/// Waits, when dropped, until every worker has finished the current region.
struct WaitForWorkers(&'static Shared);

impl Drop for WaitForWorkers {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.0.running.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            spins = spins.saturating_add(1);
            // A worker that lost its core (another process on it) needs the core back.
            if spins > 1 << 16 {
                std::thread::yield_now();
            }
        }
    }
}

/// A worker's life: wait for each new generation, run its part of the job, report.
fn work(shared: &'static Shared, part: usize) {
    let mut seen = 0;
    loop {
        seen = wait_for_next(shared, seen);
        // A panic here would leave the caller waiting forever: abort instead (the kernels check
        // every length before a region starts, so it would be a bug, never bad input).
        let guard = AbortOnUnwind;
        // SAFETY: the Acquire load of `generation` in `wait_for_next` saw the caller's Release
        // store, which followed its write of `job`; the caller keeps `f` alive until `running`
        // reaches 0, which happens only after this call.
        let job = unsafe { (*shared.job.get()).expect("a region's job is set before it starts") };
        // SAFETY: see above; `job` points to the caller's live closure.
        unsafe { (*job)(part) };
        std::mem::forget(guard);
        shared.running.fetch_sub(1, Ordering::Release);
    }
}

struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        std::process::abort();
    }
}

/// Spins until `generation` moves past `seen`, then sleeps until it does; returns the new value.
fn wait_for_next(shared: &Shared, seen: usize) -> usize {
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        let g = shared.generation.load(Ordering::Acquire);
        if g != seen {
            return g;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && started.elapsed() > SPIN {
            break;
        }
    }
    let mut sleeping = shared.sleeping.lock().unwrap_or_else(|e| e.into_inner());
    *sleeping += 1;
    // Checked under the lock: the caller bumps `generation` before it takes the lock to see
    // whether anyone sleeps, so a bump is either seen here or followed by a notification.
    let mut g = shared.generation.load(Ordering::Acquire);
    while g == seen {
        sleeping = shared.wake.wait(sleeping).unwrap_or_else(|e| e.into_inner());
        g = shared.generation.load(Ordering::Acquire);
    }
    *sleeping -= 1;
    g
}

/// Runs `f(part)` for `part` in `0..parts` on the current rayon pool's thread count: on the team
/// of that size when it is free, else on rayon.
pub(crate) fn parallel_for(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    if Team::of_size(threads).is_some_and(|team| team.run_parts(parts, f)) {
        return;
    }
    (0..parts).into_par_iter().for_each(f);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs exactly once on a team of each size, for fewer, as many and more parts
    /// than threads.
    #[test]
    fn a_team_runs_every_part_once() {
        for size in [2, 3] {
            let team = Team::start(size);
            for parts in [0, 1, 2, 3, 7, 64] {
                let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                assert!(team.run_parts(parts, &|p| {
                    counts[p].fetch_add(1, Ordering::Relaxed);
                }));
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "team of {size}, {parts} parts");
            }
        }
    }

    /// `parallel_for` runs every part exactly once from pools of each size, on the shared team
    /// or (busy team, more threads than CPUs) on rayon.
    #[test]
    fn every_part_runs_once() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for parts in [0, 1, 2, 3, 7, 64] {
                    let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    parallel_for(parts, &|p| {
                        counts[p].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "{threads} threads, {parts} parts");
                }
            });
        }
    }

    /// Workers that went to sleep (the process was quiet for longer than the spin) wake for the
    /// next region, and the parts really run on other threads.
    #[test]
    fn sleeping_workers_wake_for_the_next_region() {
        // A team of its own (not the shared one of this size), so no other test holds it.
        let team = Team::start(5);
        for _ in 0..3 {
            // Until every worker sleeps (not merely waits unscheduled in its spin).
            while *team.shared.sleeping.lock().unwrap() < 4 {
                std::thread::sleep(SPIN);
            }
            let ids = Mutex::new(Vec::new());
            assert!(team.run(&|_| ids.lock().unwrap().push(std::thread::current().id())));
            let ids = ids.into_inner().unwrap();
            assert_eq!(ids.len(), 5);
            assert!((1..5).all(|i| !ids[..i].contains(&ids[i])), "parts on distinct threads: {ids:?}");
        }
    }

    /// While a region holds the team, a second caller (another thread, or a part of the region
    /// itself) is told to use rayon.
    #[test]
    fn a_busy_team_refuses_a_second_caller() {
        let team = Team::start(3);
        let (inner, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let try_inner = || {
            if !team.run(&|_| {
                inner.fetch_add(1, Ordering::Relaxed);
            }) {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        };
        assert!(team.run(&|part| {
            if part == 0 {
                try_inner();
                std::thread::scope(|s| {
                    s.spawn(try_inner);
                });
            }
        }));
        assert_eq!((inner.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)), (0, 2));
    }

    /// More threads than CPUs get no team (they would spin against each other).
    #[test]
    fn no_team_for_more_threads_than_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(Team::of_size(cpus + 1).is_none());
        assert!(Team::of_size(1).is_none());
    }
}
