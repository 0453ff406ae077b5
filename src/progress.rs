//! Progress reporting from long library operations to whatever front end shows it.

/// Receives progress from fold, verify and unfold. The CLI draws bars from it; the default
/// methods do nothing, so a library user implements only what it shows.
pub trait Progress: Sync {
    /// A phase begins with this much work to do (0 when not known yet).
    fn phase(&self, _name: &'static str, _items: u64, _bytes: u64) {}
    /// Work done since the last call.
    fn advance(&self, _items: u64, _bytes: u64) {}
    /// A warning that does not stop the operation.
    fn warn(&self, _message: &str) {}
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {}
