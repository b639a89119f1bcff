//! Fork-join for the kernels' hot loops: tasks 0..n run on the calling thread
//! and on workers that spin between calls. Decoding one token runs about 150
//! short parallel regions (a few matrix products and an attention per layer);
//! parking and waking threads for each (as a general-purpose pool does) costs
//! more than the work. Workers spin for a short while after each region, then
//! sleep until the next.
//!
//! Each calling thread owns its own workers (created on its first region,
//! stopped when it exits), so concurrent callers, such as tests or several
//! engines in one process, never share or wait for one another. The thread
//! count is rayon's current one (`--threads`, or the pool a caller
//! installed), exactly: more threads than cores is allowed (slower, never
//! different). A region started from inside a task runs its tasks inline.
//!
//! Tasks are handed out dynamically, so which thread runs a task is arbitrary:
//! callers make every task write its own outputs, computed the same way on any
//! thread, so the bits never depend on it.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// An idle worker spins this long (decode's gaps between regions are a few
/// microseconds), then yields its core to any other runnable thread until
/// `IDLE`, then sleeps until the next region. A worker that has slept
/// `RECLAIM` with nothing to do leaves (the highest-numbered first), so a
/// calling thread that stopped computing does not keep threads forever.
const SPIN: Duration = Duration::from_micros(50);
const IDLE: Duration = Duration::from_millis(2);
const RECLAIM: Duration = Duration::from_secs(10);

type Task<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// generation << 16 | number of workers taking part in it.
    state: AtomicU64,
    /// The current job; written by the owning thread before `state` is
    /// published, read by workers after they see it, untouched until
    /// `pending` is 0.
    job: UnsafeCell<(Option<Task<'static>>, usize)>,
    next: AtomicUsize,
    pending: AtomicUsize,
    /// The first panic of the current job's tasks, re-raised by the owner.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    panicked: AtomicBool,
    /// Set when the owning thread exits: workers leave.
    shutdown: AtomicBool,
    /// The number of live workers (indices 0..live). The owner publishes a
    /// job and a worker leaves only while holding it, so a job never counts
    /// a worker that has left.
    live: Mutex<usize>,
    wake: Condvar,
}

// Safety: `job` is only written by the one owning thread while no worker
// reads it (between jobs, with pending == 0), as described above.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A calling thread's workers.
struct Local {
    shared: Arc<Shared>,
}

impl Drop for Local {
    fn drop(&mut self) {
        let s = &self.shared;
        s.shutdown.store(true, Ordering::Release);
        let _g = s.live.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
    /// Set on workers, and on a caller while it runs tasks: a region started
    /// there runs inline.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

fn run_tasks(s: &Shared, f: Task, n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            s.panicked.store(true, Ordering::Relaxed);
            let mut first = s.panic.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some(payload);
            } else {
                // Dropping a payload could panic again, outside any guard.
                std::mem::forget(payload);
            }
        }
    }
}

/// `seen`: the generation current when the worker was spawned (the caller
/// publishes its job after spawning it, and the worker must not skip that job).
fn worker(s: Arc<Shared>, index: usize, mut seen: u64) {
    IN_TASK.with(|t| t.set(true));
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
                if s.shutdown.load(Ordering::Acquire) {
                    return;
                }
                let idle = idle_since.elapsed();
                if idle > IDLE {
                    let mut live = s.live.lock().unwrap_or_else(|e| e.into_inner());
                    if s.state.load(Ordering::Acquire) >> 16 == seen
                        && !s.shutdown.load(Ordering::Acquire)
                    {
                        let (guard, timeout) = s
                            .wake
                            .wait_timeout(live, RECLAIM)
                            .unwrap_or_else(|e| e.into_inner());
                        live = guard;
                        let still_idle = s.state.load(Ordering::Acquire) >> 16 == seen;
                        if timeout.timed_out() && still_idle && index + 1 == *live {
                            *live -= 1;
                            return;
                        }
                    }
                    drop(live);
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
                run_tasks(&s, f, n);
            }
            s.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Workers this thread's pool has now (a region of T threads runs on the
/// calling thread and T - 1 of them).
pub fn workers() -> usize {
    LOCAL.with(|cell| {
        cell.borrow().as_ref().map_or(0, |l| {
            *l.shared.live.lock().unwrap_or_else(|e| e.into_inner())
        })
    })
}

/// Run `f(0)`, ..., `f(n - 1)`, each once, on rayon's current number of
/// threads (the calling thread and its own workers); returns when all are
/// done. A panic in a task is re-raised here, after every task has ended.
pub fn parallel_for(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = rayon::current_num_threads().min(n).min(0xffff);
    if threads <= 1 || IN_TASK.with(|t| t.get()) {
        (0..n).for_each(f);
        return;
    }
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let local = slot.get_or_insert_with(|| Local {
            shared: Arc::new(Shared {
                state: AtomicU64::new(0),
                job: UnsafeCell::new((None, 0)),
                next: AtomicUsize::new(0),
                pending: AtomicUsize::new(0),
                panic: Mutex::new(None),
                panicked: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                live: Mutex::new(0),
                wake: Condvar::new(),
            }),
        });
        region(&local.shared, threads, n, f)
    })
}

fn region(shared: &Arc<Shared>, threads: usize, n: usize, f: Task) {
    let s = &**shared;
    // Safety: no worker reads `job` now (the last job's pending reached 0),
    // and `f` outlives its use: we return only after pending is 0 again.
    unsafe {
        let f_static: Task<'static> = std::mem::transmute::<Task<'_>, Task<'static>>(f);
        *s.job.get() = (Some(f_static), n);
    }
    s.next.store(0, Ordering::Relaxed);
    {
        let mut live = s.live.lock().unwrap_or_else(|e| e.into_inner());
        while *live < threads - 1 {
            let index = *live;
            let seen = s.state.load(Ordering::Relaxed) >> 16;
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("infer-eval-kernel-{index}"))
                .spawn(move || worker(sh, index, seen));
            if spawned.is_err() {
                break;
            }
            *live += 1;
        }
        let helpers = (threads - 1).min(*live);
        s.pending.store(helpers, Ordering::Relaxed);
        let generation = (s.state.load(Ordering::Relaxed) >> 16) + 1;
        s.state
            .store(generation << 16 | helpers as u64, Ordering::Release);
        s.wake.notify_all();
    }
    IN_TASK.with(|t| t.set(true));
    run_tasks(s, f, n);
    IN_TASK.with(|t| t.set(false));
    let mut spins = 0u32;
    while s.pending.load(Ordering::Acquire) != 0 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            // A helper without a core (more threads than cores, other
            // programs): let it run.
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
    unsafe { *s.job.get() = (None, 0) };
    if s.panicked.swap(false, Ordering::Relaxed) {
        let payload = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        match payload {
            Some(p) => resume_unwind(p),
            None => panic!("a kernel task panicked"),
        }
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

/// `out` as rows of `row_len`; task i gets, for every row, the columns
/// `i * block ..` (up to `block` of them), as one slice per row. Tasks touch
/// disjoint elements, so each may write its columns while the others run.
pub fn for_each_column_block_mut<T: Send>(
    out: &mut [T],
    row_len: usize,
    block: usize,
    f: impl Fn(usize, &mut [&mut [T]]) + Sync,
) {
    if out.is_empty() || row_len == 0 {
        return;
    }
    assert_eq!(out.len() % row_len, 0, "rows of equal length");
    let (rows, block) = (out.len() / row_len, block.max(1));
    let base = SendPtr(out.as_mut_ptr());
    parallel_for(row_len.div_ceil(block), &|i| {
        let c0 = i * block;
        let w = block.min(row_len - c0);
        // Safety: task i alone has columns c0..c0 + w of each row, and runs once.
        let mut cols: Vec<&mut [T]> = (0..rows)
            .map(|r| unsafe { std::slice::from_raw_parts_mut(base.get().add(r * row_len + c0), w) })
            .collect();
        f(i, &mut cols)
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
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU32;

    fn rayon_pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Every element is written once, by the task that owns its column
    /// block, with the right row and column, at 1 and 2 threads.
    #[test]
    fn column_blocks_cover_every_element_once() {
        for threads in [1, 2] {
            rayon_pool(threads).install(|| {
                let (rows, row_len) = (5, 37);
                let mut out = vec![(usize::MAX, 0u32); rows * row_len];
                for_each_column_block_mut(&mut out, row_len, 8, |i, cols| {
                    assert_eq!(cols.len(), rows);
                    for (r, col) in cols.iter_mut().enumerate() {
                        for (j, c) in col.iter_mut().enumerate() {
                            *c = (r * row_len + i * 8 + j, c.1 + 1);
                        }
                    }
                });
                for (at, &(v, times)) in out.iter().enumerate() {
                    assert_eq!((v, times), (at, 1), "element {at} at {threads} threads");
                }
            });
        }
    }

    #[test]
    fn every_task_runs_once_on_any_thread_count() {
        for threads in [1, 2, 3, 5] {
            let pool = rayon_pool(threads);
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

    /// One region of `threads` tasks that each wait until all `threads` are
    /// running at once: it completes only if that many distinct threads
    /// really took part. Returns the distinct threads seen.
    fn all_at_once(threads: usize) -> usize {
        let arrived = AtomicUsize::new(0);
        let ids = Mutex::new(HashSet::new());
        parallel_for(threads, &|_| {
            ids.lock().unwrap().insert(std::thread::current().id());
            arrived.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            while arrived.load(Ordering::SeqCst) < threads && t0.elapsed() < Duration::from_secs(30)
            {
                std::thread::yield_now();
            }
        });
        assert_eq!(arrived.load(Ordering::SeqCst), threads);
        let n = ids.lock().unwrap().len();
        n
    }

    /// The thread count asked for is the thread count that runs, also past
    /// the number of cores (finding 3 of issue 11: 4 used to silently be 2).
    #[test]
    fn a_region_runs_on_exactly_the_requested_threads() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        for threads in [2, 3, 4, 2 * cores + 1] {
            let seen = rayon_pool(threads).install(|| all_at_once(threads));
            assert_eq!(
                seen, threads,
                "asked for {threads} threads on {cores} cores"
            );
        }
    }

    /// Four callers at once, each with its own 3 threads, on however many
    /// cores: every region still runs on 3 distinct threads (no caller falls
    /// back or waits for another), every task once, and the integer sums are
    /// those of one thread.
    #[test]
    fn concurrent_callers_each_get_their_own_workers() {
        std::thread::scope(|sc| {
            for c in 0..4u64 {
                sc.spawn(move || {
                    let pool = rayon_pool(3);
                    for round in 0..20u64 {
                        assert_eq!(
                            pool.install(|| all_at_once(3)),
                            3,
                            "caller {c} round {round}"
                        );
                        let out: Vec<AtomicU64> = (0..97).map(|_| AtomicU64::new(0)).collect();
                        pool.install(|| {
                            parallel_for(97, &|i| {
                                let v = (0..1000u64).map(|k| k * (i as u64 + c + round)).sum();
                                out[i].fetch_add(v, Ordering::Relaxed);
                            })
                        });
                        for (i, o) in out.iter().enumerate() {
                            let want: u64 = (0..1000u64).map(|k| k * (i as u64 + c + round)).sum();
                            assert_eq!(o.load(Ordering::Relaxed), want);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn nested_regions_run_inline() {
        let total = AtomicU32::new(0);
        rayon_pool(3).install(|| {
            parallel_for(8, &|_| {
                parallel_for(3, &|_| {
                    total.fetch_add(1, Ordering::Relaxed);
                });
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 8 * 3);
    }

    /// A task's panic reaches the caller with its own message, after the
    /// region has ended, and the pool keeps working.
    #[test]
    fn a_task_panic_is_re_raised_with_its_message() {
        let pool = rayon_pool(3);
        let r = pool.install(|| {
            std::panic::catch_unwind(|| {
                parallel_for(50, &|i| {
                    if i == 37 {
                        panic!("task 37 failed");
                    }
                })
            })
        });
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"task 37 failed"));
        let hits = AtomicU32::new(0);
        pool.install(|| {
            parallel_for(10, &|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(hits.load(Ordering::Relaxed), 10);
    }
}
