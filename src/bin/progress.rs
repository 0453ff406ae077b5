//! indicatif progress bars for the library's progress events; hidden when stderr is not a
//! terminal or when --quiet is given.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bars for one command run.
pub struct Bars {
    visible: bool,
    bar: Mutex<ProgressBar>,
    items: Arc<AtomicU64>,
    total_items: Arc<AtomicU64>,
}

impl Bars {
    /// Bars that draw on a terminal unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bars {
            visible: !quiet && std::io::stderr().is_terminal(),
            bar: Mutex::new(ProgressBar::hidden()),
            items: Arc::new(AtomicU64::new(0)),
            total_items: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Clears the last bar.
    pub fn finish(&self) {
        self.bar.lock().expect("bar lock").finish_and_clear();
    }

    fn style(&self, name: &str, bytes: u64) -> ProgressStyle {
        let items = self.items.clone();
        let total = self.total_items.clone();
        let template = if bytes > 0 {
            format!("{name:>8} [{{wide_bar}}] {{bytes}}/{{total_bytes}} {{items}} {{binary_bytes_per_sec}} eta {{eta}}")
        } else {
            // No total known up front (a fold streams its walk): show what is done so far.
            format!(
                "{name:>8} {{spinner}} {{items}} {{bytes}} {{binary_bytes_per_sec}} {{elapsed}}"
            )
        };
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> ")
            .with_key(
                "items",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let (done, total) =
                        (items.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
                    let _ = if total > 0 {
                        write!(w, "{done}/{total} entries")
                    } else {
                        write!(w, "{done} entries")
                    };
                },
            )
    }
}

impl sheaf::progress::Progress for Bars {
    fn phase(&self, name: &'static str, items: u64, bytes: u64) {
        self.items.store(0, Ordering::Relaxed);
        self.total_items.store(items, Ordering::Relaxed);
        let mut bar = self.bar.lock().expect("bar lock");
        bar.finish_and_clear();
        *bar = if self.visible {
            let next = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
            next.set_style(self.style(name, bytes));
            if bytes == 0 {
                next.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            next
        } else {
            ProgressBar::hidden()
        };
    }

    fn advance(&self, items: u64, bytes: u64) {
        self.items.fetch_add(items, Ordering::Relaxed);
        if self.visible {
            self.bar.lock().expect("bar lock").inc(bytes);
        }
    }

    fn warn(&self, message: &str) {
        let bar = self.bar.lock().expect("bar lock");
        if self.visible {
            bar.println(format!("warning: {message}"));
        } else {
            eprintln!("sheaf: warning: {message}");
        }
    }
}
