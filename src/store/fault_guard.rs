//! Keeps a mapped file cut short by another program from killing the process: a fault past the
//! file's new end, on a mapping sheaf registered, is answered with a page of zeros and noted
//! on the mapping, instead of the `SIGBUS` the kernel would otherwise deliver.
//!
//! Why: the cache tier maps its containers and checks their lengths now and then, not on every
//! read (a system call on every read cost a fifth of a small read's time). A file truncated
//! between two checks used to kill the reader. Now the read sees zeros, which fail the entry's
//! checksum (and the caller checks [`Guard::faulted`] besides), so the read is served from the
//! origin and the damaged copy quarantined, as for any other damage.
//!
//! How: a process-wide `SIGBUS` handler, installed once, looks the faulting address up in a
//! registry of mappings that is only read with atomic loads (a signal handler may take no
//! lock and allocate nothing). On a hit it maps an anonymous zero page over the faulting page
//! (`MAP_FIXED`) and returns, so the faulting instruction runs again and reads zeros. On a
//! miss it hands the signal to the handler that was there before (Rust's own stack-overflow
//! handler, Python's `faulthandler`), or restores the default action, so an unrelated fault
//! kills the process as it always did.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// Registry slots per chunk. Chunks are added as needed and never freed, so the handler can
/// walk them without a lock.
const SLOTS_PER_CHUNK: usize = 1024;

/// The most chunks: four million mappings at once; a mapping beyond that is not guarded.
const MAX_CHUNKS: usize = 4096;

/// One registered mapping: `start` is 0 when the slot is free.
#[derive(Debug)]
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

type Chunk = [Slot; SLOTS_PER_CHUNK];

/// The chunks, null past the ones allocated.
static CHUNKS: [AtomicPtr<Chunk>; MAX_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];

/// Chunks allocated (the handler walks this many).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// Which slots are free: taken and given back by registrations only, never by the handler.
struct Free {
    /// Slots given back, reused first.
    given_back: Vec<usize>,
    /// Slots never used yet start here.
    unused_from: usize,
}

static FREE: Mutex<Free> = Mutex::new(Free {
    given_back: Vec::new(),
    unused_from: 0,
});

/// Faults answered with a zero page since the process started.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// The page size, read once when the handler is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

/// The `SIGBUS` action that was in place before ours, which faults we do not own are given to.
static mut PREVIOUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();

static INSTALL: Once = Once::new();

/// A registered mapping: unregistered when dropped, which must happen before the mapping is
/// unmapped (declare it before the mapping in a struct that holds both).
#[derive(Debug)]
pub struct Guard {
    /// The slot and its number (slots live as long as the process); `None` for an empty
    /// mapping, or when four million are registered already.
    slot: Option<(usize, &'static Slot)>,
}

impl Guard {
    /// Registers the `len` bytes mapped at `start` (installing the handler on first use).
    pub fn register(start: *const u8, len: usize) -> Guard {
        if start.is_null() || len == 0 {
            return Guard { slot: None };
        }
        install();
        let Some((number, slot)) = claim_slot() else {
            return Guard { slot: None };
        };
        slot.len.store(len, Ordering::Relaxed);
        slot.faulted.store(false, Ordering::Relaxed);
        // Release: a handler that sees the start sees the length stored before it.
        slot.start.store(start as usize, Ordering::Release);
        Guard {
            slot: Some((number, slot)),
        }
    }

    /// True once a fault past the file's end was answered with zeros on this mapping: what it
    /// reads since (or read during the fault) is not the file's.
    pub fn faulted(&self) -> bool {
        self.slot
            .is_some_and(|(_, slot)| slot.faulted.load(Ordering::Acquire))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((number, slot)) = self.slot {
            slot.start.store(0, Ordering::Release);
            lock_free_slots().given_back.push(number);
        }
    }
}

/// How many faults have been answered with zeros in this process.
pub fn caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

fn lock_free_slots() -> std::sync::MutexGuard<'static, Free> {
    FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A free slot and its number: one given back, or the next never used (allocating its chunk).
fn claim_slot() -> Option<(usize, &'static Slot)> {
    let mut free = lock_free_slots();
    let number = match free.given_back.pop() {
        Some(number) => number,
        None => {
            let number = free.unused_from;
            let chunk = number / SLOTS_PER_CHUNK;
            if chunk >= MAX_CHUNKS {
                return None;
            }
            if number % SLOTS_PER_CHUNK == 0 {
                let fresh: Box<Chunk> = Box::new(std::array::from_fn(|_| Slot {
                    start: AtomicUsize::new(0),
                    len: AtomicUsize::new(0),
                    faulted: AtomicBool::new(false),
                }));
                CHUNKS[chunk].store(Box::into_raw(fresh), Ordering::Release);
                ALLOCATED.store(chunk + 1, Ordering::Release);
            }
            free.unused_from += 1;
            number
        }
    };
    Some((number, slot_at(number)))
}

/// Slot `number` of an allocated chunk.
fn slot_at(number: usize) -> &'static Slot {
    let chunk = CHUNKS[number / SLOTS_PER_CHUNK].load(Ordering::Acquire);
    // SAFETY: the slot was handed out, so its chunk was allocated; chunks are never freed.
    unsafe { &(*chunk)[number % SLOTS_PER_CHUNK] }
}

/// Installs the handler once per process, keeping the action it replaces.
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain system calls; `PREVIOUS` is written here once, before our handler is
        // installed, and only read by the handler afterwards.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE_SIZE.store(page as usize, Ordering::Relaxed);
            }
            let previous = &raw mut PREVIOUS;
            if libc::sigaction(libc::SIGBUS, ptr::null(), (*previous).as_mut_ptr()) != 0 {
                return;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, ptr::null_mut());
        }
    });
}

/// The registered slot holding `addr`, if any: atomic loads only.
fn slot_holding(addr: usize) -> Option<&'static Slot> {
    let allocated = ALLOCATED.load(Ordering::Acquire);
    for chunk in &CHUNKS[..allocated] {
        let chunk = chunk.load(Ordering::Acquire);
        if chunk.is_null() {
            continue;
        }
        // SAFETY: chunks are published once and never freed.
        let chunk: &'static Chunk = unsafe { &*chunk };
        for slot in chunk {
            let start = slot.start.load(Ordering::Acquire);
            if start != 0 {
                let len = slot.len.load(Ordering::Relaxed);
                if addr >= start && addr - start < len {
                    return Some(slot);
                }
            }
        }
    }
    None
}

/// The handler: async-signal-safe (atomic loads and stores, `mmap`, `sigaction`).
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a handler installed with SA_SIGINFO.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A positive code: raised by the kernel for a fault at `addr` (not sent by a process).
    let fault = code > 0;
    if let Some(slot) = slot_holding(addr).filter(|_| fault) {
        let page = addr & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
        // SAFETY: the page lies inside a live read-only mapping sheaf owns (it stays registered
        // until it is unmapped); replacing it with a private zero page changes only what it
        // reads, and the mapping's eventual munmap removes it with the rest.
        let mapped = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE_SIZE.load(Ordering::Relaxed),
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::Release);
            CAUGHT.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // SAFETY: `PREVIOUS` was filled in before this handler was installed.
    unsafe { pass_on(signal, info, context) }
}

/// Gives a fault that is not ours to the action that was in place before: its handler, or the
/// default (restored, so that returning runs the faulting instruction again and it kills).
unsafe fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous: &libc::sigaction = unsafe { &*(&raw const PREVIOUS).cast() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        return;
    }
    type WithInfo = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
    type Plain = extern "C" fn(libc::c_int);
    // SAFETY: the previous action's handler, of the kind its flags say.
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        let handler = unsafe { std::mem::transmute::<libc::sighandler_t, WithInfo>(handler) };
        handler(signal, info, context);
    } else {
        let handler = unsafe { std::mem::transmute::<libc::sighandler_t, Plain>(handler) };
        handler(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    /// A file of `pages` pages of 0xAB, mapped.
    fn mapped_file(dir: &std::path::Path, pages: usize) -> (std::path::PathBuf, memmap2::Mmap) {
        let path = dir.join("file");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![0xAB; pages * 4096]).unwrap();
        drop(file);
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the test cuts the file short on purpose, under the guard it tests.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        (path, map)
    }

    fn cut(path: &std::path::Path, len: u64) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    #[test]
    fn a_page_cut_off_under_a_guarded_mapping_reads_zeros_and_is_noted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, map) = mapped_file(dir.path(), 4);
        let guard = Guard::register(map.as_ptr(), map.len());
        assert!(!guard.faulted());
        let before = caught();
        cut(&path, 4096);
        let first_page = std::hint::black_box(map[100]);
        let cut_page = std::hint::black_box(map[3 * 4096 + 5]);
        assert_eq!(first_page, 0xAB, "the page still in the file reads right");
        assert_eq!(
            cut_page, 0,
            "the page cut off reads zeros instead of killing"
        );
        assert!(guard.faulted());
        assert!(caught() > before);
    }

    #[test]
    fn slots_are_given_back_and_grow_past_one_chunk() {
        let guards: Vec<Guard> = (0..SLOTS_PER_CHUNK + 10)
            .map(|i| Guard::register((0x1000_0000 + i * 0x10000) as *const u8, 0x1000))
            .collect();
        assert!(slot_holding(0x1000_0000 + (SLOTS_PER_CHUNK + 5) * 0x10000 + 7).is_some());
        drop(guards);
        assert!(
            slot_holding(0x1000_0000 + 7).is_none(),
            "dropped guards are gone"
        );
    }

    /// Run by [`a_fault_on_an_unguarded_mapping_still_kills`] in a child process.
    #[test]
    #[ignore = "run in a child process by a_fault_on_an_unguarded_mapping_still_kills"]
    fn child_faults_outside_every_guard() {
        if std::env::var_os("SHEAF_FAULT_CHILD").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (guarded_path, guarded) = mapped_file(dir.path(), 2);
        let _guard = Guard::register(guarded.as_ptr(), guarded.len());
        let other = dir.path().join("other");
        std::fs::copy(&guarded_path, &other).unwrap();
        let file = std::fs::File::open(&other).unwrap();
        // SAFETY: cut short on purpose; the process is expected to die of it.
        let unguarded = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        cut(&other, 0);
        std::hint::black_box(unguarded[4096 + 1]);
        println!("survived");
    }

    #[test]
    fn a_fault_on_an_unguarded_mapping_still_kills() {
        use std::os::unix::process::ExitStatusExt;
        let run = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::fault_guard::tests::child_faults_outside_every_guard",
                "--ignored",
                "--nocapture",
            ])
            .env("SHEAF_FAULT_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(!stdout.contains("survived"), "{stdout}");
        assert_eq!(run.status.signal(), Some(libc::SIGBUS), "{:?}", run.status);
    }
}
