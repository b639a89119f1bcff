//! The engine's own thread: requests arrive over a channel, join the
//! engine between steps, and get their events back over their own channel.
//! A closed channel (the client went away) frees the sequence before the
//! next step. The HTTP side never touches the model.

use super::metrics::Metrics;
use crate::engine::core::{Engine, EngineOptions, Event, Failure, SeqId, SeqSpec};
use crate::loader::LoadedModel;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use tokio::sync::mpsc::UnboundedSender;

/// Events of a request's choices: (choice index, event).
pub type Events = UnboundedSender<(usize, Event)>;

enum Cmd {
    Submit { specs: Vec<SeqSpec>, tx: Events },
    Stop,
}

/// The HTTP side's handle on the engine thread.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Cmd>,
}

impl Scheduler {
    /// Start the engine thread on `threads` worker threads.
    pub fn start(
        loaded: Arc<LoadedModel>,
        opts: EngineOptions,
        threads: usize,
        metrics: Arc<Metrics>,
    ) -> crate::Result<(Self, std::thread::JoinHandle<()>)> {
        // Fail here, not on the thread, for bad options.
        Engine::new(&loaded.model, opts.clone())?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| {
                crate::Error::Input(format!("cannot start {threads} worker threads: {e}"))
            })?;
        let (tx, rx) = mpsc::channel();
        let h = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || pool.install(|| run(&loaded, opts, rx, &metrics)))
            .map_err(|e| crate::Error::Input(format!("cannot start the engine thread: {e}")))?;
        Ok((Scheduler { tx }, h))
    }

    /// Hand a request's sequences to the engine. False if it has stopped.
    pub fn submit(&self, specs: Vec<SeqSpec>, tx: Events) -> bool {
        self.tx.send(Cmd::Submit { specs, tx }).is_ok()
    }

    /// Finish what runs, then end the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

struct Owner {
    tx: Events,
    choice: usize,
}

fn run(loaded: &LoadedModel, opts: EngineOptions, rx: mpsc::Receiver<Cmd>, metrics: &Metrics) {
    let mut engine = Engine::new(&loaded.model, opts.clone()).expect("checked at start");
    let mut owners: HashMap<SeqId, Owner> = HashMap::new();
    let mut next_id: SeqId = 0;
    let mut stopping = false;
    loop {
        // Block while idle; otherwise take whatever arrived since the last step.
        let mut cmds = Vec::new();
        if engine.is_idle() {
            if stopping {
                return;
            }
            match rx.recv() {
                Ok(c) => cmds.push(c),
                Err(_) => return,
            }
        }
        while let Ok(c) = rx.try_recv() {
            cmds.push(c);
        }
        for c in cmds {
            match c {
                Cmd::Stop => stopping = true,
                Cmd::Submit { specs, tx } => {
                    for (choice, spec) in specs.into_iter().enumerate() {
                        let id = next_id;
                        next_id += 1;
                        match engine.add(id, spec) {
                            Ok(()) => {
                                owners.insert(
                                    id,
                                    Owner {
                                        tx: tx.clone(),
                                        choice,
                                    },
                                );
                            }
                            Err(e) => {
                                let _ = tx.send((choice, Event::Failed(Failure::of(&e))));
                            }
                        }
                    }
                }
            }
        }
        // Clients that went away free their sequences now.
        for id in engine.ids() {
            if owners.get(&id).is_none_or(|o| o.tx.is_closed()) {
                engine.abort(id);
                owners.remove(&id);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        let stepped = catch_unwind(AssertUnwindSafe(|| engine.step()));
        metrics
            .queue_depth
            .store(engine.waiting() as u64, Ordering::Relaxed);
        metrics
            .running
            .store(engine.running() as u64, Ordering::Relaxed);
        match stepped {
            Ok(Ok(events)) => {
                if engine.last_batch() > 0 {
                    metrics.observe_batch(engine.last_batch());
                }
                for (id, ev) in events {
                    let end = matches!(ev, Event::Done(_) | Event::Failed(_));
                    if let Event::Token(_) = ev {
                        metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(o) = owners.get(&id) {
                        if o.tx.send((o.choice, ev)).is_err() {
                            if !end {
                                engine.abort(id);
                                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                            }
                            owners.remove(&id);
                            continue;
                        }
                    }
                    if end {
                        owners.remove(&id);
                    }
                }
            }
            // A failed or panicking step fails the sequences in it, not the server.
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(p) => format!(
                        "internal error: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into())
                    ),
                    Ok(Ok(_)) => unreachable!(),
                };
                metrics.failed_steps.fetch_add(1, Ordering::Relaxed);
                for id in engine.ids() {
                    if let Some(o) = owners.remove(&id) {
                        let _ = o.tx.send((
                            o.choice,
                            Event::Failed(Failure {
                                message: msg.clone(),
                                resource: false,
                            }),
                        ));
                    }
                }
                engine = Engine::new(&loaded.model, opts.clone()).expect("checked at start");
            }
        }
        let pc = engine.prefix_cache();
        metrics.prefix_hits.store(pc.hits, Ordering::Relaxed);
        metrics.prefix_misses.store(pc.misses, Ordering::Relaxed);
        metrics
            .prefix_reused_tokens
            .store(pc.reused_tokens, Ordering::Relaxed);
        metrics.prefix_bytes.store(pc.bytes(), Ordering::Relaxed);
    }
}
