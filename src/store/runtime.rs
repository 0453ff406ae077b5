//! The async runtime that drives the remote back-ends behind the store's blocking API.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

/// Runs a future to completion on the shared runtime. Safe to call from many threads at once
/// (rayon workers, FUSE threads); not from inside the runtime itself.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sheaf-io")
                .enable_all()
                .build()
                .expect("start the I/O runtime")
        })
        .block_on(future)
}
