//! State channels: the last value of a slot, known to every context that has a
//! `StateChannel` there. Context A sets its state before anyone listens; B
//! connects, learns it, and follows the changes with an `on_received` callback; C
//! joins later still and learns the latest state at once. The state is a typed
//! object (`ObjectOf` with serde).
//!
//!     cargo run --example state

use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use yoton_channels::{ObjectOf, StateChannel};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    phase: String,
    percent: i64,
}

type JobState = StateChannel<ObjectOf<Job>>;

fn job(phase: &str, percent: i64) -> Job {
    Job {
        phase: phase.into(),
        percent,
    }
}

/// Wait (bounded) until `get` returns `expected`: state arrives asynchronously.
fn wait_for(get: impl Fn() -> Option<Job>, expected: &Job) -> Option<Job> {
    let t0 = Instant::now();
    while get().as_ref() != Some(expected) && t0.elapsed() < WAIT {
        sleep(Duration::from_millis(5));
    }
    get()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();

    // A sets its state while it is still alone.
    let a = Context::new()?;
    let state_a = JobState::new(&a, "job")?;
    println!("A sets            {:?}", job("starting", 0));
    state_a.send(job("starting", 0))?;

    // B follows the state with a callback (it runs on a runtime thread). The state
    // is resent whenever a context joins, so the callback skips repeats.
    let b = Context::new()?;
    let state_b = JobState::new(&b, "job")?;
    let seen: Arc<Mutex<Option<Job>>> = Arc::default();
    let seen_by_callback = seen.clone();
    state_b.on_received(move |s| {
        let (Some(now), Ok(mut last)) = (s.recv(), seen_by_callback.lock()) else {
            return;
        };
        if last.as_ref() != Some(&now) {
            println!("  B on_received:  {now:?}");
            *last = Some(now);
        }
    });
    let seen_by_b = || seen.lock().ok().and_then(|s| s.clone());

    // B joins: on a new connection every state channel resends, so B learns it.
    let ab = a.bind("localhost:0")?;
    b.connect(&format!("localhost:{}", ab.local().port), WAIT)?;
    wait_for(seen_by_b, &job("starting", 0));

    // A changes the state; B's callback sees each change.
    for next in [job("working", 50), job("done", 100)] {
        println!("A sets            {next:?}");
        state_a.send(next.clone())?;
        wait_for(seen_by_b, &next);
    }

    // C joins (through B) later still: it learns the latest state only.
    let c = Context::new()?;
    let state_c = JobState::new(&c, "job")?;
    let bc = b.bind("localhost:0")?;
    c.connect(&format!("localhost:{}", bc.local().port), WAIT)?;
    let learned = wait_for(|| state_c.recv(), &job("done", 100)).ok_or("C learned nothing")?;
    println!("C joins, learns   {learned:?}");

    for ctx in [c, b, a] {
        ctx.close();
    }
    Ok(())
}
