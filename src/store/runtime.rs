//! The async runtime that drives the remote back-ends behind the store's blocking API.

use std::future::Future;
use std::sync::Mutex;
use tokio::runtime::Runtime;

/// Runs a future to completion on the shared runtime. Safe to call from many threads at once
/// (rayon workers, FUSE threads); not from inside the runtime itself.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// This process's runtime. A child made by `fork` (a data loader's worker) inherits the parent's
/// runtime without its threads, so each process id gets a runtime of its own; the inherited one
/// is leaked, since shutting it down would wait for threads that do not exist here.
fn runtime() -> &'static Runtime {
    static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match *slot {
        Some((owner, runtime)) if owner == pid => runtime,
        _ => {
            let runtime: &'static Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sheaf-io")
                    .enable_all()
                    .build()
                    .expect("start the I/O runtime"),
            ));
            *slot = Some((pid, runtime));
            runtime
        }
    }
}
