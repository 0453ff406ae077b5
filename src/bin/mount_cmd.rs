//! `sheaf mount`: serve a dataset as its original tree through FUSE, detached once the mount is
//! ready (or in the foreground with -f), unmounted cleanly on SIGINT or SIGTERM.

use anyhow::{bail, Context, Result};
use clap::Args;
use sheaf::fs::SheafFs;
use sheaf::store::{Access, Pages, ReadPolicy};
use sheaf::{Dataset, ReadOptions};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Clone)]
pub struct MountArgs {
    /// The dataset (a path or a store URI); with --routes, the mountpoint.
    dataset: PathBuf,
    /// An empty directory to mount it on.
    #[arg(required_unless_present = "routes")]
    mountpoint: Option<PathBuf>,
    /// Mount the tree a routes table joins (see `sheaf route`) instead of one dataset: each
    /// rule's dataset is opened when first used, and with --refresh (or on SIGHUP) the table
    /// is reloaded and the datasets' new generations followed.
    #[arg(long, value_name = "ROUTES", conflicts_with_all = ["generation", "metrics"])]
    routes: Option<PathBuf>,
    /// Read containers from this cache directory when it holds them (see `sheaf preload`).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// With --cache: fetch containers that keep missing into the cache in the background.
    #[arg(long, requires = "cache")]
    fill: bool,
    /// Serve this generation instead of the newest (`sheaf log` lists them); such a mount
    /// does not follow newer ones.
    #[arg(long, value_name = "N", conflicts_with = "refresh")]
    generation: Option<u64>,
    /// Follow the dataset: look for a newer generation this often (s, m, h, d) and serve it
    /// without a remount (files already open keep reading what they read). SIGHUP looks now,
    /// with or without this.
    #[arg(long, value_name = "INTERVAL", value_parser = crate::output::parse_duration)]
    refresh: Option<std::time::Duration>,
    /// Stay in the foreground (stop with Ctrl-C or SIGTERM) instead of detaching once mounted.
    #[arg(short, long)]
    foreground: bool,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    allow_other: bool,
    /// Threads answering the kernel's requests.
    #[arg(long, default_value_t = 8, value_parser = crate::output::parse_positive_count)]
    threads: usize,
    /// Serve the reader's counters in Prometheus text format on this address (e.g.
    /// 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// How containers on local disk (the dataset's or the cache's) are read: `exact` reads what
    /// is asked and keeps one copy of it in the page cache (for datasets larger than memory),
    /// `around` lets the kernel read megabytes around each read (a cold pass over a dataset
    /// that fits in memory costs fewer, larger requests), `auto` picks `around` when the
    /// dataset fits four times over in the memory this process may use (cgroup limits
    /// included) and `exact` otherwise.
    #[arg(long, value_enum, default_value_t = AccessArg::Auto)]
    access: AccessArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AccessArg {
    Auto,
    Exact,
    Around,
}

impl AccessArg {
    fn access(self) -> Access {
        match self {
            AccessArg::Auto => Access::Auto,
            AccessArg::Exact => Access::Random,
            AccessArg::Around => Access::Around,
        }
    }
}

impl MountArgs {
    /// Where to mount: with --routes the one positional argument.
    fn mountpoint(&self) -> &Path {
        self.mountpoint.as_deref().unwrap_or(&self.dataset)
    }
}

pub fn mount(args: MountArgs) -> Result<ExitCode> {
    if args.routes.is_some() && args.mountpoint.is_some() {
        bail!("with --routes, give only the mountpoint (the table names the datasets)");
    }
    check_mountpoint(args.mountpoint())?;
    if args.foreground {
        block_stop_signals();
        return serve(&args, None);
    }
    detach_and_serve(&args)
}

/// Refuses a mountpoint that is missing, not a directory, not empty or already mounted, and a
/// machine without /dev/fuse, before anything is opened.
fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    let meta = std::fs::metadata(mountpoint)
        .with_context(|| format!("mountpoint {}", mountpoint.display()))?;
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", mountpoint.display());
    }
    let parent = mountpoint
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/"));
    if std::fs::metadata(&parent).is_ok_and(|p| p.dev() != meta.dev()) {
        bail!(
            "mountpoint {} is busy: something is already mounted there",
            mountpoint.display()
        );
    }
    let mut children = std::fs::read_dir(mountpoint)
        .with_context(|| format!("reading mountpoint {}", mountpoint.display()))?;
    if children.next().is_some() {
        bail!("mountpoint {} is not empty", mountpoint.display());
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or run where FUSE is available");
    }
    Ok(())
}

/// Forks: the child mounts and serves, the parent waits until the child says the mount is
/// ready (exit 0) or why it is not (exit 1).
fn detach_and_serve(args: &MountArgs) -> Result<ExitCode> {
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating a pipe");
    }
    // SAFETY: both descriptors were just created and are owned here only.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread runs yet, so the child may go on using the process freely.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("detaching (fork)"),
        0 => {
            drop(read_end);
            // SAFETY: setsid in the new child detaches it from the terminal's session.
            unsafe { libc::setsid() };
            block_stop_signals();
            let ready = write_end
                .try_clone()
                .context("duplicating the ready pipe")?;
            match serve(args, Some(ready)) {
                Ok(code) => Ok(code),
                Err(e) => {
                    let mut pipe = std::fs::File::from(write_end);
                    let _ = writeln!(pipe, "{e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        _child => {
            drop(write_end);
            // The first line is "ready", or the child's error followed by its exit.
            let mut pipe = std::io::BufReader::new(std::fs::File::from(read_end));
            let mut said = String::new();
            pipe.read_line(&mut said).context("waiting for the mount")?;
            if said == "ready\n" {
                return Ok(ExitCode::SUCCESS);
            }
            let _ = pipe.read_to_string(&mut said);
            match said.trim() {
                "" => bail!("the mount process died before the mount was ready"),
                error => bail!("{error}"),
            }
        }
    }
}

/// The FUSE session's settings.
fn session_config(args: &MountArgs, source: String) -> fuser::Config {
    let options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(format!("sheaf:{source}")),
        fuser::MountOption::Subtype("sheaf".into()),
        fuser::MountOption::NoAtime,
    ];
    let mut config = fuser::Config::default();
    config.mount_options = options;
    // SessionACL::All is what mounts with allow_other.
    config.acl = if args.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(args.threads);
    config.clone_fd = true;
    config
}

/// Opens the dataset, mounts it, says so through `ready`, and answers requests until unmounted.
fn serve(args: &MountArgs, ready: Option<OwnedFd>) -> Result<ExitCode> {
    if let Some(routes) = &args.routes {
        return serve_routes(args, routes, ready);
    }
    let dataset = Arc::new(open(args)?);
    if let Some(addr) = args.metrics {
        serve_metrics(addr, Arc::clone(&dataset))?;
    }
    let config = session_config(args, args.dataset.display().to_string());
    let fs = match args.refresh {
        // Entries are re-checked at least as often as the mount looks for a new generation,
        // so a name whose change a notification missed (its generation already collected)
        // is not served stale for long.
        Some(every) => SheafFs::following(dataset, every),
        None => SheafFs::new(dataset),
    };
    let refresher = fs.refresher();
    let mut session = fuser::Session::new(fs, args.mountpoint(), &config)
        .with_context(|| format!("mounting on {}", args.mountpoint().display()))?;
    let woken = listen_for_signals(&mut session);
    widen_read_ahead(args);
    if args.generation.is_none() {
        let notifier = session.notifier();
        let reopen = args.clone();
        std::thread::spawn(move || follow(&reopen, &refresher, &notifier, &woken));
    }
    run_session(session, ready)
}

/// Mounts the tree a routes table joins; the table is read now, each dataset when first used.
fn serve_routes(args: &MountArgs, location: &Path, ready: Option<OwnedFd>) -> Result<ExitCode> {
    let routes = sheaf::Routes::open(location, read_options(args, cache_of(args)?))
        .with_context(|| format!("opening routes table {}", location.display()))?;
    let config = session_config(args, format!("routes:{}", location.display()));
    let ttl = args
        .refresh
        .unwrap_or(std::time::Duration::from_secs(24 * 3600));
    let fs = sheaf::fs::RoutedFs::new(Arc::new(routes), ttl, args.threads);
    let refresher = fs.refresher();
    let mut session = fuser::Session::new(fs, args.mountpoint(), &config)
        .with_context(|| format!("mounting on {}", args.mountpoint().display()))?;
    let woken = listen_for_signals(&mut session);
    widen_read_ahead(args);
    let notifier = session.notifier();
    let every = args.refresh;
    std::thread::spawn(move || follow_routes(every, &refresher, &notifier, &woken));
    run_session(session, ready)
}

/// Lifts the kernel's read-ahead for the mount (see [`sheaf::fs::widen_read_ahead`]) from a
/// thread of its own, once the session answers. Where that is not allowed (not root, sysfs
/// read-only in a container) it stays at the kernel's 128 KiB, which only costs files over
/// that size a round trip more: not worth a word on every mount.
fn widen_read_ahead(args: &MountArgs) {
    let mountpoint = args.mountpoint().to_path_buf();
    std::thread::spawn(move || {
        let _ = sheaf::fs::widen_read_ahead(&mountpoint);
    });
}

/// Starts the thread that takes SIGINT and SIGTERM (unmount) and SIGHUP (refresh now, sent
/// on the returned channel).
fn listen_for_signals<FS: fuser::Filesystem>(
    session: &mut fuser::Session<FS>,
) -> std::sync::mpsc::Receiver<()> {
    let mut unmounter = session.unmount_callable();
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || loop {
        match wait_for_signal() {
            libc::SIGHUP => {
                let _ = wake.send(());
            }
            // Unmounting fails while a file is open on the mount: keep serving, and keep
            // listening, so a later signal can try again.
            _ => match unmounter.unmount() {
                Ok(()) => return,
                Err(e) => eprintln!("sheaf mount: cannot unmount yet: {e}"),
            },
        }
    });
    woken
}

/// Says "ready" through the pipe a detached mount's parent waits on, then serves requests
/// until unmounted.
fn run_session<FS: fuser::Filesystem>(
    session: fuser::Session<FS>,
    ready: Option<OwnedFd>,
) -> Result<ExitCode> {
    if let Some(ready) = ready {
        let mut pipe = std::fs::File::from(ready);
        pipe.write_all(b"ready\n")
            .context("reporting the mount ready")?;
        drop(pipe);
        quiet_stdio();
    }
    session.run().context("serving the mount")?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the routes table and follows the datasets' generations every `--refresh` interval
/// and on SIGHUP; what fails is reported and the mount keeps serving what it had.
fn follow_routes(
    every: Option<std::time::Duration>,
    refresher: &sheaf::fs::RoutedRefresher,
    notifier: &fuser::Notifier,
    woken: &std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let waited = match every {
            Some(every) => woken.recv_timeout(every),
            None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        if waited == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        let done = refresher.refresh(Some(notifier));
        if let Some(version) = done.table {
            eprintln!("sheaf mount: now routing by version {version} of the routes table");
        }
        for failure in &done.failures {
            eprintln!("sheaf mount: refresh: {failure}");
        }
    }
}

/// The cache directory the mount reads through, when one is given.
fn cache_of(args: &MountArgs) -> Result<Option<Arc<sheaf::cache::Cache>>> {
    match &args.cache {
        Some(dir) => Ok(Some(Arc::new(
            sheaf::cache::Cache::open(dir)
                .with_context(|| format!("opening cache {}", dir.display()))?,
        ))),
        None => Ok(None),
    }
}

fn open(args: &MountArgs) -> Result<Dataset> {
    let options = read_options(args, cache_of(args)?);
    Dataset::open_uri_with(&args.dataset, options)
        .with_context(|| format!("opening dataset {}", args.dataset.display()))
}

/// How the mount reads its datasets.
fn read_options(args: &MountArgs, cache: Option<Arc<sheaf::cache::Cache>>) -> ReadOptions {
    // The kernel caches the pages of the files the mount serves; when the dataset is larger
    // than memory, the containers' pages those reads brought in are dropped, so the page cache
    // holds one copy of the dataset, not two (one that fits keeps both: `ReadPolicy::for_data`).
    ReadOptions {
        cache,
        fill: args.fill,
        generation: args.generation,
        policy: ReadPolicy {
            access: args.access.access(),
            pages: match args.access {
                AccessArg::Around => Pages::Keep,
                _ => Pages::DropAfterRead,
            },
        },
    }
}

/// Answers every HTTP request on `addr` with the reader's counters in Prometheus text format.
fn serve_metrics(addr: SocketAddr, dataset: Arc<Dataset>) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("serving metrics on {addr}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = dataset.stats().prometheus();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}

/// Looks for a newer generation every `--refresh` interval and whenever `woken` says so
/// (SIGHUP), and serves it. A failure (the origin unreachable) is reported and the mount keeps
/// serving the generation it has.
fn follow(
    args: &MountArgs,
    refresher: &sheaf::fs::Refresher,
    notifier: &fuser::Notifier,
    woken: &std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let waited = match args.refresh {
            Some(every) => woken.recv_timeout(every),
            None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        if waited == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        match newer_generation(args, refresher.generation()) {
            Ok(None) => {}
            Ok(Some(newer)) => {
                let number = newer.generation();
                match refresher.serve(newer, Some(notifier)) {
                    Ok(changed) => eprintln!(
                        "sheaf mount: now serving generation {number} ({changed} paths changed)"
                    ),
                    Err(e) => eprintln!("sheaf mount: refresh to generation {number} failed: {e}"),
                }
            }
            Err(e) => {
                eprintln!("sheaf mount: refresh failed, still serving the last generation: {e:#}")
            }
        }
    }
}

/// The dataset's newest generation, opened as the mount opens it, when it is newer than
/// `served`.
fn newer_generation(args: &MountArgs, served: u64) -> Result<Option<Dataset>> {
    let store = sheaf::store::open(&args.dataset)?;
    match sheaf::format::generation::newest(store.as_ref())? {
        Some(newest) if newest > served => open(args).map(Some),
        _ => Ok(None),
    }
}

/// The signals one thread waits for: SIGINT and SIGTERM unmount, SIGHUP refreshes.
fn waited_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread it starts later, so one
/// thread can wait for them (and unmount cleanly, or refresh).
fn block_stop_signals() {
    let set = waited_signals();
    // SAFETY: changes this thread's signal mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// The next of the waited signals.
fn wait_for_signal() -> i32 {
    let set = waited_signals();
    let mut signal = 0;
    // SAFETY: the signals are blocked in every thread, so sigwait receives them here.
    unsafe { libc::sigwait(&set, &mut signal) };
    signal
}

/// A detached mount has no terminal to write to: stdio goes to /dev/null.
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which stay open.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
