//! Fork-join for the kernels' hot loops: tasks 0..n run on the calling thread
//! and on workers that spin between calls. Decoding one token runs about 150
//! short parallel regions (a few matrix products and an attention per layer);
//! parking and waking threads for each (as a general-purpose pool does) costs
//! more than the work. Workers spin for a short while after each region, then
//! sleep until the next.
//!
//! Tasks are handed out dynamically, so which thread runs a task is arbitrary:
//! callers make every task write its own outputs, computed the same way on any
//! thread, so the bits never depend on it. The thread count is rayon's current
//! one (`--threads`, or the pool a caller installed), at most the core count.
//! A call made while the pool is busy (another thread's region, or a nested
//! one) falls back to rayon.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// An idle worker spins this long (decode's gaps between regions are a few
/// microseconds), then yields its core to any other runnable thread until
/// `IDLE`, then sleeps until the next region.
const SPIN: Duration = Duration::from_micros(50);
const IDLE: Duration = Duration::from_millis(2);

type Task<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// generation << 16 | number of workers taking part in it.
    state: AtomicU64,
    /// The current job; written by the caller before `state` is published,
    /// read by workers after they see it, untouched until `pending` is 0.
    job: UnsafeCell<(Option<Task<'static>>, usize)>,
    next: AtomicUsize,
    pending: AtomicUsize,
    panicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

// Safety: `job` is only written by the thread holding `Pool::busy` while no
// worker reads it (between jobs, with pending == 0), as described above.
unsafe impl Sync for Shared {}

struct Pool {
    shared: &'static Shared,
    /// Held by the caller for the whole of a job; also guards `workers`.
    busy: Mutex<usize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        shared: Box::leak(Box::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new((None, 0)),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })),
        busy: Mutex::new(0),
    })
}

fn run_tasks(s: &Shared, f: Task, n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            s.panicked.store(true, Ordering::Relaxed);
            // Dropping the payload could panic again, outside the guard.
            std::mem::forget(payload);
        }
    }
}

/// `seen`: the generation current when the worker was spawned (the caller
/// publishes its job after spawning it, and the worker must not skip that job).
fn worker(s: &'static Shared, index: usize, mut seen: u64) {
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        let state = loop {
            let st = s.state.load(Ordering::Acquire);
            if st >> 16 != seen {
                break st;
            }
            spins += 1;
            if spins.is_multiple_of(256) {
                let idle = idle_since.elapsed();
                if idle > IDLE {
                    let guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    if s.state.load(Ordering::Acquire) >> 16 == seen {
                        drop(s.wake.wait(guard));
                    }
                    idle_since = Instant::now();
                } else if idle > SPIN {
                    std::thread::yield_now();
                }
            }
            std::hint::spin_loop();
        };
        seen = state >> 16;
        if index < (state & 0xffff) as usize {
            // Safety: published before `state`; stable until `pending` is 0.
            let (f, n) = unsafe { *s.job.get() };
            if let Some(f) = f {
                run_tasks(s, f, n);
            }
            s.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Run `f(0)`, ..., `f(n - 1)`, each once, on up to rayon's current number of
/// threads; returns when all are done.
pub fn parallel_for(n: usize, f: &(dyn Fn(usize) + Sync)) {
    // Never more threads than cores: a spinning thread without a core of its
    // own only delays the region it belongs to.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()));
    let threads = rayon::current_num_threads().min(cores).min(n).min(0xffff);
    if threads <= 1 {
        (0..n).for_each(f);
        return;
    }
    let p = pool();
    let Ok(mut workers) = p.busy.try_lock() else {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
        return;
    };
    let s = p.shared;
    while *workers < threads - 1 {
        let index = *workers;
        let seen = s.state.load(Ordering::Relaxed) >> 16;
        let spawned = std::thread::Builder::new()
            .name(format!("infer-eval-kernel-{index}"))
            .spawn(move || worker(s, index, seen));
        if spawned.is_err() {
            break;
        }
        *workers += 1;
    }
    let helpers = (threads - 1).min(*workers);
    // Safety: no worker reads `job` now (the last job's pending reached 0),
    // and `f` outlives its use: we return only after pending is 0 again.
    unsafe {
        let f_static: Task<'static> = std::mem::transmute::<Task<'_>, Task<'static>>(f);
        *s.job.get() = (Some(f_static), n);
    }
    s.next.store(0, Ordering::Relaxed);
    s.pending.store(helpers, Ordering::Relaxed);
    let generation = (s.state.load(Ordering::Relaxed) >> 16) + 1;
    s.state
        .store(generation << 16 | helpers as u64, Ordering::Release);
    {
        let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    run_tasks(s, f, n);
    let mut spins = 0u32;
    while s.pending.load(Ordering::Acquire) != 0 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            // A helper without a core (other programs, other tests): let it run.
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
    unsafe { *s.job.get() = (None, 0) };
    if s.panicked.swap(false, Ordering::Relaxed) {
        drop(workers);
        panic!("a kernel task panicked");
    }
}

/// `out` in chunks of `chunk` elements (the last may be shorter); task i gets
/// chunk i. Each task writes only its own chunk.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let len = out.len();
    if len == 0 {
        return;
    }
    let chunk = chunk.max(1);
    let base = SendPtr(out.as_mut_ptr());
    parallel_for(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        // Safety: chunks are disjoint and each index i is run exactly once.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
        f(i, part)
    });
}

struct SendPtr<T>(*mut T);
impl<T> SendPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}
unsafe impl<T: Send> Sync for SendPtr<T> {}
unsafe impl<T: Send> Send for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_on_any_thread_count() {
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for n in [0, 1, 2, 7, 100, 1000] {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                pool.install(|| {
                    parallel_for(n, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {n} tasks"
                );
            }
        }
    }

    #[test]
    fn concurrent_and_nested_callers_fall_back() {
        let total = AtomicU32::new(0);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..50 {
                        parallel_for(8, &|_| {
                            parallel_for(3, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 8 * 3);
    }
}
