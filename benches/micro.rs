//! Criterion micro-benchmarks of the hot paths: opening a dataset (its catalog), opening a
//! container's index, looking a path up (through the dataset, and in one index by hash and by
//! binary search), reading an entry from a mapped container, the entry
//! checksum, writing a container, lookups and listings through 1, 4 and 16 overlapping
//! generations, and reads through a routes table of 10,000 rules against the same reads
//! without one.
//!
//! ```text
//! cargo bench --bench micro                 # all of them
//! cargo bench --bench micro -- lookup       # those whose name holds "lookup"
//! SHEAF_BENCH_ENTRIES=10000000 cargo bench --bench micro
//! ```
//!
//! The dataset is synthetic and made in-process (no source tree): SHEAF_BENCH_ENTRIES entries
//! (default 1,000,000) of 64 bytes, 1,000 files a directory, in containers of 65,536 entries,
//! written with the library's own container writer and catalog, under a temporary directory.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sheaf::checksum::xxh3_64;
use sheaf::format::{Catalog, CatalogRow, Codec, Container, ContainerWriter, Entry, EntryKind};
use sheaf::layout::{container_key, container_name, CATALOG_KEY};
use sheaf::Dataset;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

const ENTRY_BYTES: usize = 64;
const PER_CONTAINER: usize = 65_536;
const PER_DIR: usize = 1_000;

fn entry_count() -> usize {
    std::env::var("SHEAF_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The path of file `i`: zero-padded, so byte order is path order.
fn path_of(i: usize) -> Vec<u8> {
    format!("d{:07}/f{:04}.bin", i / PER_DIR, i % PER_DIR).into_bytes()
}

fn content_of(i: usize) -> [u8; ENTRY_BYTES] {
    let mut bytes = [0u8; ENTRY_BYTES];
    for (j, b) in bytes.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(j)) as u8;
    }
    bytes
}

fn file_entry(path: Vec<u8>, content: &[u8]) -> Entry {
    Entry {
        path,
        kind: EntryKind::File,
        offset: 0,
        stored_len: 0,
        len: content.len() as u64,
        codec: Codec::None,
        xxh3: xxh3_64(content),
        mode: 0o100644,
        mtime_ns: 1_700_000_000_000_000_000,
        block_sums: None,
    }
}

/// Writes one container holding files `range` and returns its catalog row.
fn write_container(root: &Path, seq: u32, range: std::ops::Range<usize>) -> CatalogRow {
    let name = container_name(0, seq);
    let mut writer = ContainerWriter::create(&root.join(container_key(&name))).unwrap();
    for i in range {
        let content = content_of(i);
        writer
            .add(file_entry(path_of(i), &content), &content)
            .unwrap();
    }
    writer.finish().unwrap().catalog_row(&name, 0)
}

/// A published dataset of `n` files under `root`.
fn make_dataset(root: &Path, n: usize) {
    std::fs::create_dir_all(root.join(container_key(""))).unwrap();
    let rows: Vec<CatalogRow> = (0..n)
        .step_by(PER_CONTAINER)
        .enumerate()
        .map(|(seq, start)| {
            write_container(root, seq as u32, start..(start + PER_CONTAINER).min(n))
        })
        .collect();
    let catalog = Catalog::new(rows, HashMap::new());
    std::fs::write(root.join(CATALOG_KEY), catalog.to_bytes().unwrap()).unwrap();
}

/// A published dataset of the files `paths` committed as `generations` generations, file `i`
/// written by generation `i % generations`: every generation's containers overlap every
/// other's in path range (the worst case for a lookup, which must then rely on the path
/// filters), and the newest generation file lists them all. `dir`, when given, is the one
/// directory entry, written by generation 0.
fn make_generations(root: &Path, paths: &[Vec<u8>], generations: usize, dir: Option<&[u8]>) {
    use sheaf::format::generation::Commit;
    std::fs::create_dir_all(root.join(container_key(""))).unwrap();
    let mut rows = Vec::new();
    for g in 0..generations {
        let mine: Vec<usize> = (g..paths.len()).step_by(generations).collect();
        for (seq, chunk) in mine.chunks(PER_CONTAINER).enumerate() {
            let name = format!("g{g:06}-c{seq:08}.sheaf");
            let mut writer = ContainerWriter::create(&root.join(container_key(&name))).unwrap();
            if let (Some(dir), 0, 0) = (dir, g, seq) {
                let entry = Entry {
                    kind: EntryKind::Dir,
                    mode: 0o040755,
                    xxh3: 0,
                    ..file_entry(dir.to_vec(), &[])
                };
                writer.add(entry, &[]).unwrap();
            }
            for &i in chunk {
                let content = content_of(i);
                writer
                    .add(file_entry(paths[i].clone(), &content), &content)
                    .unwrap();
            }
            rows.push(writer.finish().unwrap().catalog_row(&name, g as u32));
        }
    }
    let newest = generations as u64 - 1;
    let commit = Commit {
        operation: "append",
        txn: "bench".into(),
        added: 0,
        removed: 0,
        threshold: None,
        root: None,
    };
    let key = sheaf::layout::generation_key(newest);
    std::fs::create_dir_all(root.join(key.rsplit_once('/').unwrap().0)).unwrap();
    std::fs::write(root.join(key), commit.encode(newest, rows).unwrap()).unwrap();
}

/// Lookups and a large directory's listing through 1, 4 and 16 overlapping generations.
fn generation_benches(c: &mut Criterion) {
    let n = entry_count();
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<Vec<u8>> = (0..n).map(path_of).collect();
    let wide: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("big/f{i:05}").into_bytes())
        .collect();
    let mut lookups = c.benchmark_group("lookup_generations");
    for generations in [1usize, 4, 16] {
        let root = dir.path().join(format!("g{generations}"));
        make_generations(&root, &all, generations, None);
        let dataset = Dataset::open(&root).unwrap();
        let paths = warmed_paths(&dataset, n);
        let mut next = 0;
        lookups.bench_function(format!("{generations}/{n}"), |b| {
            b.iter(|| {
                next = (next + 1) % paths.len();
                black_box(dataset.lookup(&paths[next]).unwrap())
            })
        });
    }
    lookups.finish();
    let mut listings = c.benchmark_group("list_10000_entry_dir");
    for generations in [1usize, 16] {
        let root = dir.path().join(format!("wide{generations}"));
        make_generations(&root, &wide, generations, Some(b"big"));
        let dataset = Dataset::open(&root).unwrap();
        assert_eq!(dataset.list(b"big").unwrap().len(), wide.len());
        listings.bench_function(format!("{generations}_generations"), |b| {
            b.iter(|| black_box(dataset.list(b"big").unwrap()))
        });
    }
    listings.finish();
}

/// 100,000 random paths of the `n` files, each looked up once so every container is mapped
/// before timing: the steady state.
fn warmed_paths(dataset: &Dataset, n: usize) -> Vec<Vec<u8>> {
    let paths: Vec<Vec<u8>> = random_indexes(n, 100_000)
        .into_iter()
        .map(path_of)
        .collect();
    for path in &paths {
        dataset.lookup(path).unwrap();
    }
    paths
}

/// A fixed pseudo-random sequence of file numbers below `n`.
fn random_indexes(n: usize, count: usize) -> Vec<usize> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        })
        .collect()
}

fn reader_benches(c: &mut Criterion) {
    let n = entry_count();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dataset");
    let started = Instant::now();
    make_dataset(&root, n);
    eprintln!(
        "micro: made a {n}-entry dataset in {:.1?}",
        started.elapsed()
    );

    c.bench_function(&format!("dataset_open/{n}"), |b| {
        b.iter(|| black_box(Dataset::open(&root).unwrap()))
    });
    c.bench_function(&format!("dataset_open_and_map_every_index/{n}"), |b| {
        b.iter(|| {
            let dataset = Dataset::open(&root).unwrap();
            for i in 0..dataset.catalog().rows().len() {
                black_box(dataset.container(i).unwrap());
            }
        })
    });
    c.bench_function(&format!("container_index_open/{PER_CONTAINER}"), |b| {
        let dataset = Dataset::open(&root).unwrap();
        b.iter(|| black_box(dataset.open_container_unchecked(0).unwrap()))
    });

    let dataset = Dataset::open(&root).unwrap();
    let paths = warmed_paths(&dataset, n);
    let mut next = 0;
    c.bench_function(&format!("lookup/{n}"), |b| {
        b.iter(|| {
            next = (next + 1) % paths.len();
            black_box(dataset.lookup(&paths[next]).unwrap())
        })
    });
    c.bench_function(&format!("read_64B_entry_mapped/{n}"), |b| {
        b.iter(|| {
            next = (next + 1) % paths.len();
            black_box(dataset.read(&paths[next]).unwrap())
        })
    });
}

/// A path's row in one container index of every entry (as a fold with default limits writes
/// up to a million files): through the hash table, against the binary search alone.
fn index_find_benches(c: &mut Criterion) {
    let n = entry_count().min(sheaf::fold::DEFAULT_MAX_ENTRIES);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.sheaf");
    let mut writer = ContainerWriter::create(&file).unwrap();
    for i in 0..n {
        let content = content_of(i);
        writer
            .add(file_entry(path_of(i), &content), &content)
            .unwrap();
    }
    writer.finish().unwrap();
    let container = Container::open(&file).unwrap();
    let index = container.index();
    let paths: Vec<Vec<u8>> = random_indexes(n, 100_000)
        .into_iter()
        .map(path_of)
        .collect();
    let mut group = c.benchmark_group("index_find");
    let mut next = 0;
    group.bench_function(format!("hash/{n}"), |b| {
        b.iter(|| {
            next = (next + 1) % paths.len();
            black_box(index.find(&paths[next]).unwrap())
        })
    });
    group.bench_function(format!("binary_search/{n}"), |b| {
        b.iter(|| {
            next = (next + 1) % paths.len();
            black_box(index.find_by_search(&paths[next]).unwrap())
        })
    });
    group.finish();
}

fn checksum_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("xxh3_64");
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        let bytes: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| black_box(xxh3_64(&bytes)))
        });
    }
    group.finish();
}

fn writer_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("container_write");
    const FILES: usize = 1_000;
    const FILE_BYTES: usize = 16 << 10;
    let content = vec![7u8; FILE_BYTES];
    group.throughput(Throughput::Bytes((FILES * FILE_BYTES) as u64));
    group.bench_function("1000x16KiB", |b| {
        b.iter_batched(
            || dir.path().join("c.sheaf"),
            |file| {
                let mut writer = ContainerWriter::create(&file).unwrap();
                for i in 0..FILES {
                    writer
                        .add(file_entry(path_of(i), &content), &content)
                        .unwrap();
                }
                black_box(writer.finish().unwrap())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// How many rules the routes benchmark's table holds.
const ROUTE_RULES: usize = 10_000;

/// A routes table at `table` of [`ROUTE_RULES`] rules two components deep, one of them
/// (`/bench/data`) routing to `dataset`, the others to datasets never opened.
fn make_routes_table(table: &Path, dataset: &Path) {
    let mut routes: Vec<serde_json::Value> = (0..ROUTE_RULES - 1)
        .map(|i| {
            serde_json::json!({
                "prefix": format!("/team{:03}/set{i:05}", i % 1000),
                "dataset": format!("/nonexistent/{i}"),
            })
        })
        .collect();
    routes.push(serde_json::json!({"prefix": "/bench/data", "dataset": dataset}));
    let version = serde_json::json!({
        "format": "sheaf-routes", "version": 1, "number": 0, "txn": "bench",
        "time_ns": 0, "operation": "bench", "routes": routes,
    });
    std::fs::create_dir_all(table).unwrap();
    let bytes = serde_json::to_vec(&version).unwrap();
    std::fs::write(table.join(sheaf::format::routes::version_key(0)), bytes).unwrap();
}

/// The same 64-byte reads straight from a dataset and through a routes table of 10,000
/// rules (the difference is what routing adds), and routing a path alone.
fn route_benches(c: &mut Criterion) {
    let n = entry_count().min(100_000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dataset");
    make_dataset(&root, n);
    let table = dir.path().join("routes");
    make_routes_table(&table, &root);
    let dataset = Dataset::open(&root).unwrap();
    let routes = sheaf::Routes::open(&table, sheaf::ReadOptions::default()).unwrap();
    let paths = warmed_paths(&dataset, n);
    let routed: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| [&b"/bench/data/"[..], p].concat())
        .collect();
    for path in &routed {
        routes.read(path).unwrap();
    }
    let mut group = c.benchmark_group(format!("routes/{ROUTE_RULES}"));
    let mut next = 0;
    group.bench_function("read_64B_direct", |b| {
        b.iter(|| {
            next = (next + 1) % paths.len();
            black_box(dataset.read(&paths[next]).unwrap())
        })
    });
    group.bench_function("read_64B_routed", |b| {
        b.iter(|| {
            next = (next + 1) % routed.len();
            black_box(routes.read(&routed[next]).unwrap())
        })
    });
    let routing = routes.routing();
    let index_form: Vec<Vec<u8>> = routed.iter().map(|p| p[1..].to_vec()).collect();
    group.bench_function("route_only", |b| {
        b.iter(|| {
            next = (next + 1) % index_form.len();
            black_box(routing.target(&index_form[next]).is_some())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    reader_benches,
    index_find_benches,
    checksum_benches,
    writer_benches,
    generation_benches,
    route_benches
);
criterion_main!(benches);
